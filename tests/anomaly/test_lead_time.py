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
