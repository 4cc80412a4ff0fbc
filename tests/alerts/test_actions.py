"""Degradation actions: applied when an alert fires, recorded with their effect, reverted after the
alert stays resolved (with hysteresis), through the pipeline's real controller or its HTTP API."""

from __future__ import annotations

import asyncio
import json

import pytest

from alerts.actions import CallableActionSink, HttpActionSink
from alerts.engine import AlertEngine
from alerts.model import StoreWriter
from alerts.ruleset import load_rules
from pipeline.degradation import DegradationController
from tests.alerts.conftest import run_for

RULES = """
groups:
  - name: g
    interval: 1s
    rules:
      - alert: PoolHigh
        type: threshold
        expr: {metric: voxwatch_pool_saturation_ratio}
        aggregation: last
        window: 2s
        by: [pool]
        threshold: 0.9
        severity: page
        labels: {hierarchy: pool}
        action: {level: INTEGRATIONS_QUEUED, effect_metric: voxwatch_pool_saturation_ratio, min_hold: 60s, revert_after: 30s}
      - alert: RegionDown
        type: threshold
        expr: {metric: voxwatch_region_up}
        aggregation: last
        window: 2s
        by: [region]
        op: "<"
        threshold: 0.5
        severity: page
        labels: {hierarchy: "1"}
        action: {level: REGION_FAILOVER, region_label: region, min_hold: 60s, revert_after: 30s}
route:
  receiver: actions
  group_by: ["..."]
  group_wait: 0s
  group_interval: 1s
receivers:
  - name: actions
    type: action
"""


def engine(tmp_path, clock, sink, store=None, text=RULES):
    p = tmp_path / "r.yaml"
    p.write_text(text)
    return AlertEngine(load_rules([p]), clock, action_sink=sink, writer=StoreWriter(store) if store is not None else None, store=store)


class Signals:
    def __init__(self, eng):
        self.eng = eng
        self.pool = 0.5
        self.regions = {"us-east": 1.0, "us-west": 1.0}

    def __call__(self, now):
        self.eng.ingest([("voxwatch_pool_saturation_ratio", {"pool": "crm"}, self.pool)]
                        + [("voxwatch_region_up", {"region": r}, v) for r, v in self.regions.items()])


def test_action_applies_on_firing_and_reverts_after_hysteresis(tmp_path, clock, store):
    ctl = DegradationController(clock)
    eng = engine(tmp_path, clock, CallableActionSink(ctl.request, ctl.state), store)
    sig = Signals(eng)

    async def go():
        await run_for(eng, clock, 5, sig)
        sig.pool = 0.97
        await run_for(eng, clock, 2, sig)
        assert ctl.state()["level"] == "INTEGRATIONS_QUEUED"
        applied_at = clock.now()
        sig.pool = 0.5
        await run_for(eng, clock, 40, sig)  # resolved 40 s ago, but min_hold (60 s) not yet over
        assert ctl.state()["level"] == "INTEGRATIONS_QUEUED"
        await run_for(eng, clock, 30, sig)
        assert ctl.state()["level"] == "NORMAL"
        return applied_at

    asyncio.run(go())
    rows = store.query("SELECT phase, level, previous_level, rule, effect_metric, effect_value FROM degradation_actions "
                       "WHERE action_id LIKE 'act-%' ORDER BY ts_ms, indexOf(['requested', 'applied', 'observed', 'reverted'], phase)")
    assert list(rows.phase) == ["requested", "applied", "observed", "reverted"]
    assert list(rows.level) == ["INTEGRATIONS_QUEUED", "INTEGRATIONS_QUEUED", "INTEGRATIONS_QUEUED", "NORMAL"]
    assert set(rows.rule) == {"PoolHigh"} and set(rows.effect_metric) == {"voxwatch_pool_saturation_ratio"}
    assert rows.effect_value.iloc[0] > 0.9 and rows.effect_value.iloc[-1] < 0.6  # the effect, before and after
    # the action receiver hears every alert every second; only changes are logged as deliveries
    logged = store.query("SELECT payload FROM notifications WHERE integration = 'action' ORDER BY ts_ms")
    assert [json.loads(p)[0]["change"] for p in logged.payload] == ["applied", "alert resolved"]


def test_the_highest_active_level_wins_and_reverting_it_falls_back_to_the_next(tmp_path, clock):
    ctl = DegradationController(clock)
    eng = engine(tmp_path, clock, CallableActionSink(ctl.request, ctl.state))
    sig = Signals(eng)

    async def go():
        sig.pool = 0.97
        await run_for(eng, clock, 3, sig)
        sig.regions["us-east"] = 0.0
        await run_for(eng, clock, 2, sig)
        assert ctl.state()["level"] == "REGION_FAILOVER" and ctl.state()["region"] == "us-east"
        sig.regions["us-east"] = 1.0
        await run_for(eng, clock, 100, sig)
        assert ctl.state()["level"] == "INTEGRATIONS_QUEUED"  # the pool is still saturated
        sig.pool = 0.5
        await run_for(eng, clock, 100, sig)
        assert ctl.state()["level"] == "NORMAL"

    asyncio.run(go())


def test_failover_is_applied_the_second_the_alert_fires(tmp_path, clock):
    ctl = DegradationController(clock)
    eng = engine(tmp_path, clock, CallableActionSink(ctl.request, ctl.state))
    sig = Signals(eng)

    async def go():
        await run_for(eng, clock, 5, sig)
        sig.regions["us-west"] = 0.0
        down_at = clock.now()
        for _ in range(5):
            await run_for(eng, clock, 1, sig)
            if ctl.state()["level"] == "REGION_FAILOVER":
                return clock.now() - down_at
        return None

    delay = asyncio.run(go())
    assert delay is not None and delay <= 2.0


def test_an_action_that_flaps_waits_twice_as_long_before_its_next_revert(tmp_path, clock):
    ctl = DegradationController(clock)
    text = RULES.replace("min_hold: 60s, revert_after: 30s}", "min_hold: 5s, revert_after: 30s}", 1)
    eng = engine(tmp_path, clock, CallableActionSink(ctl.request, ctl.state), text=text)
    sig = Signals(eng)

    async def go():
        sig.pool = 0.97
        await run_for(eng, clock, 3, sig)
        sig.pool = 0.5
        await run_for(eng, clock, 32, sig)
        assert ctl.state()["level"] == "NORMAL"  # first revert: 30 s after it resolved
        sig.pool = 0.97  # it comes straight back
        await run_for(eng, clock, 3, sig)
        assert ctl.state()["level"] == "INTEGRATIONS_QUEUED"
        sig.pool = 0.5
        await run_for(eng, clock, 45, sig)  # 45 s resolved: past revert_after, not yet 2x revert_after
        assert ctl.state()["level"] == "INTEGRATIONS_QUEUED"
        await run_for(eng, clock, 17, sig)
        assert ctl.state()["level"] == "NORMAL"

    asyncio.run(go())


def test_a_refused_action_is_recorded(tmp_path, clock):
    class Refusing:
        def request(self, level, reason, region=None, rule=""):
            return {"phase": "refused", "reason": "operator lock"}

        def state(self):
            return {}

    eng = engine(tmp_path, clock, Refusing())
    sig = Signals(eng)

    async def go():
        sig.pool = 0.97
        await run_for(eng, clock, 3, sig)

    asyncio.run(go())
    phases = [r["phase"] for r in eng.actions.history]
    assert "refused" in phases and "applied" not in phases
    assert not eng.actions.active


def test_http_action_sink_puts_the_level_to_the_control_api(tmp_path, clock, receiver):
    receiver.respond = lambda req: (200, {"content-type": "application/json"},
                                    json.dumps({"phase": "applied", "level": req["json"]["level"]}).encode())
    eng = engine(tmp_path, clock, HttpActionSink(receiver.url))
    sig = Signals(eng)

    async def go():
        sig.regions["us-east"] = 0.0
        await run_for(eng, clock, 3, sig)
        await asyncio.sleep(0.2)
        await eng.aclose()

    asyncio.run(go())
    (req,) = [r for r in receiver.requests if r["method"] == "PUT"]
    assert req["path"] == "/v1/degradation"
    assert req["json"]["level"] == "REGION_FAILOVER" and req["json"]["region"] == "us-east" and req["json"]["rule"] == "RegionDown"


def test_an_applied_action_survives_a_restart_and_is_reverted_after(tmp_path, clock, store):
    ctl = DegradationController(clock)
    sink = CallableActionSink(ctl.request, ctl.state)
    eng = engine(tmp_path, clock, sink, store)
    sig = Signals(eng)

    async def first():
        sig.pool = 0.97
        await run_for(eng, clock, 3, sig)

    asyncio.run(first())
    assert ctl.state()["level"] == "INTEGRATIONS_QUEUED"
    eng2 = engine(tmp_path, clock, sink, store)  # the evaluator restarts; the pipeline keeps its level
    assert eng2.actions.active
    sig2 = Signals(eng2)
    sig2.pool = 0.5

    async def second():
        await run_for(eng2, clock, 100, sig2)

    asyncio.run(second())
    assert ctl.state()["level"] == "NORMAL"


def test_http_action_sink_changes_the_level_through_the_real_control_api_with_an_admin_token(tmp_path, clock):
    from types import SimpleNamespace

    from voxwatch.commands.serve import start_api
    from voxwatch.config import Scope, Settings
    from voxwatch.context import AppContext

    ctl = DegradationController(clock)
    settings = Settings().with_generated_tokens()
    api = start_api(AppContext(clock=clock, pipeline=SimpleNamespace(controller=ctl), settings=settings))
    try:
        async def ask(token):
            sink = HttpActionSink(api.url, token=token)
            try:
                return await sink.request("CACHED_RESPONSES", "LLM slow", rule="LLMLatencySpike")
            finally:
                await sink.client().aclose()

        refused = asyncio.run(ask(None))
        assert refused["phase"] == "refused" and refused["error"] == "HTTP 401"
        assert ctl.state()["level"] == "NORMAL"
        read_only = asyncio.run(ask(settings.first_token(Scope.READ)))
        assert read_only["error"] == "HTTP 403"
        applied = asyncio.run(ask(settings.first_token(Scope.ADMIN)))
        assert applied["phase"] == "applied"
        assert ctl.state()["level"] == "CACHED_RESPONSES"
    finally:
        api.stop()


def test_a_type_error_inside_the_controller_is_not_retried_as_a_second_request():
    calls = []

    def request(level, reason, region=None, rule=""):
        calls.append((level, region, rule))
        raise TypeError("a bug inside the controller")

    with pytest.raises(TypeError, match="bug inside"):
        CallableActionSink(request).request("CACHED_RESPONSES", "slow", region="us-east", rule="R")
    assert calls == [("CACHED_RESPONSES", "us-east", "R")]  # asked once, never again without region/rule


def test_the_ladder_alerts_ask_for_is_the_pipelines_and_rules_never_import_the_action_controller():
    import ast
    from pathlib import Path

    import alerts
    from alerts.model import DEFAULT_LADDER
    from pipeline.degradation import DegradationLevel

    assert list(DEFAULT_LADDER) == [m.name for m in sorted(DegradationLevel)]
    # actions -> evaluate -> ruleset, one direction: no import back up, not even inside a function
    root = Path(alerts.__file__).parent
    for module in ("ruleset.py", "evaluate.py"):
        tree = ast.parse((root / module).read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert "alerts.actions" not in imported, module
