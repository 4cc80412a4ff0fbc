"""The Alertmanager receiver as Prometheus's notifier: a firing alert is a lease renewed every
`resend_delay` (whatever the notification log says), resolves carry their real endsAt, a down or
refusing Alertmanager is retried with backoff and never blocks evaluation nor loses a resolve.

The long runs (an hour of firing) go on the virtual clock against the local HTTP receiver; the
real Debian Alertmanager 0.25 judges the short-lease run on wall time, because Alertmanager
compares endsAt with its own wall clock (a virtual hour would be a lease far in its future).
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

import httpx
import pytest

from alerts.engine import AlertEngine
from alerts.model import StoreWriter
from alerts.ruleset import RuleFileError, load_rules
from tests.alerts.conftest import run_for

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
        for: 0s
        severity: page
        labels: {{team: integrations}}
        annotations:
          summary: "pool {{{{ $labels.pool }}}} at {{{{ $value | humanizePercentage }}}}"
route:
  receiver: am
  group_wait: 10s
  repeat_interval: 4h
receivers:
  - name: am
    type: alertmanager
    urls: {urls}
    resend_delay: {resend}
    {lease}
    retry: {{initial: 2s, max_backoff: 30s, timeout: 500ms}}
"""


def ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def make_engine(tmp_path, clock, urls, *, resend="1m", lease="", store=None, external_url="http://voxwatch.test"):
    p = tmp_path / "r.yaml"
    p.write_text(RULES.format(urls=urls, resend=resend, lease=f"lease: {lease}" if lease else ""))
    return AlertEngine(load_rules([p]), clock, writer=StoreWriter(store) if store is not None else None,
                       store=store, external_url=external_url)


def feed(engine, level):
    return lambda now: engine.ingest([("voxwatch_pool_saturation_ratio", {"pool": "crm"}, level["crm"])])


def test_a_firing_alert_is_pushed_every_resend_delay_and_its_lease_never_lapses(tmp_path, clock, receiver):
    eng = make_engine(tmp_path, clock, [receiver.url])
    level = {"crm": 0.95}
    lapses = []

    def watch(now):
        feed(eng, level)(now)
        # what Alertmanager would hold now: the endsAt of the last push it accepted
        pushes = [r for r in receiver.accepted if r["path"] == "/api/v2/alerts"]
        if pushes and level["crm"] > 0.9 and now > pushes[0]["at"]:
            ends = ts(pushes[-1]["json"][0]["endsAt"])
            if ends <= now:
                lapses.append(now)

    async def go():
        await run_for(eng, clock, 3600, watch)  # an hour of firing, far past the lease and repeat_interval
        level["crm"] = 0.5
        await run_for(eng, clock, 120, watch)
        await eng.aclose()

    asyncio.run(go())
    bodies = [r["json"][0] for r in receiver.accepted]
    # a firing push leases into the future; the resolve's endsAt is the moment it resolved
    leases = [ts(r["json"][0]["endsAt"]) - r["at"] for r in receiver.accepted]
    firing = [lease for lease in leases if lease > 0]
    assert lapses == []
    # one push when it fired, then one per resend_delay: 60 in the hour (not 1, as with dedup)
    assert len(firing) == 60 and len(bodies) == 61
    gaps = [b["at"] - a["at"] for a, b in zip(receiver.accepted, receiver.accepted[1:])]
    assert max(gaps) <= 61
    assert all(230 <= lease <= 250 for lease in firing)  # 4 x resend_delay
    resolve = bodies[-1]
    resolved_at = eng.alerts[next(iter(eng.alerts))].resolved_at
    assert ts(resolve["endsAt"]) == pytest.approx(resolved_at, abs=0.001)
    assert resolve["generatorURL"] == "http://voxwatch.test/alerts/PoolHigh"
    assert resolve["labels"] == {"alertname": "PoolHigh", "severity": "page", "team": "integrations", "pool": "crm"}


def test_a_down_alertmanager_is_retried_with_backoff_and_still_gets_the_resolve(tmp_path, clock, receiver, store):
    eng = make_engine(tmp_path, clock, [receiver.url], store=store)
    level = {"crm": 0.95}
    down = {"until": 0.0}
    receiver.respond = lambda req: (503, {}, b"down") if req["at"] < down["until"] else (200, {}, b"")
    evaluated = []

    async def go():
        await run_for(eng, clock, 30, feed(eng, level))
        down["until"] = clock.now() + 600  # ten minutes of 503s, during which the alert resolves
        await run_for(eng, clock, 60, feed(eng, level))
        level["crm"] = 0.5
        n = len(eng.transitions)
        await run_for(eng, clock, 60, feed(eng, level))
        evaluated.append(len(eng.transitions) > n)  # evaluation went on (the resolve happened)
        await run_for(eng, clock, 600, feed(eng, level))
        await eng.aclose()

    asyncio.run(go())
    assert evaluated == [True]
    failed = [r for r in receiver.requests if r["status"] == 503]
    # backoff from 2 s doubling to 30 s: a few dozen tries in ten minutes, not one per second
    assert 15 <= len(failed) <= 40
    last = receiver.accepted[-1]["json"][0]
    assert ts(last["endsAt"]) == pytest.approx(eng.alerts[next(iter(eng.alerts))].resolved_at, abs=0.001)
    (pusher,) = eng.pushers.values()
    (st,) = pusher.stats()
    assert st["failed"] == len(failed) and st["dropped"] == 0
    rows = store.query("SELECT result, count() AS n FROM notifications WHERE integration = 'alertmanager' GROUP BY result")
    counts = dict(zip(rows["result"], rows["n"]))
    assert counts["retrying"] == len(failed) and counts["delivered"] >= 2


def test_a_4xx_is_not_retried_at_once(tmp_path, clock, receiver):
    receiver.respond = lambda req: (400, {}, b'{"code":400,"message":"bad alert"}')
    eng = make_engine(tmp_path, clock, [receiver.url])
    level = {"crm": 0.95}

    async def go():
        await run_for(eng, clock, 150, feed(eng, level))
        await eng.aclose()

    asyncio.run(go())
    # refused bodies are not hammered: one try when it fired, then one per resend_delay
    assert 2 <= len(receiver.requests) <= 4


def test_every_url_of_an_alertmanager_cluster_gets_every_push(tmp_path, clock, receiver):
    eng = make_engine(tmp_path, clock, [receiver.url + "/a", receiver.url + "/b/api/v2/alerts"])
    level = {"crm": 0.95}

    async def go():
        await run_for(eng, clock, 10, feed(eng, level))
        await eng.aclose()

    asyncio.run(go())
    assert sorted(r["path"] for r in receiver.accepted) == ["/a/api/v2/alerts", "/b/api/v2/alerts"]


def test_lease_shorter_than_two_resend_delays_is_refused(tmp_path, clock, receiver):
    with pytest.raises(RuleFileError, match="lease"):
        make_engine(tmp_path, clock, [receiver.url], resend="1m", lease="90s")


@pytest.mark.slow
def test_real_alertmanager_keeps_a_long_firing_alert_active_and_gets_its_resolve(tmp_path, receiver):
    """Debian's Alertmanager 0.25 is the judge: with a 1 s resend delay and a 3 s lease, an alert
    firing for 10 s (over three leases) stays active there and Alertmanager never notifies a
    resolve until Voxwatch resolves it; then the resolve arrives with Voxwatch's endsAt."""
    from telemetry.clock import WallClock
    from tests.alertmanager_server import AlertmanagerServer, binary
    from voxwatch.commands.serve import start_api
    from voxwatch.config import Settings
    from voxwatch.context import AppContext

    if binary() is None:
        pytest.skip("prometheus-alertmanager is not installed")
    am = AlertmanagerServer(tmp_path / "am", webhook_url=receiver.url + "/am-hook").start()
    clock = WallClock()
    ctx = AppContext(clock=clock, settings=Settings())
    api = start_api(ctx)
    try:
        eng = make_engine(tmp_path, clock, [am.url], resend="1s", lease="3s", external_url=api.url)
        ctx.alerts = eng
        level = {"crm": 0.95}
        seen_active: list[float] = []

        async def run(seconds):
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                feed(eng, level)(clock.now())
                await eng.tick()
                await eng.settle()
                await asyncio.sleep(0.2)

        async def go():
            # the control: an alert pushed once with the same 3 s lease (the old behaviour)
            from alerts.model import iso

            now = time.time()
            httpx.post(f"{am.url}/api/v2/alerts", json=[{"labels": {"alertname": "PushedOnce"},
                       "startsAt": iso(now), "endsAt": iso(now + 3)}], timeout=5).raise_for_status()
            await run(1.5)
            first = time.monotonic()
            while time.monotonic() - first < 10:
                await run(1.0)
                held = [a for a in am.alerts() if a["labels"]["alertname"] == "PoolHigh"]
                if held and held[0]["status"]["state"] == "active":
                    seen_active.append(time.monotonic() - first)
            level["crm"] = 0.5
            await run(2.0)
            await eng.aclose()

        asyncio.run(go())
        # active at every check, the last one more than three leases after it first fired
        assert len(seen_active) >= 8 and seen_active[-1] > 9
        hook = [r["json"] for r in receiver.accepted if r["path"] == "/am-hook"]
        # Alertmanager resolved the pushed-once alert by itself when its lease ran out
        assert any(b["status"] == "resolved" and b["groupLabels"] == {"alertname": "PushedOnce"} for b in hook)
        amhook = [b for b in hook if b["groupLabels"] == {"alertname": "PoolHigh"}]
        assert amhook and amhook[0]["status"] == "firing"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(b["status"] == "resolved" for b in amhook):
            time.sleep(0.2)
            amhook = [r["json"] for r in receiver.accepted
                      if r["path"] == "/am-hook" and r["json"]["groupLabels"] == {"alertname": "PoolHigh"}]
        statuses = [b["status"] for b in amhook]
        # no false resolve while it fired: Alertmanager's own notifications say firing until ours
        assert statuses.index("resolved") == len(statuses) - 1, statuses
        resolved = amhook[-1]["alerts"][0]
        fp = next(iter(eng.alerts))
        assert ts(resolved["endsAt"]) == pytest.approx(eng.alerts[fp].resolved_at, abs=0.002)
        assert resolved["labels"]["team"] == "integrations" and resolved["annotations"]["summary"] == "pool crm at 95%"
        assert [a for a in am.alerts() if a["labels"]["alertname"] == "PoolHigh"] == []
        # the generatorURL Alertmanager stored opens a page on the service that exists
        page = httpx.get(resolved["generatorURL"], timeout=5)
        assert resolved["generatorURL"].startswith(api.url + "/alerts/PoolHigh")
        assert page.status_code == 200 and "PoolHigh" in page.text and "resolved" in page.text
    finally:
        api.stop()
        am.stop()


def test_an_unreachable_alertmanager_never_blocks_evaluation(tmp_path, clock, receiver):
    from tests.alertmanager_server import free_port

    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there: connection refused
    eng = make_engine(tmp_path, clock, [dead, receiver.url])
    level = {"crm": 0.95}

    async def go():
        await run_for(eng, clock, 120, feed(eng, level))
        level["crm"] = 0.5
        await run_for(eng, clock, 30, feed(eng, level))
        await eng.aclose()

    asyncio.run(go())
    assert [t["state"] for t in eng.transitions] == ["pending", "firing", "resolved"]
    (pusher,) = eng.pushers.values()
    down, up = pusher.stats()
    assert down["failed"] >= 3 and down["delivered"] == 0 and down["failures_in_a_row"] >= 3
    # the healthy instance is not held back by the dead one: pushes, resends, the resolve
    assert up["failed"] == 0 and len(receiver.accepted) == 3


def test_the_external_url_never_says_0_0_0_0():
    import socket

    from voxwatch.config import Settings
    from voxwatch.config_rules import external_url

    assert external_url(Settings(host="0.0.0.0", port=8000)) == f"http://{socket.gethostname()}:8000"
    assert external_url(Settings(external_url="https://vox.example/")) == "https://vox.example"
