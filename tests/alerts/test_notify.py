"""The notification pipeline over real HTTP on 127.0.0.1: signed Alertmanager-style webhooks,
grouping, dedup against the notification log, retries (and what is not retried), silences,
inhibition, PagerDuty and Alertmanager receivers, and every attempt logged in the store."""

from __future__ import annotations

import asyncio

import pytest

from alerts.engine import AlertEngine
from alerts.model import StoreWriter
from alerts.notify.silences import SilenceError, Silences
from alerts.ruleset import load_rules
from tests.alerts.conftest import SECRET, run_for

RULES = """
groups:
  - name: g
    interval: 1s
    rules:
      - alert: PoolHigh
        type: threshold
        expr: {{metric: voxwatch_pool_saturation_ratio}}
        aggregation: last
        window: 5s
        by: [pool]
        threshold: 0.9
        severity: page
        labels: {{team: integrations}}
        annotations:
          summary: "pool {{{{ $labels.pool }}}} at {{{{ $value | humanizePercentage }}}}"
          runbook_url: "https://runbooks.example/pool"
      - alert: PoolCritical
        type: threshold
        expr: {{metric: voxwatch_pool_saturation_ratio}}
        aggregation: last
        window: 5s
        by: [pool]
        threshold: 0.99
        severity: page
route:
  receiver: {receiver}
  group_by: {group_by}
  group_wait: 10s
  group_interval: 1m
  repeat_interval: {repeat}
receivers:
  - name: hook
    type: webhook
    url: "{url}/hook"
    secret: "{secret}"
    retry: {{initial: 1s, max_backoff: 30s, timeout: 300ms}}
  - name: pd
    type: pagerduty
    url: "{url}"
    routing_key: "R0UT1NGKEY"
    retry: {{initial: 1s, max_backoff: 30s, timeout: 300ms}}
  - name: am
    type: alertmanager
    url: "{url}"
{extra}
"""


def make_engine(tmp_path, clock, receiver, *, receiver_name="hook", group_by="[alertname]", repeat="4h", extra="", store=None):
    p = tmp_path / "r.yaml"
    p.write_text(RULES.format(url=receiver.url, secret=SECRET, receiver=receiver_name, group_by=group_by, repeat=repeat, extra=extra))
    writer = StoreWriter(store) if store is not None else None
    return AlertEngine(load_rules([p]), clock, writer=writer, store=store, external_url="http://voxwatch.test")


class Pools:
    def __init__(self, engine, **levels):
        self.engine = engine
        self.levels = dict(levels)

    def __call__(self, now):
        self.engine.ingest([("voxwatch_pool_saturation_ratio", {"pool": p}, v) for p, v in self.levels.items()])


def test_webhook_delivers_a_signed_alertmanager_v4_body(tmp_path, clock, receiver):
    eng = make_engine(tmp_path, clock, receiver)
    pools = Pools(eng, crm=0.95)

    async def go():
        await run_for(eng, clock, 15, pools)
        await eng.aclose()

    asyncio.run(go())
    (req,) = receiver.accepted
    assert receiver.rejected_signatures == 0
    assert req["headers"]["webhook-signature"].startswith("v1,")
    assert req["headers"]["webhook-id"].startswith("msg_")
    body = req["json"]
    assert set(body) == {"version", "groupKey", "truncatedAlerts", "status", "receiver", "groupLabels", "commonLabels",
                         "commonAnnotations", "externalURL", "alerts"}
    assert body["version"] == "4" and body["status"] == "firing" and body["receiver"] == "hook"
    assert body["groupLabels"] == {"alertname": "PoolHigh"}
    assert body["commonLabels"]["pool"] == "crm" and body["externalURL"] == "http://voxwatch.test"
    (a,) = body["alerts"]
    assert set(a) == {"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"}
    assert a["annotations"]["summary"] == "pool crm at 95%"
    assert a["endsAt"] == "0001-01-01T00:00:00Z"
    # group_wait: the page left 10 s after the alert fired (it fired on the first evaluation)
    assert req["at"] - (clock.now() - 15) == pytest.approx(11, abs=1)


def test_a_tampered_body_fails_verification(tmp_path, clock, receiver):
    from alerts.receivers.signing import SignatureError, sign, verify

    headers = sign(SECRET, "msg_1", int(clock.now()), b'{"a":1}')
    assert verify(SECRET, headers, b'{"a":1}', now=clock.now()) == "msg_1"
    with pytest.raises(SignatureError):
        verify(SECRET, headers, b'{"a":2}', now=clock.now())
    with pytest.raises(SignatureError, match="tolerance"):
        verify(SECRET, headers, b'{"a":1}', now=clock.now() + 600)


def test_group_wait_gathers_alerts_into_one_notification(tmp_path, clock, receiver):
    eng = make_engine(tmp_path, clock, receiver)
    pools = Pools(eng, crm=0.95)

    async def go():
        await run_for(eng, clock, 3, pools)
        pools.levels["orders"] = 0.93  # fires 3 s later, inside the same group_wait
        await run_for(eng, clock, 12, pools)
        await eng.aclose()

    asyncio.run(go())
    (body,) = receiver.bodies()
    assert sorted(a["labels"]["pool"] for a in body["alerts"]) == ["crm", "orders"]
    assert "pool" not in body["commonLabels"]


def test_dedup_sends_nothing_new_until_the_repeat_interval(tmp_path, clock, receiver):
    eng = make_engine(tmp_path, clock, receiver, repeat="10m")
    pools = Pools(eng, crm=0.95)

    async def go():
        await run_for(eng, clock, 300, pools)  # several group_intervals pass: nothing new to say
        assert len(receiver.accepted) == 1
        await run_for(eng, clock, 420, pools)  # repeat_interval (10 m) elapsed: remind once
        assert len(receiver.accepted) == 2
        pools.levels["orders"] = 0.95  # a new alert in the group: sent at the next group_interval
        await run_for(eng, clock, 61, pools)
        await eng.aclose()

    asyncio.run(go())
    assert len(receiver.accepted) == 3
    assert len(receiver.bodies()[-1]["alerts"]) == 2


def test_resolved_notification_follows_when_the_alert_clears(tmp_path, clock, receiver):
    eng = make_engine(tmp_path, clock, receiver)
    pools = Pools(eng, crm=0.95)

    async def go():
        await run_for(eng, clock, 20, pools)
        pools.levels["crm"] = 0.5
        await run_for(eng, clock, 70, pools)
        await run_for(eng, clock, 300, pools)
        await eng.aclose()

    asyncio.run(go())
    bodies = receiver.bodies()
    assert [b["status"] for b in bodies] == ["firing", "resolved"]
    assert bodies[1]["alerts"][0]["endsAt"] != "0001-01-01T00:00:00Z"


def test_a_receiver_down_for_five_simulated_minutes_gets_each_notification_once(tmp_path, clock, receiver, store):
    start = clock.now()
    receiver.respond = lambda req: (503, {}, b"down") if req["at"] < start + 300 else (200, {}, b"ok")
    eng = make_engine(tmp_path, clock, receiver, store=store)
    pools = Pools(eng, crm=0.95)

    async def go():
        await run_for(eng, clock, 120, pools)
        pools.levels["crm"] = 0.5  # resolves while the receiver is still down
        await run_for(eng, clock, 600, pools)
        await eng.aclose()

    asyncio.run(go())
    assert [b["status"] for b in receiver.bodies()] == ["firing", "resolved"]
    ids = receiver.ids()
    assert len(ids) == len(set(ids)) == 2
    assert min(r["at"] for r in receiver.accepted) >= start + 300
    failed_attempts = [r for r in receiver.requests if r["status"] == 503]
    assert len(failed_attempts) >= 4  # it kept trying, backing off
    rows = store.query("SELECT attempt, result, http_status FROM notifications ORDER BY ts_ms, attempt")
    assert list(rows.result).count("delivered") == 2
    assert (rows.result == "retrying").sum() == len(failed_attempts)


def test_4xx_is_not_retried(tmp_path, clock, receiver, store):
    receiver.respond = lambda req: (400, {}, b"bad request")
    eng = make_engine(tmp_path, clock, receiver, store=store)
    pools = Pools(eng, crm=0.95)

    async def go():
        await run_for(eng, clock, 50, pools)
        await eng.aclose()

    asyncio.run(go())
    assert len(receiver.requests) == 1
    rows = store.query("SELECT result, http_status, error FROM notifications")
    assert list(rows.result) == ["failed"] and list(rows.http_status) == [400]
    assert "bad request" in rows.error[0]


def test_429_is_retried_after_its_retry_after(tmp_path, clock, receiver):
    answers = iter([(429, {"Retry-After": "20"}, b"slow down")])
    receiver.respond = lambda req: next(answers, (200, {}, b"ok"))
    eng = make_engine(tmp_path, clock, receiver)
    pools = Pools(eng, crm=0.95)

    async def go():
        await run_for(eng, clock, 60, pools)
        await eng.aclose()

    asyncio.run(go())
    first, second = receiver.requests
    assert first["status"] == 429 and second["status"] == 200
    assert second["at"] - first["at"] >= 20  # honoured Retry-After, not the 1 s backoff
    assert first["headers"]["webhook-id"] == second["headers"]["webhook-id"]


def test_5xx_and_timeouts_are_retried(tmp_path, clock, receiver):
    answers = iter([(500, {}, b"oops"), (0, {}, b""), (502, {}, b"bad gateway")])  # 0: hang -> client timeout
    receiver.respond = lambda req: next(answers, (200, {}, b"ok"))
    eng = make_engine(tmp_path, clock, receiver)
    pools = Pools(eng, crm=0.95)

    async def go():
        await run_for(eng, clock, 60, pools)
        await eng.aclose()

    asyncio.run(go())
    assert [r["status"] for r in receiver.requests] == [500, 0, 502, 200]
    assert len(receiver.accepted) == 1


def test_oversized_or_non_json_answers_never_crash_the_engine(tmp_path, clock, receiver, store):
    big = b"x" * (5 * 1024 * 1024)
    answers = iter([(500, {"content-type": "application/json"}, b"{not json"), (503, {}, big)])
    receiver.respond = lambda req: next(answers, (200, {}, big))
    eng = make_engine(tmp_path, clock, receiver, store=store)
    pools = Pools(eng, crm=0.95)

    async def go():
        await run_for(eng, clock, 60, pools)
        pools.levels["orders"] = 0.96
        await run_for(eng, clock, 70, pools)
        await eng.aclose()

    asyncio.run(go())
    assert len(receiver.accepted) == 2
    errors = store.query("SELECT error FROM notifications WHERE result = 'retrying'")
    assert all(len(e) <= 500 for e in errors.error)


def test_silence_mutes_matching_alerts_until_expired(tmp_path, clock, receiver, store):
    eng = make_engine(tmp_path, clock, receiver, store=store, group_by="[pool]")
    sid = eng.silences.create([{"name": "pool", "value": "crm", "isRegex": False, "isEqual": True}], duration=3600,
                              created_by="oncall", comment="crm maintenance")
    pools = Pools(eng, crm=0.95, orders=0.95)

    async def go():
        await run_for(eng, clock, 30, pools)
        assert [b["groupLabels"] for b in receiver.bodies()] == [{"pool": "orders"}]
        eng.silences.expire(sid)
        await run_for(eng, clock, 70, pools)
        await eng.aclose()

    asyncio.run(go())
    assert sorted(b["groupLabels"]["pool"] for b in receiver.bodies()) == ["crm", "orders"]
    again = Silences(clock, store=store)  # another process sees the same silences
    (s,) = again.list()
    assert s["status"]["state"] == "expired" and s["createdBy"] == "oncall"


def test_silence_api_refuses_bad_input(clock):
    s = Silences(clock)
    with pytest.raises(SilenceError, match="at least one matcher"):
        s.create([], duration=60)
    with pytest.raises(SilenceError, match="bad regex"):
        s.create([{"name": "pool", "value": "(", "isRegex": True}], duration=60)
    with pytest.raises(SilenceError, match="end after it starts"):
        s.create([{"name": "pool", "value": "x"}], ends_at=clock.now() - 1)
    sid = s.create([{"name": "pool", "value": "x"}], duration=60)
    s.expire(sid)
    with pytest.raises(SilenceError, match="already expired"):
        s.expire(sid)
    with pytest.raises(SilenceError, match="no silence"):
        s.expire("nope")


def test_inhibition_mutes_targets_while_the_source_fires(tmp_path, clock, receiver):
    extra = """inhibit_rules:
  - source_match: {alertname: PoolCritical}
    target_match: {alertname: PoolHigh}
    equal: [pool]
"""
    eng = make_engine(tmp_path, clock, receiver, extra=extra, group_by="[alertname, pool]")
    pools = Pools(eng, crm=0.995, orders=0.95)

    async def go():
        await run_for(eng, clock, 20, pools)
        await eng.aclose()

    asyncio.run(go())
    got = sorted((b["groupLabels"]["alertname"], b["groupLabels"]["pool"]) for b in receiver.bodies())
    # PoolHigh for crm is inhibited by PoolCritical for crm; PoolHigh for orders is not
    assert got == [("PoolCritical", "crm"), ("PoolHigh", "orders")]


def test_pagerduty_triggers_and_resolves_with_a_stable_dedup_key(tmp_path, clock, receiver):
    receiver.respond = lambda req: (202, {}, b'{"status":"success","message":"Event processed","dedup_key":"x"}')
    eng = make_engine(tmp_path, clock, receiver, receiver_name="pd")
    pools = Pools(eng, crm=0.95)

    async def go():
        await run_for(eng, clock, 20, pools)
        pools.levels["crm"] = 0.5
        await run_for(eng, clock, 70, pools)
        await eng.aclose()

    asyncio.run(go())
    trigger, resolve = receiver.bodies()
    assert receiver.accepted[0]["path"] == "/v2/enqueue"
    assert trigger["event_action"] == "trigger" and resolve["event_action"] == "resolve"
    assert trigger["dedup_key"] == resolve["dedup_key"] and len(trigger["dedup_key"]) <= 255
    assert trigger["routing_key"] == "R0UT1NGKEY"
    p = trigger["payload"]
    assert p["severity"] == "critical" and p["summary"] == "pool crm at 95%" and p["class"] == "PoolHigh"
    assert {"href": "https://runbooks.example/pool", "text": "runbook"} in trigger["links"]


def test_pagerduty_400_is_final(tmp_path, clock, receiver, store):
    receiver.respond = lambda req: (400, {}, b'{"status":"invalid event","message":"Event object is invalid"}')
    eng = make_engine(tmp_path, clock, receiver, receiver_name="pd", store=store)
    pools = Pools(eng, crm=0.95)

    async def go():
        await run_for(eng, clock, 40, pools)
        await eng.aclose()

    asyncio.run(go())
    assert len(receiver.requests) == 1
    assert list(store.query("SELECT result FROM notifications").result) == ["failed"]


def test_alertmanager_push_posts_v2_alerts(tmp_path, clock, receiver):
    eng = make_engine(tmp_path, clock, receiver, receiver_name="am")
    pools = Pools(eng, crm=0.95)

    async def go():
        await run_for(eng, clock, 20, pools)
        await eng.aclose()

    asyncio.run(go())
    (req,) = receiver.accepted
    assert req["path"] == "/api/v2/alerts"
    (a,) = req["json"]
    assert set(a) == {"labels", "annotations", "startsAt", "endsAt", "generatorURL"}
    assert a["labels"]["alertname"] == "PoolHigh" and a["generatorURL"] == "http://voxwatch.test/alerts/PoolHigh"
