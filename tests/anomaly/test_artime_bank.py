"""The vectorised ARTime bank (`anomaly.artime_bank`) against the per-series reference
(`anomaly.artime.ARTime`): the same series through both give the same score at every point, in
every mode the service and the NAB run use, and the same learned state at the end."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

import anomaly.artime_bank as bank_module
from anomaly.artime import ARTime, ARTimeBank, LevelWithArtime
from anomaly.artime_bank import ARTimeVectorBank, DvfaBank
from anomaly.service import LevelSettings


def _series(n_points: int = 4000, seed: int = 7) -> np.ndarray:
    """NAB-like series side by side: noise with spikes, a level shift, a sawtooth that jumps, a
    daily-looking wave, a flat one, integer counts, one that starts late, and NaN/inf gaps."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_points)
    cols = [
        1.0 * np.exp(rng.normal(0, 0.1, n_points)),
        np.r_[np.full(n_points // 2, 5.0), np.full(n_points - n_points // 2, 9.0)] + rng.normal(0, 0.3, n_points),
        (t % 40) / 40.0,
        100 + 20 * np.sin(2 * np.pi * t / 288) + rng.normal(0, 2, n_points),
        np.full(n_points, 3.0),
        rng.poisson(3, n_points).astype(float),
        np.r_[np.full(700, np.nan), 50 + rng.normal(0, 5, n_points - 700)],
        -2.0 + rng.normal(0, 0.5, n_points),  # negative values: the block's 10% rule never holds
    ]
    x = np.stack(cols, axis=1)
    x[rng.random(n_points) < 0.002, 0] *= 8  # spikes
    jump = int(0.62 * n_points)
    x[jump : jump + 20, 2] = 2.5  # the sawtooth's jump
    x[jump + 300 : jump + 310, 3] = x[jump + 290 : jump + 300, 3][::-1] + 40  # a wave's odd bump
    x[rng.random(x.shape) < 0.02] = np.nan  # gaps
    x[1234, 5] = np.inf
    return x


def _reference(x: np.ndarray, **kwargs) -> tuple[np.ndarray, list[ARTime]]:
    refs = [ARTime(**{k: (v[j] if isinstance(v, list) else v) for k, v in kwargs.items()})
            for j in range(x.shape[1])]
    out = np.zeros(x.shape)
    for j, det in enumerate(refs):
        for i in np.flatnonzero(np.isfinite(x[:, j])):
            out[i, j] = det.process_one(float(x[i, j]))
    return out, refs


def _assert_same_state(bank: ARTimeVectorBank, refs: list[ARTime]) -> None:
    assert bank.i.tolist() == [r.i for r in refs]
    assert bank.art.count.tolist() == [len(r.art.w) for r in refs]
    assert bank.art.n_clusters.tolist() == [r.art.n_clusters for r in refs]
    np.testing.assert_array_equal(bank.art.rho_lb, [r.art.rho_lb for r in refs])
    np.testing.assert_array_equal(bank.art.rho_ub, [r.art.rho_ub for r in refs])
    for j, r in enumerate(refs):
        np.testing.assert_array_equal(bank.art.weights(j), r.art.w)


MODES = {
    "service (LevelSettings(artime=True))": dict(probation=600, margin=0.5),
    "quiet (with_artime('quiet'): far clusters only)": dict(probation=600, margin=0.5, max_match=0.4),
    "range floors (min_width, level_width)": dict(probation=400, margin=0.5, min_width=40, level_width=1.0),
}


@pytest.fixture(params=["compiled", "numpy"])
def search(request, monkeypatch):
    """Both category searches: the compiled one (numba) and the numpy one (without numba)."""
    if request.param == "compiled" and not DvfaBank.compiled:
        pytest.skip("numba is not installed")
    monkeypatch.setattr(DvfaBank, "compiled", request.param == "compiled")
    return request.param


@pytest.mark.parametrize("mode", sorted(MODES))
def test_the_bank_gives_the_references_scores_at_every_point(mode, search):
    x = _series()
    expected, refs = _reference(x, **MODES[mode])
    bank = ARTimeVectorBank(x.shape[1], **MODES[mode])
    got = np.array([bank.update(row) for row in x])
    np.testing.assert_array_equal(got, expected)
    # the series do have episodes (reported, or dropped by `max_match`): the comparison means something
    assert bank.n_sims.sum() > 10 and bank.n_sims.tolist() == [len(r.anomaly_sims) for r in refs]
    _assert_same_state(bank, refs)


@pytest.mark.parametrize("gaps", [True, False])
def test_many_series_searched_in_blocks_of_count_sorted_rows_give_the_same_scores(gaps, search):
    """Over 32 series the search runs in blocks of series sorted by category count (sorted again
    every 100 searches), all series due at once (no gaps: all in step) or a few (gaps put the
    series' downsampling out of step); the category pool grows and is rebuilt on the way. 64
    series against the reference; each series' room is its own, not the largest count's."""
    x = np.concatenate([_series(2000, seed=s) for s in range(8)], axis=1)
    if not gaps:
        x = np.where(np.isfinite(x), x, 1.0)
    expected, refs = _reference(x, probation=400, margin=0.5)
    bank = ARTimeVectorBank(x.shape[1], probation=400)
    got = np.array([bank.update(row) for row in x])
    np.testing.assert_array_equal(got, expected)
    counts, pool = bank.art.count, bank.art.pool
    assert len(set(counts.tolist())) > 10 and bank.art._searches > 100
    assert (pool.cap >= counts).all() and (pool.cap <= np.maximum(16, 1.5 * counts + 1)).all()
    assert pool.cap.min() < counts.max()  # room not padded to the largest series
    _assert_same_state(bank, refs)


def test_given_ranges_and_probations_per_series_as_nab_hands_them(search):
    """`--artime-input nab`: each series its own range (here not always holding all its values)
    and probation (15% of its length), fed every row."""
    x = np.nan_to_num(_series(3000, seed=3), nan=1.0, posinf=1.0)
    lows = [float(v) for v in np.nanmin(x, axis=0)]
    highs = [float(v) for v in np.nanmax(x, axis=0)]
    highs[0] = float(np.median(x[:, 0]))  # a range that misses the spikes: values held at its edge
    probations = [300, 450, 450, 750, 200, 300, 600, 450]
    expected, refs = _reference(x, probation=probations, low=lows, high=highs, max_match=0.4)
    bank = ARTimeVectorBank(x.shape[1], probation=probations, low=lows, high=highs, max_match=0.4)
    got = np.array([bank.update(row, np.arange(x.shape[1])) for row in x])
    np.testing.assert_array_equal(got, expected)
    _assert_same_state(bank, refs)


def test_real_nab_files_with_their_range_give_the_same_scores(nab_files):
    files = [f for f in nab_files if "art_daily_jumpsup" in f.name or "ec2_cpu_utilization_5f5533" in f.name
             or "exchange-2_cpc_results" in f.name]
    assert len(files) == 3
    from anomaly.nab.run import nab_input_artime, nab_input_bank

    bank, lengths = nab_input_bank(files), np.array([f.n for f in files])
    values = np.full((int(lengths.max()), len(files)), np.nan)
    for k, f in enumerate(files):
        values[: f.n, k] = f.values
    got = np.array([bank.update(row, np.flatnonzero(i < lengths)) for i, row in enumerate(values)])
    for k, f in enumerate(files):
        det = nab_input_artime(f)
        np.testing.assert_array_equal(got[: f.n, k], [det.process_one(v) for v in f.values])


@pytest.mark.parametrize("mode", ["nab", "quiet"])
def test_level_bank_with_artime_the_same_vectorised_or_looped_bad_input_included(mode):
    """The service's ARTime modes end to end (guard, level detector, ARTime, findings stage): the
    vectorised bank and the per-series loop give the same ticks, NaN, inf and a step back in time
    included."""
    s = LevelSettings().with_artime(mode)
    x = _series(3000, seed=11)
    runs = []
    for vectorised in (True, False):
        det, gate = s.detector(x.shape[1], artime_vectorised=vectorised), s.gate(x.shape[1])
        assert isinstance(det.artime, ARTimeVectorBank if vectorised else ARTimeBank)
        ticks = []
        for i, row in enumerate(x):
            ts = 15.0 * i if i != 2000 else 15.0 * (i - 3)
            tick = det.update(ts, row)
            g = gate.update(ts, tick.score, calibrated=tick.calibrated, episodic=tick.episodic)
            ticks.append((tick.calibrated, tick.episodic, g.score, g.fired))
        runs.append(ticks)
    for (cal_v, epi_v, score_v, fired_v), (cal_l, epi_l, score_l, fired_l) in zip(*runs, strict=True):
        np.testing.assert_array_equal(cal_v, cal_l)
        np.testing.assert_array_equal(epi_v, epi_l)
        np.testing.assert_array_equal(score_v, score_l)
        np.testing.assert_array_equal(fired_v, fired_l)
    assert any(e.any() for _, e, _, _ in runs[0])


def test_relearn_keeps_the_loop_and_the_bank_refuses_it_clearly():
    det = LevelSettings(artime=True, artime_relearn=True).detector(2)
    assert isinstance(det, LevelWithArtime) and isinstance(det.artime, ARTimeBank)
    with pytest.raises(ValueError, match="relearn"):
        ARTimeVectorBank(2, relearn=True)


def test_per_series_settings_of_the_wrong_length_are_a_clear_error():
    with pytest.raises(ValueError, match="probation: one value or one per series"):
        ARTimeVectorBank(2, probation=[600, 700, 800])
    with pytest.raises(ValueError, match="low: one value or one per series"):
        ARTimeVectorBank(2, low=[0.0], high=[1.0, 2.0])


def test_a_peek_learns_nothing_and_scores_as_the_update_would():
    x = _series(2600, seed=5)
    bank = ARTimeVectorBank(x.shape[1], probation=600)
    for row in x[:-1]:
        bank.update(row)
    before = (bank.i.copy(), bank.art.count.copy())
    peeked = bank.peek(x[-1])
    assert np.array_equal(bank.i, before[0]) and np.array_equal(bank.art.count, before[1])
    np.testing.assert_array_equal(peeked, bank.update(x[-1]))


def test_docstring_example_runs():
    result = doctest.testmod(bank_module)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.slow
def test_artime_alone_on_nab_the_same_through_the_bank_as_file_by_file(nab_files):
    """`voxwatch anomaly nab --artime-only` runs the bank (all files ticking together); file by file
    through the reference gives the same scores on every row of the corpus."""
    from anomaly.nab.run import artime_scores

    for got, expected in zip(artime_scores(nab_files), artime_scores(nab_files, vectorised=False), strict=True):
        np.testing.assert_array_equal(got, expected)
