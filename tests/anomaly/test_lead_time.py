"""Lead time on a synthetic October-3-like series: warning well before latency crosses its budget,
nothing on a normal day, and the comparison with a predict_linear rule over the same series."""

from __future__ import annotations

import numpy as np
import pytest

from anomaly.lead_time import lead_time, predict_linear, saturation_findings


def _incident(seed=0, step=15.0):
    """Pool saturation creeping from 0.55 to 1.0 over 45 minutes (noise 0.02), latency P99 exploding
    once the pool is nearly full."""
    rng = np.random.default_rng(seed)
    t = np.arange(0, 5400, step)
    ramp = np.clip((t - 900) / 2700, 0, 1)
    util = np.clip(0.55 + 0.45 * ramp + rng.normal(0, 0.02, t.size), 0, 1)
    p99 = 0.25 + rng.normal(0, 0.01, t.size) + np.where(ramp > 0.97, 2.0, 0.0)
    return t, util, p99


def _normal_day(seed=1, step=15.0):
    """Traffic climbing and falling, noise, and the odd short burst (a batch job, a retry storm)
    that holds extra connections for one sample."""
    rng = np.random.default_rng(seed)
    t = np.arange(0, 3600 * 6, step)
    daily = 0.15 * np.sin(2 * np.pi * t / 14_400)
    bursts = np.where(rng.random(t.size) < 0.01, 0.25, 0.0)
    return t, np.clip(0.5 + daily + rng.normal(0, 0.03, t.size) + bursts, 0, 1)


def test_predict_linear_matches_least_squares():
    rng = np.random.default_rng(0)
    t = np.arange(100.0)
    v = 3 + 0.2 * t + rng.normal(0, 0.5, 100)
    got = predict_linear(t, v, window_s=20, horizon_s=50)
    sel = (t > 79 - 20) & (t <= 79)
    slope, intercept = np.polyfit(t[sel], v[sel], 1)
    assert got[79] == pytest.approx(intercept + slope * (79 + 50))


def test_detector_warns_at_least_ten_minutes_before_latency_crosses_300_ms():
    t, util, p99 = _incident()
    r = lead_time(t, util, 1.0, t, p99, budget=0.3)
    assert r["latency_crossed_s"] is not None
    assert r["detector_lead_s"] >= 600
    assert r["detector_first"]["time_to_exhaustion_s"] > 0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_detector_is_silent_on_a_normal_day(seed):
    t, util = _normal_day(seed)
    assert saturation_findings(t, util, 1.0) == []


def test_detector_warns_earlier_than_predict_linear_over_the_same_window_and_horizon():
    t, util, p99 = _incident()
    r = lead_time(t, util, 1.0, t, p99, budget=0.3, window=40, horizon_s=1800)  # rule: [10m], 30m
    assert r["predict_linear_first_s"] is not None
    assert r["detector_first_s"] < r["predict_linear_first_s"]


def test_a_predict_linear_rule_looking_further_ahead_fires_on_a_normal_day():
    """The rule could only match the detector's warning by forecasting further, and then it pages
    on ordinary traffic; the detector stays quiet on the same day."""
    day_t, day = _normal_day()
    assert np.any(predict_linear(day_t, day, 600, 3600) >= 1.0)
    assert saturation_findings(day_t, day, 1.0, window=40, horizon_s=1800) == []


def test_scenario_report_reads_a_stored_incident(store, capsys):
    """The stored form of the incident: pool saturation gauge sampled every 5 s, turn-latency
    histogram buckets per region; the report finds the lead time from the store alone."""
    import time

    from anomaly.lead_time import scenario_report
    from telemetry.catalog import default_catalog

    cat = default_catalog()
    pool, lat = cat["voxwatch_pool_saturation_ratio"], cat["voxwatch_turn_latency_seconds"]
    bounds = ["0.1", "0.2", "0.3", "0.5", "1.0", "+Inf"]
    series = [{"fingerprint": 1, "metric_id": pool.id, "metric": pool.name, "sample_name": pool.name,
               "metric_type": "gauge", "label_keys": ["pool"], "label_values": ["orders"], "first_seen_ms": 0}]
    for r, region in enumerate(("eu", "us")):
        for k, le in enumerate(bounds):
            series.append({"fingerprint": 100 + 10 * r + k, "metric_id": lat.id, "metric": lat.name,
                           "sample_name": f"{lat.name}_bucket", "metric_type": "histogram",
                           "label_keys": ["le", "region"], "label_values": [le, region], "first_seen_ms": 0})
    store.insert("metric_series", {k: [s[k] for s in series] for k in series[0]})

    rng = np.random.default_rng(0)
    t0 = int(time.time() // 3600 * 3600 - 3 * 3600) * 1000  # recent: the samples' TTL is 30 days
    ts, fps, vals = [], [], []
    cum = np.zeros((2, len(bounds)))
    for i in range(0, 5400, 5):
        ramp = min(max((i - 900) / 2700, 0), 1)
        t = t0 + i * 1000
        ts.append(t), fps.append(1), vals.append(min(1.0, 0.55 + 0.45 * ramp + rng.normal(0, 0.02)))
        mix = [0.3, 0.6, 0.1, 0.0, 0.0, 0.0] if ramp < 0.97 else [0.0, 0.05, 0.1, 0.2, 0.4, 0.25]
        for r in range(2):
            cum[r] += np.cumsum(rng.multinomial(50, mix))
            for k in range(len(bounds)):
                ts.append(t), fps.append(100 + 10 * r + k), vals.append(float(cum[r, k]))
    mids = [pool.id if fp == 1 else lat.id for fp in fps]
    store.insert("metric_samples", {"ts_ms": ts, "fingerprint": fps, "metric_id": mids, "value": vals})
    report = scenario_report(store, cat)
    assert report["latency_p99_crossed_s"] == pytest.approx(900 + 0.97 * 2700, abs=30)
    assert report["detector_lead_s"] >= 600
    assert report["first_saturation_finding"]["labels"] == {"pool": "orders"}
    rule = report["predict_linear"]["predict_linear(x[600s], 1800) >= capacity, for 0s"]
    assert rule["first_series"] == 'voxwatch_pool_saturation_ratio{pool="orders"}'
    assert rule["first_s"] is not None and report["first_saturation_finding_s"] < rule["first_s"]
    held = report["predict_linear"]["predict_linear(x[600s], 1800) >= capacity, for 300s"]
    assert held["first_s"] >= rule["first_s"] + 300  # a `for:` only ever delays a rule

    # what `voxwatch anomaly lead-time` prints from it
    from anomaly.lead_time import compare_with_predict_linear
    from voxwatch.commands.anomaly import print_lead_time

    out = {"incident": {**report, "scenario": "stored"}}
    out["comparison"] = compare_with_predict_linear(out["incident"], None)
    print_lead_time(out)
    text = capsys.readouterr().out
    assert "first saturation finding at: " in text and 'pool="orders"' in text
    assert "detector ahead by " in text


def test_the_comparison_takes_the_earliest_rule_that_stays_quiet_on_the_normal_day():
    from anomaly.lead_time import compare_with_predict_linear

    def rules(**first):
        return {name: {"first_s": t, "series_firing": 0 if t is None else 1} for name, t in first.items()}

    incident = {"first_saturation_finding_s": 900.0, "predict_linear": rules(h30=1200.0, h60=1000.0, h120=600.0)}
    baseline = {"findings": 0, "predict_linear": rules(h30=None, h60=None, h120=700.0)}
    c = compare_with_predict_linear(incident, baseline)
    # the 2-hour rule warns first on the incident, but it also fires on a normal day: not a fair rival
    assert c["rules_firing_on_baseline"] == ["h120"]
    assert c["best_quiet_rule"] == "h60" and c["detector_ahead_s"] == 100.0
