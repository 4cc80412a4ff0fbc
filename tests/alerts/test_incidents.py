"""The incident tracker on hand-made alerts, findings, pages and actions (virtual clock, real store):
grouping by resource and by time, findings taken back to the lookback, pages and people paged, actions
with their effect, automatic resolution, acknowledgement/resolution/notes, and a restart."""

from __future__ import annotations

import pytest

from alerts import StoreWriter
from alerts import tables as incident_store
from alerts.incidents import ACKNOWLEDGED, OPEN, RESOLVED, GroupingPolicy, IncidentError, IncidentTracker
from alerts.model import FIRING, PENDING, Alert, alert_fingerprint
from alerts.model import RESOLVED as ALERT_RESOLVED
from anomaly.finding import Finding
from telemetry.clock import VirtualClock

T0 = 1_696_323_600.0


def alert(rule: str, severity: str = "page", **labels) -> Alert:
    ls = {"alertname": rule, "severity": severity, **labels}
    return Alert(rule, alert_fingerprint(ls), ls, {"summary": f"{rule} summary"}, FIRING, 1.0, 0.0, 0.0)


class Feed:
    """Drives a tracker the way the engine does: transitions at the clock's time."""

    def __init__(self, tracker: IncidentTracker, clock: VirtualClock) -> None:
        self.t, self.clock = tracker, clock

    def at(self, s: float) -> Feed:
        self.clock.advance_to(T0 + s)
        return self

    def fire(self, a: Alert, pending_for: float = 60.0) -> None:
        a.active_since = self.clock.now() - pending_for
        a.state = FIRING
        self.t.on_transitions([{"ts": self.clock.now(), "alert": a, "state": FIRING, "previous_state": PENDING,
                                "rule": a.rule, "fingerprint": a.fingerprint, "labels": a.labels, "value": 1.0, "event": True}])

    def resolve(self, a: Alert) -> None:
        a.state = ALERT_RESOLVED
        self.t.on_transitions([{"ts": self.clock.now(), "alert": a, "state": ALERT_RESOLVED, "previous_state": FIRING,
                                "rule": a.rule, "fingerprint": a.fingerprint, "labels": a.labels, "value": 0.0, "event": True}])

    def finding(self, **labels) -> None:
        self.t.on_finding(Finding(self.clock.now(), "saturation_trend", "saturation_trend", "voxwatch_pool_saturation_ratio",
                                  labels, 0.9, 0.8, time_to_exhaustion_s=900.0))

    def page(self, a: Alert, result: str = "delivered", receiver: str = "pager") -> None:
        self.t.on_notification({"ts_ms": int(self.clock.now() * 1000), "notification_id": "n1", "receiver": receiver,
                                "integration": "webhook", "group_key": "g", "status": "firing", "attempt": 1,
                                "result": result, "http_status": 204 if result == "delivered" else 503, "error": "",
                                "alert_fingerprints": [a.fingerprint]})

    def action(self, phase: str, rule: str, level: str = "INTEGRATIONS_QUEUED", value: float = 1.5, region: str = "",
               at: float | None = None) -> None:
        # the engine hands actions over on its next step: their time may be earlier than the clock's
        ts = self.clock.now() if at is None else T0 + at
        self.t.on_action({"ts_ms": int(ts * 1000), "action_id": "act-1", "phase": phase, "level": level,
                          "previous_level": "NORMAL", "region": region, "rule": rule, "reason": "test",
                          "effect_metric": "voxwatch_turn_latency_seconds", "effect_value": value})


@pytest.fixture
def clock():
    return VirtualClock(T0)


@pytest.fixture
def tracker(clock, store):
    return IncidentTracker(clock, StoreWriter(store), store)


def test_alerts_on_one_resource_make_one_incident_and_other_resources_another(tracker, clock):
    f = Feed(tracker, clock)
    f.at(100).fire(alert("PoolSaturationForecast", pool="orders"))
    f.at(400).fire(alert("PoolSaturated", pool="orders"))
    f.at(3000).fire(alert("IntegrationFailing", service="orders"))  # same resource, much later: same incident
    f.at(3100).fire(alert("RegionDown", region="us-east"))  # another resource, within the cascade window of the last change
    f.at(9000).fire(alert("PoolSaturated", pool="crm"))  # another resource, long after: a new incident
    incidents = sorted(tracker.incidents.values(), key=lambda i: i.opened_ms)
    assert [sorted(i.rules) for i in incidents] == [
        ["IntegrationFailing", "PoolSaturated", "PoolSaturationForecast", "RegionDown"], ["PoolSaturated"]]
    assert incidents[0].scope == ["orders", "us-east"] and incidents[1].scope == ["crm"]
    assert incidents[0].severity == "page" and incidents[0].first_signal_ms == int((T0 + 40) * 1000)


def test_an_alert_without_resource_joins_the_open_incident(tracker, clock):
    f = Feed(tracker, clock)
    f.at(0).fire(alert("TurnLatencySLOBurn", slo="turn-latency-300ms"))
    f.at(2000).fire(alert("PoolSaturated", pool="orders"))  # the incident named no resource yet
    assert len(tracker.incidents) == 1
    (inc,) = tracker.incidents.values()
    # as urgent, and naming the resource: the title says what is wrong where
    assert inc.scope == ["orders"] and inc.title == "PoolSaturated (pool=orders)"


def test_findings_join_back_to_the_lookback_and_only_the_first_per_series_is_kept(tracker, clock):
    f = Feed(tracker, clock)
    f.at(0).finding(pool="orders")
    f.at(100).finding(pool="orders")
    f.at(150).finding(pool="crm")  # another resource: not this incident's
    f.at(900).fire(alert("PoolSaturated", pool="orders"))
    f.at(1000).finding(pool="orders")
    (inc,) = tracker.incidents.values()
    assert inc.findings == 3 and inc.first_finding_ms == int(T0 * 1000)
    firsts = [e for e in inc.ordered_timeline() if e.kind == "finding"]
    assert len(firsts) == 1 and firsts[0].ts_ms == int(T0 * 1000) and "runs out in 15.0 min" in firsts[0].title
    assert inc.timings()["detect"] == 900.0  # no known fault: from the first finding


def test_pages_actions_and_effects_land_on_the_timeline_in_order(tracker, clock, store):
    f = Feed(tracker, clock)
    a = alert("PoolSaturationForecast", pool="orders")
    f.at(100).fire(a)
    f.at(101).page(a, result="failed")
    f.at(105).page(a)
    f.action("applied", "PoolSaturationForecast", value=1.49, at=100)
    f.at(160).action("observed", "PoolSaturationForecast", value=0.22)
    (inc,) = tracker.incidents.values()
    assert inc.paged == ["pager"] and inc.first_page_ms == int((T0 + 105) * 1000)
    act = inc.actions["act-1"]
    assert act["before"] == 1.49 and act["after"] == 0.22
    assert inc.mitigated_ms == int((T0 + 160) * 1000)
    timeline = inc.ordered_timeline()
    assert [e.ts_ms for e in timeline] == sorted(e.ts_ms for e in timeline)
    effect = next(e for e in timeline if e.detail.get("phase") == "observed")
    assert "1.49 -> 0.22 (-85%)" in effect.title
    pages = [e for e in timeline if e.kind == "page"]
    assert [p.detail["result"] for p in pages] == ["failed", "delivered"] and "HTTP 503" in pages[0].title
    t = inc.timings()
    assert t["page"] == 65.0 and t["mitigate"] == 120.0 and t["resolve"] is None  # from the alert's pending start (+40 s)
    stored = incident_store.load_incident(store, inc.incident_id)
    assert [e.title for e in stored.timeline] == [e.title for e in timeline]


def test_an_incident_resolves_itself_after_the_quiet_period_and_a_new_firing_opens_another(clock, store):
    tracker = IncidentTracker(clock, StoreWriter(store), store, policy=GroupingPolicy(quiet_s=600, cascade_s=300))
    f = Feed(tracker, clock)
    a = alert("RegionDown", region="us-east")
    f.at(0).fire(a)
    f.at(10).action("applied", "RegionDown", level="REGION_FAILOVER", region="us-east")
    f.at(500).resolve(a)
    f.at(1200)
    assert tracker.tick() == []  # the action is still applied
    f.at(1300).action("reverted", "RegionDown", level="NORMAL", region="us-east")
    f.at(1800)
    assert tracker.tick() == []  # quiet for 500 s only
    f.at(1901)
    (iid,) = tracker.tick()
    inc = tracker.incidents[iid]
    assert inc.state == RESOLVED and inc.resolved_ms == int((T0 + 1300) * 1000) and inc.resolved_by == "voxwatch"
    f.at(5000).fire(a)
    assert len(tracker.incidents) == 2


def test_acknowledge_resolve_and_notes_with_their_errors(tracker, clock, store):
    f = Feed(tracker, clock)
    f.at(0).fire(alert("PoolSaturated", pool="orders"))
    (iid,) = tracker.incidents
    f.at(120)
    inc = tracker.acknowledge(iid, "alice", "looking at the orders pool")
    assert inc.state == ACKNOWLEDGED and inc.timings()["acknowledge"] == 180.0
    with pytest.raises(IncidentError, match="already acknowledged by alice"):
        tracker.acknowledge(iid, "bob")
    tracker.add_note(iid, "bob", "leak in the order-status path")
    with pytest.raises(IncidentError, match="needs some text"):
        tracker.add_note(iid, "bob", "  ")
    with pytest.raises(IncidentError) as unknown:
        tracker.acknowledge("INC-nope", "bob")
    assert unknown.value.not_found
    f.at(600)
    tracker.resolve(iid, "alice", "pool size raised")
    with pytest.raises(IncidentError, match="already resolved"):
        tracker.resolve(iid, "alice")
    stored = incident_store.load_incident(store, iid)
    assert stored.state == RESOLVED and stored.acknowledged_by == "alice" and stored.resolved_by == "alice"
    assert [e.kind for e in stored.timeline][-3:] == ["acknowledged", "note", "resolved"]


def test_a_restarted_tracker_takes_back_open_incidents(tracker, clock, store):
    f = Feed(tracker, clock)
    a = alert("PoolSaturated", pool="orders")
    f.at(0).fire(a)
    (iid,) = tracker.incidents
    again = IncidentTracker(clock, StoreWriter(store), store)
    assert again.restore() == 1 and again.incidents[iid].state == OPEN
    Feed(again, clock).at(100).resolve(a)  # the same alert resolving after the restart lands on the same incident
    assert again.incidents[iid].alerts[a.fingerprint]["state"] == "resolved"
    assert again.list()[0].incident_id == iid


def test_the_rules_read_as_sentences():
    lines = GroupingPolicy(cascade_s=300).describe()
    assert len(lines) == 6 and "within 5 min" in lines[2]


def test_incident_rows_pass_through_the_sink_as_the_engine_writes_them(clock, store, tmp_path):
    from telemetry.sink import Sink

    sink = Sink(store, spool_dir=tmp_path / "spool", flush_interval=0.1)
    try:
        tracker = IncidentTracker(clock, sink, store)
        f = Feed(tracker, clock)
        a = alert("PoolSaturated", pool="orders")
        f.at(0).finding(pool="orders")
        f.at(60).fire(a)
        f.page(a)
        f.action("applied", "PoolSaturated")
        sink.flush()
        assert sink.stats.total("rejected") == 0 and sink.stats.written["incident_events"] == 5
    finally:
        sink.close()
    (iid,) = tracker.incidents
    stored = incident_store.load_incident(store, iid)
    assert stored is not None and stored.paged == ["pager"] and stored.scope == ["orders"]
    assert [e.kind for e in stored.timeline] == ["finding", "opened", "alert", "page", "action"]


def test_silencing_every_firing_alert_of_an_incident_acknowledges_it(tracker, clock, store):
    from alerts.notify.silences import Silences

    f = Feed(tracker, clock)
    a, b = alert("PoolSaturated", pool="orders"), alert("IntegrationFailing", service="orders")
    f.at(0).fire(a)
    f.at(10).fire(b)
    (iid,) = tracker.incidents
    silences = Silences(clock, StoreWriter(store), store)
    silences.create([{"name": "pool", "value": "orders", "isRegex": False, "isEqual": True}], T0 + 3600,
                    created_by="dana", comment="raising the pool size")
    f.at(20)
    assert tracker.on_silences(silences) == []  # IntegrationFailing is not silenced: nobody said they are on it
    silences.create([{"name": "alertname", "value": "IntegrationFailing", "isRegex": False, "isEqual": True}], T0 + 3600,
                    created_by="dana", comment="")
    assert tracker.on_silences(silences) == [iid]
    inc = tracker.incidents[iid]
    assert inc.state == ACKNOWLEDGED and inc.acknowledged_by.startswith("dana (silence ")
    assert tracker.on_silences(silences) == []  # once
