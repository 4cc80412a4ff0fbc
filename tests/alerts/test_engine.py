"""The engine's state machine on the virtual clock, each kind of rule, persistence across a
restart, and rule reloads that keep the previous set when the new one is invalid."""

from __future__ import annotations

import asyncio
import math

import pytest

from alerts.engine import AlertEngine
from alerts.model import FIRING, PENDING, RESOLVED, StoreWriter
from alerts.ruleset import RuleFileError, load_rules
from tests.alerts.conftest import SECRET, run_for


def rules(tmp_path, text, routing=""):
    p = tmp_path / "rules.yaml"
    p.write_text(text + routing)
    return load_rules([p])


POOL = """
groups:
  - name: g
    interval: 1s
    rules:
      - alert: PoolHigh
        type: threshold
        expr: {metric: voxwatch_pool_saturation_ratio}
        aggregation: last
        window: 5s
        by: [pool]
        op: ">"
        threshold: 0.9
        for: 10s
        keep_firing_for: 5s
        severity: page
        annotations:
          summary: "pool {{ $labels.pool }} at {{ $value | humanizePercentage }}"
"""


def gauge(value, pool="crm"):
    return [("voxwatch_pool_saturation_ratio", {"pool": pool}, value)]


def states(engine, rule):
    return [(t["previous_state"], t["state"]) for t in engine.transitions if t["rule"] == rule]


def test_threshold_goes_pending_then_firing_after_for_then_resolves_after_keep_firing_for(tmp_path, clock):
    eng = AlertEngine(rules(tmp_path, POOL), clock)
    level = {"v": 0.5}

    def feed(now):
        eng.ingest(gauge(level["v"]))

    async def scenario():
        await run_for(eng, clock, 5, feed)
        level["v"] = 0.95
        await run_for(eng, clock, 5, feed)
        assert [a.state for a in eng.alerts.values()] == [PENDING]
        await run_for(eng, clock, 6, feed)
        (a,) = eng.firing()
        assert a.labels["pool"] == "crm" and a.labels["severity"] == "page"
        assert a.annotations["summary"] == "pool crm at 95%"
        assert a.fired_at - a.active_since == pytest.approx(10.0)
        level["v"] = 0.5
        await run_for(eng, clock, 4, feed)
        assert eng.firing()  # keep_firing_for holds it
        await run_for(eng, clock, 3, feed)
        assert [a.state for a in eng.alerts.values()] == [RESOLVED]

    asyncio.run(scenario())
    assert states(eng, "PoolHigh") == [("inactive", PENDING), (PENDING, FIRING), (FIRING, RESOLVED)]


def test_pending_alert_that_stops_holding_never_fires(tmp_path, clock):
    eng = AlertEngine(rules(tmp_path, POOL), clock)
    for v in [0.95] * 5 + [0.2] * 3:
        clock.advance(1)
        eng.ingest(gauge(v))
        eng.step()
    assert not eng.alerts
    assert states(eng, "PoolHigh") == [("inactive", PENDING), (PENDING, "inactive")]


def test_histogram_quantile_rule_reads_bucket_increases(tmp_path, clock):
    text = """
groups:
  - name: g
    rules:
      - alert: SlowTurns
        type: threshold
        expr: {metric: voxwatch_turn_latency_seconds}
        aggregation: quantile
        quantile: 0.99
        window: 30s
        threshold: 0.3
"""
    eng = AlertEngine(rules(tmp_path, text), clock)
    bounds = [0.1, 0.2, 0.3, 0.5, 1.0, math.inf]
    counts = [0.0] * len(bounds)

    def observe(latency, n):
        for i, b in enumerate(bounds):
            if latency <= b:
                counts[i] += n

    def feed():
        eng.ingest([("voxwatch_turn_latency_seconds_bucket", {"le": str(b) if b != math.inf else "+Inf"}, c) for b, c in zip(bounds, counts)])

    for _ in range(40):  # fast turns: P99 well under 300 ms
        clock.advance(1)
        observe(0.15, 100)
        feed()
        eng.step()
    assert not eng.alerts
    for _ in range(10):  # 5% of turns now take 800 ms
        clock.advance(1)
        observe(0.15, 95)
        observe(0.8, 5)
        feed()
        eng.step()
    (a,) = eng.firing()
    assert 0.5 < a.value <= 1.0


def test_slo_burn_pages_only_when_long_and_short_windows_both_burn(tmp_path, clock):
    text = """
groups:
  - name: g
    interval: 10s
    rules:
      - alert: ErrorBudgetBurn
        type: slo
        objective: 0.99
        sli:
          kind: errors
          bad: {metric: voxwatch_calls_ended_total, match: {outcome: failed}}
          total: {metric: voxwatch_calls_ended_total}
        burn_windows:
          - {long: 1h, short: 5m, factor: 14.4, severity: page}
"""
    eng = AlertEngine(rules(tmp_path, text), clock)
    ok, failed = 0.0, 0.0

    def run(seconds, per_s_ok, per_s_failed):
        nonlocal ok, failed
        for _ in range(seconds):
            clock.advance(1)
            ok += per_s_ok
            failed += per_s_failed
            eng.ingest([("voxwatch_calls_ended_total", {"outcome": "completed"}, ok),
                        ("voxwatch_calls_ended_total", {"outcome": "failed"}, failed)])
            eng.step()

    run(3600, 100, 0.5)  # a healthy hour: 0.5% errors, burn 0.5x
    assert not eng.alerts
    run(60, 50, 50)  # one bad minute: the 5m window burns hard, the 1h window does not
    assert not eng.firing()
    run(1500, 50, 50)  # 25 bad minutes: both windows above 14.4x (1h: about 22% errors)
    (a,) = eng.firing()
    assert a.labels["burn_window"] == "1h/5m" and a.labels["severity"] == "page"
    assert a.value > 14.4


def test_predictive_rule_fires_on_a_saturation_forecast_inside_the_horizon(tmp_path, clock):
    text = """
groups:
  - name: g
    rules:
      - alert: PoolForecast
        type: predictive
        metric: voxwatch_pool_saturation_ratio
        horizon: 20m
        min_confidence: 0.5
        window: 5m
        by: [pool]
"""
    eng = AlertEngine(rules(tmp_path, text), clock)
    finding = {"detector": "saturation_trend", "kind": "saturation_trend", "metric": "voxwatch_pool_saturation_ratio",
               "labels": {"pool": "orders"}, "score": 0.9, "value": 0.7, "confidence": 0.8}
    eng.on_finding({**finding, "ts": clock.now(), "time_to_exhaustion_s": 3600.0})
    clock.advance(1)
    eng.step()
    assert not eng.alerts  # an hour away: outside the horizon
    eng.on_finding({**finding, "ts": clock.now(), "time_to_exhaustion_s": 900.0})
    clock.advance(1)
    eng.step()
    (a,) = eng.firing()
    assert a.labels["pool"] == "orders" and a.value == 900.0
    clock.advance(400)  # no newer finding inside the window: the forecast is stale
    eng.step()
    assert not eng.firing()


def test_predictive_series_rule_projects_like_predict_linear(tmp_path, clock):
    text = """
groups:
  - name: g
    rules:
      - alert: Linear
        type: predictive
        source: series
        expr: {metric: voxwatch_pool_saturation_ratio}
        capacity: 1.0
        horizon: 10m
        window: 5m
"""
    eng = AlertEngine(rules(tmp_path, text), clock)
    for i in range(300):  # rises 0.001 per second from 0.3: reaches 1.0 after 700 s
        clock.advance(1)
        eng.ingest(gauge(0.3 + 0.001 * i))
        eng.step()
    assert len(eng.firing()) == 1  # 400 s left at the end: inside the 10 m horizon
    assert eng.firing()[0].value == pytest.approx(401, abs=2)


def test_anomaly_rule_matches_kind_metric_glob_and_score(tmp_path, clock):
    text = """
groups:
  - name: g
    rules:
      - alert: LatencyAnomaly
        type: anomaly
        kinds: [spike, level_shift]
        metric: "voxwatch_*latency*"
        min_score: 0.9
        window: 1m
        by: [metric]
"""
    eng = AlertEngine(rules(tmp_path, text), clock)
    base = {"detector": "robust_level", "labels": {}, "value": 1.0, "time_to_exhaustion_s": None, "confidence": 1.0}
    eng.on_finding({**base, "ts": clock.now(), "kind": "spike", "metric": "voxwatch_turn_latency_seconds", "score": 0.5})
    eng.on_finding({**base, "ts": clock.now(), "kind": "multivariate", "metric": "voxwatch_turn_latency_seconds", "score": 0.99})
    eng.on_finding({**base, "ts": clock.now(), "kind": "spike", "metric": "voxwatch_calls_active", "score": 0.99})
    clock.advance(1)
    eng.step()
    assert not eng.alerts
    eng.on_finding({**base, "ts": clock.now(), "kind": "level_shift", "metric": "voxwatch_turn_latency_seconds", "score": 0.95})
    clock.advance(1)
    eng.step()
    (a,) = eng.firing()
    assert a.labels["metric"] == "voxwatch_turn_latency_seconds"


ROUTING = """
route:
  receiver: pager
  group_by: [alertname]
  group_wait: 2s
  group_interval: 30s
  repeat_interval: 4h
receivers:
  - name: pager
    type: webhook
    url: "{url}"
    secret: "{secret}"
"""


def test_restart_neither_loses_nor_repeats_a_firing_alert(tmp_path, clock, store, receiver):
    rs = rules(tmp_path, POOL, ROUTING.format(url=receiver.url + "/hook", secret=SECRET))
    writer = StoreWriter(store)
    level = {"v": 0.95}

    async def first_life():
        eng = AlertEngine(rs, clock, writer=writer, store=store)
        await run_for(eng, clock, 20, lambda now: eng.ingest(gauge(level["v"])))
        assert len(eng.firing()) == 1
        await eng.aclose()

    asyncio.run(first_life())
    assert len(receiver.accepted) == 1
    fired_at = None

    async def second_life():
        nonlocal fired_at
        eng = AlertEngine(rs, clock, writer=writer, store=store)  # a new process: state from the store
        (a,) = eng.firing()
        fired_at = a.fired_at
        await run_for(eng, clock, 60, lambda now: eng.ingest(gauge(level["v"])))
        assert len(receiver.accepted) == 1  # not paged again
        level["v"] = 0.2
        await run_for(eng, clock, 40, lambda now: eng.ingest(gauge(level["v"])))
        await eng.aclose()

    asyncio.run(second_life())
    assert fired_at is not None
    statuses = [b["status"] for b in receiver.bodies()]
    assert statuses == ["firing", "resolved"]
    events = store.query("SELECT previous_state, state FROM alert_events ORDER BY ts_ms")
    assert list(zip(events.previous_state, events.state)) == [("inactive", "pending"), ("pending", "firing"), ("firing", "resolved")]


def test_invalid_reload_is_refused_and_the_previous_rules_keep_running(tmp_path, clock):
    good = tmp_path / "good.yaml"
    good.write_text(POOL)
    eng = AlertEngine(load_rules([good]), clock)
    bad = tmp_path / "bad.yaml"
    bad.write_text(POOL.replace("threshold: 0.9", "threshold: high"))
    with pytest.raises(RuleFileError, match="rule 'PoolHigh', field threshold"):
        eng.reload([bad])
    assert "field threshold" in eng.last_reload_error
    for _ in range(15):
        clock.advance(1)
        eng.ingest(gauge(0.97))
        eng.step()
    assert [a.rule for a in eng.firing()] == ["PoolHigh"]


def test_a_broken_rule_does_not_stop_the_others(tmp_path, clock, monkeypatch):
    eng = AlertEngine(rules(tmp_path, POOL + POOL.split("rules:")[1].replace("PoolHigh", "Other").replace("groups:", "")), clock)
    import alerts.engine as engine_mod

    real = engine_mod.evaluate

    def flaky(rule, *a):
        if rule.name == "Other":
            raise ZeroDivisionError("boom")
        return real(rule, *a)

    monkeypatch.setattr(engine_mod, "evaluate", flaky)
    for _ in range(15):
        clock.advance(1)
        eng.ingest(gauge(0.97))
        eng.step()
    assert [a.rule for a in eng.firing()] == ["PoolHigh"]
    assert "boom" in eng.rule_errors["Other"]


def test_live_loop_scrapes_a_prometheus_registry_on_the_wall_clock(tmp_path):
    from prometheus_client import CollectorRegistry, Gauge

    from telemetry.clock import WallClock

    reg = CollectorRegistry()
    g = Gauge("voxwatch_pool_saturation_ratio", "pool saturation", ["pool"], registry=reg)
    g.labels(pool="crm").set(0.97)
    text = POOL.replace("for: 10s", "for: 0s").replace("interval: 1s", "interval: 50ms")
    eng = AlertEngine(rules(tmp_path, text), WallClock())

    async def go():
        stop = asyncio.Event()
        task = asyncio.create_task(eng.run(reg, stop, interval=0.05))
        for _ in range(100):
            await asyncio.sleep(0.02)
            if eng.firing():
                break
        stop.set()
        await task

    asyncio.run(go())
    assert [a.labels["pool"] for a in eng.firing()] == ["crm"]


def test_findings_rules_can_match_the_findings_labels(tmp_path, clock):
    text = """
groups:
  - name: g
    rules:
      - alert: IntegrationPools
        type: predictive
        metric: voxwatch_pool_saturation_ratio
        match_re: {pool: "(?!llm$).*"}
        horizon: 20m
        by: [pool]
      - alert: LLMPool
        type: predictive
        metric: voxwatch_pool_saturation_ratio
        match: {pool: llm}
        horizon: 20m
        by: [pool]
"""
    eng = AlertEngine(rules(tmp_path, text), clock)
    for pool in ("llm", "orders"):
        eng.on_finding({"ts": clock.now(), "detector": "saturation_trend", "kind": "saturation_trend",
                        "metric": "voxwatch_pool_saturation_ratio", "labels": {"pool": pool}, "score": 0.9,
                        "value": 0.9, "time_to_exhaustion_s": 60.0, "confidence": 0.9})
    clock.advance(1)
    eng.step()
    assert sorted((a.rule, a.labels["pool"]) for a in eng.firing()) == [("IntegrationPools", "orders"), ("LLMPool", "llm")]


def test_latency_slo_counts_turns_over_the_threshold_bucket(tmp_path, clock):
    text = """
groups:
  - name: g
    interval: 10s
    rules:
      - alert: TurnLatencySLO
        type: slo
        objective: 0.9
        sli: {kind: latency, metric: voxwatch_turn_latency_seconds, threshold: 0.3}
        burn_windows:
          - {long: 30m, short: 5m, factor: 6, severity: page}
"""
    eng = AlertEngine(rules(tmp_path, text), clock)
    under, total = 0.0, 0.0

    def run(seconds, per_s, slow_share):
        nonlocal under, total
        for _ in range(seconds):
            clock.advance(1)
            total += per_s
            under += per_s * (1 - slow_share)
            eng.ingest([("voxwatch_turn_latency_seconds_bucket", {"le": "0.3"}, under),
                        ("voxwatch_turn_latency_seconds_bucket", {"le": "+Inf"}, total),
                        ("voxwatch_turn_latency_seconds_count", {}, total)])
            eng.step()

    run(1800, 100, 0.08)  # 8% slow: within the 10% budget
    assert not eng.alerts
    run(1500, 100, 0.9)  # 90% slow for 25 minutes: burn 9x > 6x in both windows
    (a,) = eng.firing()
    assert a.labels["burn_window"] == "30m/5m" and 6 < a.value <= 9.0
