"""End to end on the simulator (virtual clock, real pipeline controller, real HTTP receiver):
the October 3rd incident is forecast, paged, acted on, recovered from and resolved; a region
outage is failed over within 3 simulated seconds; a normal day pages nobody.

Scenarios are scaled down (fewer calls, compressed time) so the room's tests stay fast."""

from __future__ import annotations

import pytest

from alerts.model import StoreWriter
from alerts.ruleset import load_rules
from telemetry.clock import VirtualClock
from tests.alerts.conftest import SECRET
from voxwatch.commands.rules import load_scenario_or_error, run_scenario

pytestmark = pytest.mark.slow


def shipped_rules(receiver):
    return load_rules(env={"VOXWATCH_PAGER_URL": receiver.url + "/pager", "VOXWATCH_WEBHOOK_SECRET": SECRET})


def october_3_that_ends():
    """October 3rd at 500 calls compressed into 35 minutes, where the promotion and both faults end
    at 900 s, then 10 more quiet minutes: the incident has an end, so the alert can resolve (its
    window outlasts the detector's 15-minute repeat) and the action revert."""
    sc = load_scenario_or_error("october-3", calls=500, duration_s=2100)
    end = 900.0
    t = sc.traffic
    traffic = t.model_copy(update={"shape": "spike", "spike_at_s": t.ramp_start_s, "spike_duration_s": end - t.ramp_start_s,
                                   "spike_factor": 1.0 / t.base})
    faults = [f.model_copy(update={"end_s": end}) for f in sc.faults]
    return sc.model_copy(update={"traffic": traffic, "faults": faults, "duration_s": 2700.0})


def test_october_3_forecast_page_action_recovery_and_resolution(receiver, store):
    sc = october_3_that_ends()
    clock = VirtualClock(sc.start)
    receiver.clock = clock  # the receiver checks webhook timestamps against the same (virtual) clock
    run = run_scenario(shipped_rules(receiver), sc, clock=clock, engine_kwargs={"writer": StoreWriter(store)})
    t0 = sc.start

    # the saturation finding fired the predictive alert
    sat = [f for f in run.findings if f.kind == "saturation_trend" and f.labels.get("pool") == "orders"]
    assert sat, "the detector never flagged the orders pool"
    fired = [t for t in run.engine.transitions if t["rule"] == "PoolSaturationForecast" and t["state"] == "firing"
             and t["labels"].get("pool") == "orders"]
    assert fired and fired[0]["ts"] >= sat[0].ts

    # the page reached the webhook receiver, signed (the receiver verified every signature)
    assert receiver.rejected_signatures == 0
    pages = [b for b in receiver.bodies("/pager") if any(a["labels"]["alertname"] == "PoolSaturationForecast" for a in b["alerts"])]
    assert pages and pages[0]["status"] == "firing"
    first_page_at = next(r["at"] for r in receiver.accepted if r["json"] is pages[0])
    assert first_page_at - fired[0]["ts"] <= 30

    # the pool-saturation action was applied by the pipeline's controller
    applied = [r for r in run.controller.history if r["phase"] == "applied" and r["rule"] == "PoolSaturationForecast"]
    assert applied and applied[0]["level"] == "INTEGRATIONS_QUEUED"
    applied_at = applied[0]["ts_ms"] / 1000

    # turn latency P99 came back under 300 ms while the action held
    after = [p99 for t, p99 in run.turn_p99 if applied_at - t0 + 120 <= t <= 900]
    assert after and max(after) < 0.3, after

    # the alert resolved, a resolved notification arrived, and the action was reverted
    resolved = [t for t in run.engine.transitions if t["rule"] == "PoolSaturationForecast" and t["state"] == "resolved"
                and t["labels"].get("pool") == "orders"]
    assert resolved
    assert any(b["status"] == "resolved" and any(a["labels"]["alertname"] == "PoolSaturationForecast" for a in b["alerts"])
               for b in receiver.bodies("/pager"))
    reverted = [r for r in run.engine.actions.history if r["phase"] == "reverted" and r["rule"] == "PoolSaturationForecast"]
    assert reverted and reverted[0]["ts_ms"] / 1000 >= resolved[0]["ts"]
    # the pipeline itself stepped down the ladder at that moment
    assert any(r["phase"] == "reverted" and r["rule"] == "PoolSaturationForecast" and r["ts_ms"] == reverted[0]["ts_ms"]
               and r["previous_level"] == "INTEGRATIONS_QUEUED" for r in run.controller.history)

    # and every step is in the store
    rows = store.query("SELECT phase FROM degradation_actions WHERE rule = 'PoolSaturationForecast' AND action_id LIKE 'act-%'")
    assert {"requested", "applied", "observed", "reverted"} <= set(rows.phase)
    delivered = store.query("SELECT count() AS n FROM notifications WHERE receiver = 'pager' AND result = 'delivered'")
    assert int(delivered.n[0]) >= 2


def test_region_outage_is_failed_over_within_3_simulated_seconds(receiver):
    sc = load_scenario_or_error("region-outage", calls=300, duration_s=1200)
    fault = next(g for g in sc.ground_truth() if g["kind"] == "region_outage")
    clock = VirtualClock(sc.start)
    receiver.clock = clock
    run = run_scenario(shipped_rules(receiver), sc, clock=clock, until=fault["start_s"] + 15, with_anomaly=False)
    fails_at = sc.start + fault["start_s"]
    ours = [r for r in run.controller.history if r["phase"] == "applied" and r["level"] == "REGION_FAILOVER" and r["rule"] == "RegionDown"]
    assert ours, run.controller.history
    assert ours[0]["region"] == fault["region"]
    assert 0 <= ours[0]["ts_ms"] / 1000 - fails_at <= 3.0
    pages = [r for r in receiver.accepted if r["path"] == "/pager"]
    assert any(a["labels"]["alertname"] == "RegionDown" for r in pages for a in r["json"]["alerts"])


def test_baseline_pages_nobody(receiver):
    sc = load_scenario_or_error("baseline", calls=300, duration_s=900)
    clock = VirtualClock(sc.start)
    receiver.clock = clock
    run = run_scenario(shipped_rules(receiver), sc, clock=clock)
    assert receiver.requests == []
    fired_pages = [t for t in run.engine.transitions if t["state"] == "firing" and t["labels"].get("severity") == "page"]
    assert fired_pages == []
    assert not [r for r in run.controller.history if r["phase"] == "applied"]
