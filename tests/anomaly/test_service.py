"""The anomaly service over a real embedded store: findings stored through the Sink and handed to
subscribers; stored samples read back, derived (rates, P99) and scored."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from anomaly.finding import Finding
from anomaly.series import Sample, SeriesDeriver, histogram_quantile
from anomaly.service import AnomalyService, AnomalySettings
from telemetry.catalog import default_catalog
from telemetry.clock import VirtualClock
from telemetry.sink import Sink

POOL = "voxwatch_pool_saturation_ratio"  # ratio: saturates at 1.0 per the catalog (a fixed-size pool)
# Recent on purpose: the tables' TTL (findings 180 days, samples 30) drops older test rows on merge.
T0 = float(int(time.time() // 3600 * 3600 - 6 * 3600))


def _ramp_then_spike(service, clock, step=10.0, n=400):
    """Utilisation flat for 200 ticks then rising 0.6 per hour; a latency gauge with one spike."""
    rng = np.random.default_rng(0)
    found = []
    for i in range(n):
        t = T0 + step * i
        clock.advance_to(t)
        util = 0.5 + rng.normal(0, 0.01) + (0.6 / 3600 * step * (i - 200) if i > 200 else 0.0)
        lat = 0.18 + rng.normal(0, 0.005) + (2.0 if i == 350 else 0.0)
        found += service.observe(t, [(POOL, {"pool": "orders"}, util), ("demo_latency_seconds", {}, lat)])
    return found


def test_findings_are_stored_and_handed_to_subscribers(store, tmp_path):
    clock = VirtualClock(T0)
    sink = Sink(store, spool_dir=tmp_path / "spool", flush_interval=0.05)
    heard: list[Finding] = []
    service = AnomalyService(sink=sink, clock=clock, catalog=default_catalog(), on_finding=[heard.append])
    returned = _ramp_then_spike(service, clock)
    sink.close()

    kinds = sorted({f.kind for f in heard})
    assert kinds == ["saturation_trend", "spike"]
    assert [f.finding_id for f in heard] == [f.finding_id for f in returned]
    sat = next(f for f in heard if f.kind == "saturation_trend")
    assert sat.metric == POOL and sat.labels == {"pool": "orders"}
    assert 0 < sat.time_to_exhaustion_s <= 1.5 * 1800 and sat.confidence > 0.4
    assert "exhausted in" in sat.reason
    spike = next(f for f in heard if f.kind == "spike")
    assert spike.ts == T0 + 3500 and spike.value > 2 and spike.expected_high < 0.3
    assert math.isnan(spike.time_to_exhaustion_s)

    rows = store.query(
        "SELECT finding_id, detector, kind, metric, label_keys, label_values, score, value, "
        "time_to_exhaustion_s, reason, ts_ms FROM anomaly_findings ORDER BY ts_ms"
    )
    assert sorted(rows["finding_id"]) == sorted(f.finding_id for f in heard)
    stored = rows.set_index("finding_id").loc[sat.finding_id]
    assert stored["detector"] == "saturation_trend" and stored["metric"] == POOL
    assert list(stored["label_keys"]) == ["pool"] and list(stored["label_values"]) == ["orders"]
    assert stored["time_to_exhaustion_s"] == pytest.approx(sat.time_to_exhaustion_s)
    assert stored["ts_ms"] == int(sat.ts * 1000)


def test_a_failing_subscriber_does_not_stop_detection(tmp_path):
    clock = VirtualClock(T0)
    heard = []

    def broken(_):
        raise RuntimeError("subscriber bug")

    service = AnomalyService(clock=clock, catalog=default_catalog(), on_finding=[broken, heard.append])
    _ramp_then_spike(service, clock)
    assert heard and service.callback_errors == len(heard)


def _series_rows(fp, metric, sample_name, mtype, labels):
    keys = sorted(labels)
    return {"fingerprint": fp, "metric_id": 1, "metric": metric, "sample_name": sample_name, "metric_type": mtype,
            "label_keys": keys, "label_values": [labels[k] for k in keys], "first_seen_ms": 0}


def test_service_reads_stored_samples_and_forecasts_exhaustion(store):
    """A ratio gauge ramps towards 1.0; a latency histogram and a counter tick beside it."""
    bounds = ["0.1", "0.2", "0.3", "0.5", "1.0", "+Inf"]
    series = [_series_rows(1, POOL, POOL, "gauge", {"pool": "payments"})]
    series += [_series_rows(10 + k, "voxwatch_turn_latency_seconds", "voxwatch_turn_latency_seconds_bucket",
                            "histogram", {"region": "eu", "le": le}) for k, le in enumerate(bounds)]
    series += [_series_rows(30, "voxwatch_calls_rejected_total", "voxwatch_calls_rejected_total", "counter",
                            {"region": "eu", "reason": "at_capacity"})]
    store.insert("metric_series", {k: [r[k] for r in series] for k in series[0]})

    rng = np.random.default_rng(1)
    step_ms, n = 15_000, 240
    ts, fps, vals = [], [], []
    cum = np.zeros(len(bounds))
    rate = 0.4 / 3600  # from 0.55 at tick 0, full 4950 s in
    for i in range(n):
        t = int(T0 * 1000) + i * step_ms
        ts.append(t), fps.append(1), vals.append(0.55 + rate * i * 15 + rng.normal(0, 0.005))
        cum += np.cumsum(rng.multinomial(100, [0.3, 0.5, 0.15, 0.04, 0.01, 0.0]))
        for k in range(len(bounds)):
            ts.append(t), fps.append(10 + k), vals.append(float(cum[k]))
        ts.append(t), fps.append(30), vals.append(float(3 * i if i != 100 else 0))  # one reset
    store.insert("metric_samples", {"ts_ms": ts, "fingerprint": fps, "metric_id": [1] * len(ts), "value": vals})

    settings = AnomalySettings()
    # the last 15 s step is whole once the clock is past it by the read lag
    service = AnomalyService(clock=VirtualClock(T0 + n * 15 + settings.lag_s), catalog=default_catalog())
    findings = service.poll_store(store)
    assert service.watermark_ms == int((T0 + n * 15) * 1000)
    assert service.poll_store(store) == []  # nothing new since the watermark

    stats = service.stats()
    assert stats["ticks"] == n
    # the gauge; the P99 and the counter's rate; no stage metrics, so no multivariate entity
    assert stats["series"] == {"saturation": 1, "level": 2, "multivariate_entities": 0}
    assert stats["skipped"]["counter_reset"] == 1
    sat = [f for f in findings if f.kind == "saturation_trend"]
    assert sat, "the ramp towards capacity must be flagged"
    first = sat[0]
    truth = (1.0 - (0.55 + rate * (first.ts - T0))) / rate
    assert first.time_to_exhaustion_s == pytest.approx(truth, rel=0.2)
    assert first.labels == {"pool": "payments"}
    assert not [f for f in findings if f.metric == "voxwatch_turn_latency_seconds"]  # a steady P99


def test_interval_p99_comes_from_bucket_increments():
    d = SeriesDeriver(quantile=0.99)
    bounds = ["0.1", "0.3", "+Inf"]

    def tick(t, cum):
        return d.derive(t, [Sample("lat", {"le": le}, c, "lat_bucket", "histogram") for le, c in zip(bounds, cum)])

    assert tick(0.0, [50, 100, 100]) == []  # first sample: nothing to difference yet
    (key, p99), = tick(10.0, [60, 200, 200])  # this interval: 10 below 0.1, 90 in (0.1, 0.3]
    assert dict(key.labels) == {"stat": "p99"}
    assert p99 == pytest.approx(0.1 + 0.2 * (99 - 10) / 90)
    assert tick(20.0, [60, 200, 200]) == []  # no observations this interval
    assert d.skipped["empty_interval"] == 1


def test_histogram_quantile_matches_prometheus_interpolation():
    b = np.array([0.1, 0.2, 0.5, np.inf])
    c = np.array([10.0, 60.0, 100.0, 100.0])
    assert histogram_quantile(0.5, b, c) == pytest.approx(0.1 + 0.1 * (50 - 10) / 50)
    assert histogram_quantile(0.99, b, c) == pytest.approx(0.2 + 0.3 * (99 - 60) / 40)
    assert math.isnan(histogram_quantile(0.5, b, np.zeros(4)))


def test_settings_reject_unknown_fields():
    with pytest.raises(ValueError, match="horizon"):
        AnomalySettings.model_validate({"saturation": {"horizon": 10}})


def test_multivariate_finding_names_the_stage_whose_metrics_no_longer_fit_together():
    from anomaly.service import MultivariateSettings

    settings = AnomalySettings(multivariate=MultivariateSettings(
        entity_labels=["stage"], features=["demo_stage_p99_seconds", "demo_stage_errors", "demo_stage_queue"],
        refit_every=100))
    service = AnomalyService(clock=VirtualClock(T0), settings=settings)
    rng = np.random.default_rng(3)
    stages = ["stt", "nlu", "response", "tts", "integration", "handoff"]
    found = []
    for i in range(900):
        load = 1 + 0.3 * np.sin(i / 50)  # load moves every stage's metrics together
        tick = []
        for k, stage in enumerate(stages):
            p99 = (0.05 + 0.02 * k) * load * (1 + rng.normal(0, 0.03))
            errors = 0.01 * load * (1 + rng.normal(0, 0.05))
            queue = 5 * load * (1 + rng.normal(0, 0.05))
            if stage == "nlu" and i >= 800:
                p99, queue = p99 * 1.6, queue * 0.5  # slower while its queue empties: not load
            tick += [("demo_stage_p99_seconds", {"stage": stage}, p99), ("demo_stage_errors", {"stage": stage}, errors),
                     ("demo_stage_queue", {"stage": stage}, queue)]
        found += [(i, f) for f in service.observe(T0 + 15.0 * i, tick) if f.kind == "multivariate"]
        if i % 100 == 99:
            service.multivariate.wait_for_refit()  # deterministic test: refits land before the next tick
    service.close()
    assert service.multivariate.fits >= 5
    assert found, "the odd stage must be flagged"
    assert all(i >= 800 for i, _ in found)
    first = found[0][1]
    assert first.labels == {"stage": "nlu"} and first.detector == "isolation_forest"
    assert "unusual combination" in first.reason


def test_counter_rate_uses_when_the_samples_were_taken():
    """Stepped reads: the step starts at 0 and 15, but the last samples in them were taken at 14 and
    15.5 (a lone final sample). The rate is per second between those, not per step."""
    d = SeriesDeriver()
    assert d.derive(0.0, [Sample("c_total", {}, 100.0, "c_total", "counter", sample_ts=14.0)]) == []
    (key, rate), = d.derive(15.0, [Sample("c_total", {}, 103.0, "c_total", "counter", sample_ts=15.5)])
    assert rate == pytest.approx(3.0 / 1.5)


def test_a_p99_of_too_few_observations_is_not_judged():
    d = SeriesDeriver(min_observations=50)
    bounds = ["0.1", "+Inf"]

    def tick(t, cum):
        return d.derive(t, [Sample("lat", {"le": le}, c, "lat_bucket", "histogram") for le, c in zip(bounds, cum)])

    tick(0.0, [0, 0])
    assert tick(15.0, [10, 12]) == []  # 12 observations: their P99 is their maximum
    assert d.skipped["few_observations"] == 1
    assert len(tick(30.0, [80, 90])) == 1


def _autoscaled_ramp(with_ceiling: bool) -> list[Finding]:
    """STT workers busy rising 3 per minute; the autoscaler resizes every 10 minutes to 1.2x the load:
    against today's capacity the climb looks like exhaustion within the horizon; the autoscaler's
    ceiling (600 workers) is hours away."""
    clock = VirtualClock(T0)
    service = AnomalyService(clock=clock, catalog=default_catalog())
    rng = np.random.default_rng(4)
    found, capacity = [], 0.0
    for i in range(240):
        t = T0 + 15.0 * i
        clock.advance_to(t)
        busy = 40 + 3 * (15.0 * i / 60) + rng.normal(0, 0.3)
        if i % 40 == 0:
            capacity = 8 * math.ceil(busy * 1.2 / 8)
        samples = [("voxwatch_worker_busy", {"worker_pool": "stt"}, busy),
                   ("voxwatch_worker_capacity", {"worker_pool": "stt"}, capacity)]
        if with_ceiling:
            samples.append(("voxwatch_worker_capacity_ceiling", {"worker_pool": "stt"}, 600.0))
        found += service.observe(t, samples)
    return [f for f in found if f.kind == "saturation_trend"]


def test_autoscaled_capacity_is_judged_against_its_ceiling():
    assert _autoscaled_ramp(with_ceiling=False), "without the ceiling, today's capacity looks exhausted"
    assert _autoscaled_ramp(with_ceiling=True) == []


def _queue_after_a_scale_down(with_ceiling: bool) -> list[Finding]:
    """An empty STT worker queue while the autoscaler scales the pool down one replica every few
    minutes after a peak: the queue's capacity (4 tasks per worker) falls under it. Against today's
    capacity the headroom shrinks as if the queue filled (the two-day normal day forecast "at 0 of
    capacity 224, exhausted in 33 min" so); against the ceiling nothing changes."""
    clock = VirtualClock(T0)
    service = AnomalyService(clock=clock, catalog=default_catalog())
    found = []
    for i in range(120):
        t = T0 + 15.0 * i
        clock.advance_to(t)
        capacity = 4 * 8 * max(6, 12 - i // 12)
        samples = [("voxwatch_worker_queue_depth", {"worker_pool": "stt"}, 0.0),
                   ("voxwatch_worker_queue_capacity", {"worker_pool": "stt"}, float(capacity))]
        if with_ceiling:
            samples.append(("voxwatch_worker_queue_capacity_ceiling", {"worker_pool": "stt"}, 4 * 8 * 20.0))
        found += service.observe(t, samples)
    return [f for f in found if f.kind == "saturation_trend"]


def test_an_empty_queue_is_not_forecast_full_when_the_autoscaler_scales_down():
    assert _queue_after_a_scale_down(with_ceiling=False), "without the ceiling the shrinking capacity forecasts"
    assert _queue_after_a_scale_down(with_ceiling=True) == []


def test_the_sinks_own_bookkeeping_is_not_watched_but_the_same_burst_elsewhere_is():
    """A burst of new series rows written by the sink is its flush timing, not an incident; the same
    shape on a metric the service watches is still a finding (the ignore list is by name, nothing else)."""
    def run(metric: str, labels: dict) -> list[Finding]:
        clock = VirtualClock(T0)
        service = AnomalyService(clock=clock, catalog=default_catalog())
        rng = np.random.default_rng(1)
        found, total = [], 0.0
        for i in range(400):
            t = T0 + 15.0 * i
            clock.advance_to(t)
            total += 40 + rng.normal(0, 2) + (400 if i == 350 else 0)  # a counter: one step adds 10x its usual
            found += service.observe(t, [Sample(metric, labels, total, metric, "counter")])
        return found

    assert "voxwatch_sink_rows_written_total" in AnomalySettings().ignore
    assert run("voxwatch_sink_rows_written_total", {"table": "metric_series"}) == []
    assert run("voxwatch_calls_started_total", {"region": "us-east"}) != []
