"""Bad input never crashes a detector, never makes a finding on its own, and is counted by cause."""

from __future__ import annotations

import numpy as np
import pytest

from anomaly.isolation_forest import MultivariateIsolation
from anomaly.likelihood import LikelihoodGate
from anomaly.robust_level import RobustLevel
from anomaly.saturation_trend import SaturationTrend


def _noisy(n, seed=0):
    return 0.5 + np.random.default_rng(seed).normal(0, 0.02, n)


@pytest.mark.parametrize("make", [RobustLevel, lambda: SaturationTrend(capacity=1.0)])
def test_nan_and_infinite_points_are_skipped_and_counted(make):
    det = make()
    values = _noisy(600)
    values[200:210] = np.nan
    values[300] = np.inf
    values[301] = -np.inf
    scores = [det.process_one(v, 10.0 * i) for i, v in enumerate(values)]
    assert det.skipped["missing"] == 10
    assert det.skipped["infinite"] == 2
    assert all(np.isnan(scores[i]) for i in (*range(200, 210), 300, 301))
    assert np.nanmax(scores) < 0.5  # the clean points around them stay unremarkable


@pytest.mark.parametrize("make", [RobustLevel, lambda: SaturationTrend(capacity=1.0)])
def test_timestamps_that_go_back_or_repeat_are_skipped(make):
    det = make()
    for i in range(100):
        det.process_one(0.5, 10.0 * i)
    assert np.isnan(det.process_one(9.0, 500.0))  # back in time
    assert np.isnan(det.process_one(9.0, 990.0))  # same as the last point
    assert det.skipped["out_of_order"] == 2


def test_gap_is_counted_and_alone_raises_no_finding():
    det, gate = RobustLevel(), LikelihoodGate()
    values = _noisy(2000, seed=3)
    ts = 15.0 * np.arange(2000)
    ts[1000:] += 6 * 3600  # the series was silent six hours, then resumed unchanged
    fired = sum(bool(gate.update(t, det.update(t, [v]).score).fired[0]) for t, v in zip(ts, values))
    assert det.skipped["gap"] == 1
    assert fired == 0


def test_irregular_timestamps_are_fine():
    rng = np.random.default_rng(8)
    ts = np.cumsum(rng.uniform(1, 30, 3000))
    det, gate = RobustLevel(), LikelihoodGate()
    fired = sum(bool(gate.update(t, det.update(t, [v]).score).fired[0]) for t, v in zip(ts, _noisy(3000, 4)))
    assert fired == 0 and det.skipped["out_of_order"] == 0


@pytest.mark.parametrize("value", [0.0, 1.0, 250.0])
def test_constant_series_scores_nothing(value):
    det, gate = RobustLevel(), LikelihoodGate()
    sat = SaturationTrend(capacity=1000.0)
    for i in range(1000):
        s = det.update(10.0 * i, [value])
        g = gate.update(10.0 * i, s.score)
        assert not g.fired[0]
        assert not (sat.update(10.0 * i, [value]).score[0] > 0)


def test_series_that_start_late_or_stop_are_left_alone():
    n_series, n = 3, 1500
    det = RobustLevel(n_series=n_series)
    gate = LikelihoodGate(n_series=n_series)
    data = np.stack([_noisy(n, s) for s in range(n_series)], axis=1)
    data[:700, 1] = np.nan  # starts late
    data[900:, 2] = np.nan  # stops
    fired = np.zeros(n_series, dtype=int)
    for i in range(n):
        s = det.update(10.0 * i, data[i])
        fired += gate.update(10.0 * i, s.score).fired
        if i < 700 + det.warmup:
            assert np.isnan(s.score[1])
        if i >= 900:
            assert np.isnan(s.score[2])
    assert fired.tolist() == [0, 0, 0]
    assert det.skipped["missing"] == n - 900  # a stopped series misses; one not yet started does not


def test_multivariate_skips_incomplete_vectors():
    det = MultivariateIsolation(n_entities=3, n_features=2, refit_every=50, background=False, settle=20, min_train=64)
    rng = np.random.default_rng(0)
    for i in range(120):
        x = rng.normal(0, 1, (3, 2))
        if i % 10 == 0:
            x[1, 0] = np.nan
        if i % 25 == 0:
            x[2, 1] = np.inf
        s = det.update(float(i), x)
    # the NaN at tick 0 is not "missing": that entity had not started yet
    assert det.skipped["missing"] == 11 and det.skipped["infinite"] == 5
    assert np.isfinite(s.score).all()


def test_wrong_tick_width_is_a_clear_error():
    with pytest.raises(ValueError, match="3 values for 2 series"):
        RobustLevel(n_series=2).update(0.0, [1.0, 2.0, 3.0])
