"""Each detector's behaviour, as the on-call engineer relies on it."""

from __future__ import annotations

import doctest
import importlib

import numpy as np
import pytest

from anomaly.base import LEVEL_SHIFT, SATURATION_TREND, SPIKE
from anomaly.isolation_forest import MultivariateIsolation
from anomaly.likelihood import LikelihoodGate
from anomaly.robust_level import RobustLevel
from anomaly.saturation_trend import SaturationTrend


@pytest.mark.parametrize(
    "module", ["robust_level", "saturation_trend", "likelihood", "isolation_forest", "lead_time"]
)
def test_docstring_example_runs(module):
    result = doctest.testmod(importlib.import_module(f"anomaly.{module}"))
    assert result.attempted > 0 and result.failed == 0


# -- saturation ---------------------------------------------------------------------------------
@pytest.mark.parametrize("noise", [0.002, 0.01, 0.02])
def test_saturation_ramp_forecasts_time_to_exhaustion_close_to_truth(noise):
    rng = np.random.default_rng(7)
    det = SaturationTrend(capacity=1.0, window=40, horizon_s=3600)
    step = 15.0
    rate = 0.3 / 3600  # +30 % of capacity per hour, from 0.4
    for i in range(120):
        t = step * i
        s = det.update(t, [0.4 + rate * t + rng.normal(0, noise)])
    truth = (1.0 - (0.4 + rate * t)) / rate
    assert s.time_to_exhaustion_s[0] == pytest.approx(truth, rel=0.15)
    assert s.kind[0] == SATURATION_TREND
    # the rise over the window is 0.05: clear above noise 0.01, only half believable at 0.02
    assert s.confidence[0] > (0.8 if noise <= 0.01 else 0.3)


def test_flat_noisy_saturation_series_never_scores_a_finding():
    rng = np.random.default_rng(3)
    det = SaturationTrend(capacity=1.0, window=30, horizon_s=1800)
    gate = LikelihoodGate(mode="direct", threshold=0.4, cooldown_s=900)  # the service's threshold
    fired = 0
    for i in range(5000):
        s = det.update(10.0 * i, [np.clip(0.55 + rng.normal(0, 0.05), 0, 1)])
        fired += int(gate.update(10.0 * i, s.score).fired[0])
    assert fired == 0


def test_series_arriving_at_capacity_scores_one_with_no_time_left():
    det = SaturationTrend(capacity=100.0, window=10)
    for i in range(14):  # full from i = 10; the window still remembers the climb
        s = det.update(float(i), [min(100.0, 60.0 + 4 * i) + (i % 2)])
    assert s.time_to_exhaustion_s[0] == 0.0 and s.score[0] == 1.0


def test_series_that_sits_at_capacity_is_a_steady_state_not_a_finding():
    det = SaturationTrend(capacity=1.0, window=10)  # a full cache, a quota used by design
    for i in range(40):
        s = det.update(float(i), [1.0 - 0.005 * (i % 3)])
    assert s.time_to_exhaustion_s[0] == 0.0 and s.score[0] == 0.0


def test_unknown_or_zero_capacity_gives_no_opinion():
    det = SaturationTrend(n_series=2, capacity=[np.nan, 0.0], window=10)
    for i in range(20):
        s = det.update(float(i), [0.1 * i, 0.1 * i])
    assert np.isnan(s.score).all()


def test_counter_events_on_a_quiet_series_are_not_outliers():
    """A counter's rate is 0 for hours, then one event per step now and then: one event is the
    series' quantum, not a spike."""
    rng = np.random.default_rng(0)
    det, gate = RobustLevel(), LikelihoodGate()
    rate = np.where(rng.random(4000) < 0.003, 1 / 15, 0.0)
    fired = sum(bool(gate.update(15.0 * i, det.update(15.0 * i, [r]).score).fired[0]) for i, r in enumerate(rate))
    assert fired == 0 and det.quantum[0] == pytest.approx(1 / 15)


def test_refit_every_spreads_refits_but_still_forecasts():
    rng = np.random.default_rng(2)
    det = SaturationTrend(n_series=8, capacity=1.0, window=20, refit_every=4)
    for i in range(80):
        s = det.update(float(i), 0.2 + 0.005 * i + rng.normal(0, 0.002, 8))
    truth = (1.0 - (0.2 + 0.005 * 79)) / 0.005
    assert np.allclose(s.time_to_exhaustion_s, truth, rtol=0.2)


# -- level / spike ------------------------------------------------------------------------------
def _gate_run(values, ts, det=None, gate=None):
    det = det or RobustLevel()
    gate = gate or LikelihoodGate()
    out = []
    for t, v in zip(ts, values):
        s = det.update(t, [v])
        g = gate.update(t, s.score)
        out.append((bool(g.fired[0]), s.kind[0], float(s.score[0])))
    return out


def test_flat_noisy_latency_gives_no_finding():
    rng = np.random.default_rng(11)
    n_series, n = 10, 3000  # 30,000 points, ticked together through the vectorised path
    latency = 0.18 * np.exp(rng.normal(0, 0.15, (n, n_series)))  # log-normal, like a latency P50
    det, gate = RobustLevel(n_series), LikelihoodGate(n_series)
    fired = sum(int(gate.update(15.0 * i, det.update(15.0 * i, latency[i]).score).fired.sum()) for i in range(n))
    assert fired == 0


def test_daily_seasonal_series_gives_no_finding():
    rng = np.random.default_rng(5)
    t = 300.0 * np.arange(288 * 10)  # ten days at 5 minutes
    values = 100 + 40 * np.sin(2 * np.pi * t / 86_400) + rng.normal(0, 3, t.size)
    out = _gate_run(values, t)
    assert sum(f for f, _, _ in out) == 0


def test_latency_spike_is_found_and_called_a_spike():
    rng = np.random.default_rng(1)
    n = 3000
    latency = 0.18 + rng.normal(0, 0.01, n)
    latency[2500] = 2.4
    out = _gate_run(latency, 15.0 * np.arange(n))
    fired = [i for i, (f, _, _) in enumerate(out) if f]
    assert fired == [2500]
    assert out[2500][1] == SPIKE


def test_lasting_level_shift_is_found_once_and_called_a_level_shift():
    rng = np.random.default_rng(4)
    n = 3000
    errors = 0.01 + rng.normal(0, 0.002, n)
    errors[2000:] += 0.03
    out = _gate_run(errors, 15.0 * np.arange(n))
    fired = [i for i, (f, _, _) in enumerate(out) if f]
    assert len(fired) == 1 and 2000 <= fired[0] <= 2005
    assert any(k == LEVEL_SHIFT for _, k, _ in out[2000:2010])


def test_vectorised_tick_scores_like_the_streaming_path():
    rng = np.random.default_rng(9)
    n_series, n = 5, 400
    data = rng.normal(10, 1, (n, n_series)) * np.arange(1, n_series + 1)
    data[300, 2] += 30
    many = RobustLevel(n_series=n_series)
    singles = [RobustLevel() for _ in range(n_series)]
    for i in range(n):
        tick = many.update(60.0 * i, data[i]).score
        alone = [d.process_one(data[i, k], 60.0 * i) for k, d in enumerate(singles)]
        np.testing.assert_allclose(tick, alone, equal_nan=True)


def test_score_one_does_not_learn():
    det = RobustLevel()
    for i in range(100):
        det.process_one(5.0 + (i % 3), float(i))
    before = det.score_one(50.0, 100.0)
    assert before == det.score_one(50.0, 100.0)
    assert det.count[0] == 100


# -- multivariate -------------------------------------------------------------------------------
def test_multivariate_refits_in_background_and_flags_the_odd_stage():
    rng = np.random.default_rng(0)
    det = MultivariateIsolation(n_entities=6, n_features=4, refit_every=100,
                                feature_names=["p50", "p99", "errors", "queue"])
    base = np.array([0.15, 0.29, 0.01, 3.0])
    for i in range(300):
        det.update(float(i), base * (1 + rng.normal(0, 0.05, (6, 4))))
    det.wait_for_refit()
    assert det.fits >= 1
    tick = base * (1 + rng.normal(0, 0.05, (6, 4)))
    tick[4] = base * [1.0, 3.0, 4.0, 1.0]  # p99 and errors together, queue unchanged
    s = det.update(300.0, tick)
    det.close()
    assert int(np.nanargmax(s.score)) == 4
    assert det.last_top_feature[4] in ("p99", "errors")


def test_capacity_that_grows_with_the_load_postpones_the_forecast():
    """Busy workers rise 1 per minute; the autoscaler adds capacity at 0.9 per minute: the headroom
    closes at 0.1 per minute, not 1."""
    rng = np.random.default_rng(6)
    fixed = SaturationTrend(capacity=100.0, window=40)
    scaled = SaturationTrend(capacity=100.0, window=40)
    for i in range(80):
        t = 15.0 * i
        busy = 40 + t / 60 + rng.normal(0, 0.3)
        a = fixed.update(t, [busy])
        scaled.capacity[0] = 100 + 0.9 * t / 60
        b = scaled.update(t, [busy])
    assert a.time_to_exhaustion_s[0] == pytest.approx((100 - 60) * 60, rel=0.1)
    assert b.time_to_exhaustion_s[0] == pytest.approx((118 - 60) / 0.1 * 60, rel=0.2)


def test_adaptive_tail_only_ever_lowers_a_score():
    """The learned tail forgives a series its own heavy bursts; it never makes a point look worse
    than the fixed Laplace tail would (the level and scale learn the same either way)."""
    rng = np.random.default_rng(12)
    n_series, n = 4, 2000
    data = 0.2 + 0.01 * rng.standard_t(2.5, (n, n_series))  # heavy-tailed noise
    adaptive, fixed = RobustLevel(n_series), RobustLevel(n_series, tail_quantile=0.0)
    for i in range(n):
        a = adaptive.update(15.0 * i, data[i]).score
        f = fixed.update(15.0 * i, data[i]).score
        assert np.all(np.nan_to_num(a) <= np.nan_to_num(f) + 1e-12)



def test_value_beyond_everything_seen_is_found_even_on_a_bursty_series():
    """Bursts to about 60 are this series' normal (the adaptive tail forgives them); 90 has never
    been seen and is news."""
    rng = np.random.default_rng(21)
    n = 3200
    x = 20 + rng.normal(0, 1, n)
    bursts = np.flatnonzero(rng.random(n) < 0.03)
    x[bursts] += 40 + rng.normal(0, 3, len(bursts))
    x[3000] = 90.0
    fired = [i for i, (f, _, _) in enumerate(_gate_run(x, 15.0 * np.arange(n))) if f]
    assert fired == [3000]
    without = _gate_run(x, 15.0 * np.arange(n), det=RobustLevel(new_extreme_margin=None))
    assert not any(f for f, _, _ in without)  # the rule, not the tail, finds it


def test_records_of_a_long_noise_series_do_not_page():
    """A noise series' running maximum keeps creeping up; those records are not findings."""
    rng = np.random.default_rng(22)
    n_series, n = 5, 20000
    data = 0.5 + rng.normal(0, 0.02, (n, n_series))
    det, gate = RobustLevel(n_series), LikelihoodGate(n_series)
    fired = sum(int(gate.update(15.0 * i, det.update(15.0 * i, data[i]).score).fired.sum()) for i in range(n))
    assert fired == 0


@pytest.mark.parametrize("phi", [0.95, 0.99])
def test_slowly_wandering_series_gives_no_finding(phi):
    """A gauge that wanders (AR(1) noise: its errors against the lagging level are correlated) is
    not a sustained shift. A drift view whose spread assumed independent errors paged here."""
    rng = np.random.default_rng(3)
    n_series, n = 10, 5000
    noise = rng.normal(0, 1, (n, n_series))
    x = np.zeros((n, n_series))
    for i in range(1, n):
        x[i] = phi * x[i - 1] + noise[i]
    data = 10 + 0.5 * x
    det, gate = RobustLevel(n_series), LikelihoodGate(n_series)
    fired = sum(int(gate.update(15.0 * i, det.update(15.0 * i, data[i]).score).fired.sum()) for i in range(n))
    assert fired == 0


def test_upward_bursts_do_not_excuse_a_drop():
    """The adaptive tail is learned above and below the prediction apart: a series whose upward
    bursts are ordinary still finds a drop of the same size unusual."""
    rng = np.random.default_rng(31)
    n = 3000
    x = 100 + rng.normal(0, 2, n)
    bursts = np.flatnonzero(rng.random(n) < 0.05)
    x[bursts] += rng.uniform(15, 40, len(bursts))
    det = RobustLevel(new_extreme_margin=None)
    for i in range(n):
        det.update(15.0 * i, [x[i]])
    up = det.peek(15.0 * n, [125.0]).score[0]
    down = det.peek(15.0 * n, [75.0]).score[0]
    assert down > 1.5 * up


def test_level_settings_defaults_are_the_detectors_own():
    """The quiet-day tests here run RobustLevel() and LikelihoodGate() with their defaults; the
    service and the NAB run build them from LevelSettings. The two must be one parameter set."""
    import inspect

    from anomaly.service import LevelSettings

    settings = LevelSettings()
    for cls, renamed in ((RobustLevel, {}), (LikelihoodGate, {"warmup": "gate_warmup", "warmup_s": "gate_warmup_s",
                                                               "warmup_min": "gate_warmup_min"})):
        for name, param in inspect.signature(cls.__init__).parameters.items():
            field = renamed.get(name, name)
            if param.default is inspect.Parameter.empty or field not in LevelSettings.model_fields:
                continue
            assert getattr(settings, field) == param.default, f"{cls.__name__}.{name}"
    changed = LevelSettings(new_extreme_margin=None, tail_quantile=0.05, gate_warmup=7)
    det, gate = changed.detector(3), changed.gate(3)
    assert det.n_series == 3 and det.new_extreme_margin is None and det.tail_quantile == 0.05
    assert gate.warmup == 7


def test_likelihood_floor_leaves_the_level_view_only_its_clearest_scores():
    """With a floor, a likelihood under it is 0 (no finding, no cooldown started); calibrated
    scores still pass beside it."""
    rng = np.random.default_rng(3)
    history = rng.uniform(0, 0.1, 300)
    plain, floored = LikelihoodGate(1, warmup=50), LikelihoodGate(1, warmup=50, likelihood_floor=0.99)
    for i, r in enumerate(history):
        plain.update(60.0 * i, [r])
        floored.update(60.0 * i, [r])
    bump = [0.45]  # unusual for this series, but not extremely so
    p, f = plain.update(60.0 * 300, bump), floored.update(60.0 * 300, bump)
    assert p.fired[0] and p.score[0] < 0.99
    assert not f.fired[0] and f.score[0] == 0.0
    assert floored.update(60.0 * 301, [0.0], calibrated=[0.95]).fired[0]


def test_an_episodic_calibrated_score_fires_through_the_cooldown():
    gate = LikelihoodGate(1, warmup=5, cooldown_s=3600.0)
    for i in range(10):
        gate.update(60.0 * i, [0.0])
    assert gate.update(600.0, [0.0], calibrated=[0.9]).fired[0]
    held = gate.update(660.0, [0.0], calibrated=[0.9])  # in the cooldown: held back
    assert not held.fired[0] and held.cooling[0]
    through = gate.update(720.0, [0.0], calibrated=[0.9], episodic=[True])
    assert through.fired[0] and not through.cooling[0]
    low = gate.update(780.0, [0.0], calibrated=[0.3], episodic=[True])  # under the threshold: nothing
    assert not low.fired[0]
