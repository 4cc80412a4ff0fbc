"""PagerDuty Events v2 against a local stand-in that speaks the documented API (202 accepted, 400
invalid and final, 429 throttled and retried): routing key from PAGERDUTY_ROUTING_KEY, one stable
dedup_key per alert, trigger then resolve, severities mapped, failures retried and counted."""

from __future__ import annotations

import asyncio

import pytest

from alerts.engine import AlertEngine
from alerts.model import StoreWriter
from alerts.ruleset import load_rules
from tests.alerts.conftest import run_for
from tests.pagerduty_standin import PagerDutyStandIn

KEY = "0123456789abcdef0123456789abcdef"

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
        annotations: {{summary: "pool {{{{ $labels.pool }}}} saturated"}}
      - alert: PoolWarm
        type: threshold
        expr: {{metric: voxwatch_pool_saturation_ratio}}
        aggregation: last
        window: 5s
        by: [pool]
        threshold: 0.8
        for: 0s
        severity: ticket
        annotations: {{summary: "pool {{{{ $labels.pool }}}} warm"}}
route:
  receiver: pd
  group_by: ["..."]
  group_wait: 0s
  group_interval: 10s
receivers:
  - name: pd
    type: pagerduty
    url: "{url}"
    retry: {{initial: 1s, max_backoff: 20s, timeout: 500ms}}
"""


@pytest.fixture
def pagerduty(clock):
    pd = PagerDutyStandIn(now=clock.now).start()
    yield pd
    pd.stop()


def make_engine(tmp_path, clock, pd, env, store=None):
    p = tmp_path / "r.yaml"
    p.write_text(RULES.format(url=pd.url))
    return AlertEngine(load_rules([p], env=env), clock, writer=StoreWriter(store) if store is not None else None,
                       store=store, external_url="http://voxwatch.test")


def run(eng, clock, level, plan):
    def feed(now):
        eng.ingest([("voxwatch_pool_saturation_ratio", {"pool": "crm"}, level[0])])

    async def go():
        for value, seconds in plan:
            level[0] = value
            await run_for(eng, clock, seconds, feed)
        await eng.aclose()

    asyncio.run(go())


def test_trigger_then_resolve_with_the_key_from_the_environment(tmp_path, clock, pagerduty):
    eng = make_engine(tmp_path, clock, pagerduty, {"PAGERDUTY_ROUTING_KEY": KEY})
    run(eng, clock, [0.0], [(0.95, 60), (0.5, 60)])
    assert {k for k, _ in pagerduty.incidents} == {KEY}
    by_rule = {inc["events"][0]["payload"]["class"]: inc for inc in pagerduty.incidents.values()}
    assert set(by_rule) == {"PoolHigh", "PoolWarm"}
    assert by_rule["PoolHigh"]["events"][0]["payload"]["severity"] == "critical"
    assert by_rule["PoolWarm"]["events"][0]["payload"]["severity"] == "warning"
    for inc in by_rule.values():
        # one trigger while it fired (repeats merge on the dedup_key), one resolve
        assert [e["event_action"] for e in inc["events"]] == ["trigger", "resolve"] and inc["status"] == "resolved"
    assert all(e["status"] == 202 for e in pagerduty.events)


def test_no_routing_key_means_the_receiver_is_off(tmp_path, clock, pagerduty):
    eng = make_engine(tmp_path, clock, pagerduty, {})
    run(eng, clock, [0.0], [(0.95, 30)])
    assert pagerduty.events == [] and "pd" not in eng.receivers


def test_5xx_and_429_are_retried_until_accepted_and_counted(tmp_path, clock, pagerduty, store):
    pagerduty.rate_limit = 1  # the second event inside a minute is throttled (429)
    pagerduty.fail_next = [500, 503]
    eng = make_engine(tmp_path, clock, pagerduty, {"PAGERDUTY_ROUTING_KEY": KEY}, store=store)
    run(eng, clock, [0.0], [(0.85, 30), (0.5, 150)])
    statuses = [e["status"] for e in pagerduty.events]
    assert statuses[:3] == [500, 503, 202] and 429 in statuses
    (inc,) = pagerduty.incidents.values()
    assert inc["status"] == "resolved"  # the throttled resolve got through on a later try
    rows = store.query("SELECT result, count() AS n FROM notifications GROUP BY result")
    counts = dict(zip(rows["result"], rows["n"]))
    assert counts["delivered"] == 2 and counts["retrying"] == statuses.count(500) + statuses.count(503) + statuses.count(429)


def test_an_invalid_key_is_a_400_and_is_not_retried(tmp_path, clock, pagerduty, store):
    eng = make_engine(tmp_path, clock, pagerduty, {"PAGERDUTY_ROUTING_KEY": "too-short"}, store=store)
    run(eng, clock, [0.0], [(0.85, 40)])
    # no retry inside a flush; the group tries again only at its next group_interval (10 s), as
    # Alertmanager does, so a fixed key is picked up without a restart
    assert [e["status"] for e in pagerduty.events] == [400] * 4
    rows = store.query("SELECT result, attempt FROM notifications")
    assert list(rows.result) == ["failed"] * 4 and set(rows.attempt) == {1}
