"""The detectors learned from those above us on NAB (contextual novelty, KNN-CAD) and the level bank
that combines the novelty detector with the robust level detector: the quiet-day cases the level
detector is held to, run through the service's own combination (`LevelSettings().detector` and
`.gate`), and the moves only the novelty view finds."""

from __future__ import annotations

import doctest
import importlib

import numpy as np
import pytest

from anomaly.art_windows import ArtWindows
from anomaly.base import NOVEL_PATTERN
from anomaly.context_novelty import ContextNovelty
from anomaly.knn_cad import KnnCad
from anomaly.level_ensemble import LevelEnsemble
from anomaly.service import LevelSettings


@pytest.mark.parametrize("module", ["context_novelty", "level_ensemble", "knn_cad", "art_windows"])
def test_docstring_example_runs(module):
    result = doctest.testmod(importlib.import_module(f"anomaly.{module}"))
    assert result.attempted > 0 and result.failed == 0


def _findings(data: np.ndarray, step_s: float = 15.0, settings: LevelSettings | None = None) -> list[tuple[int, int]]:
    """(point, series) of every finding the level bank gives on `data` (points x series)."""
    data = np.asarray(data, dtype=float).reshape(len(data), -1)
    s = settings or LevelSettings()
    det, gate = s.detector(data.shape[1]), s.gate(data.shape[1])
    out = []
    for i, row in enumerate(data):
        tick = det.update(step_s * i, row)
        fired = gate.update(step_s * i, tick.score, calibrated=tick.calibrated, episodic=tick.episodic).fired
        out.extend((i, int(k)) for k in np.flatnonzero(fired))
    return out


def _ar1(phi: float, n: int, n_series: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, 1, (n, n_series))
    x = np.zeros((n, n_series))
    for i in range(1, n):
        x[i] = phi * x[i - 1] + noise[i]
    return 10 + 0.5 * x


QUIET_DAYS = {
    "flat noisy latency": lambda: 0.18 * np.exp(np.random.default_rng(11).normal(0, 0.15, (3000, 10))),
    "daily seasonal": lambda: (100 + 40 * np.sin(2 * np.pi * np.arange(2880) * 300 / 86_400)
                               + np.random.default_rng(5).normal(0, 3, 2880)),
    "long noise": lambda: 0.5 + np.random.default_rng(22).normal(0, 0.02, (20000, 5)),
    "counter events": lambda: np.where(np.random.default_rng(0).random(4000) < 0.003, 1 / 15, 0.0),
    "wandering AR(0.95)": lambda: _ar1(0.95, 5000, 10, 3),
    "wandering AR(0.99)": lambda: _ar1(0.99, 5000, 10, 3),
}


@pytest.mark.parametrize("case", sorted(QUIET_DAYS))
def test_quiet_day_gives_no_finding_with_the_service_settings(case):
    """The service's level bank (novelty off: see the next test) through the gate's calibrated path."""
    step = 300.0 if case == "daily seasonal" else 15.0
    assert not LevelSettings().novelty
    assert _findings(QUIET_DAYS[case](), step_s=step) == []


def test_novelty_mode_pages_on_noise_which_is_why_it_is_off():
    """Kept honest: noise keeps making moves it never made before (a rare jump between two levels,
    a wander past the warm-up's range), and the novelty view pages on them. When this starts
    passing with no finding, the novelty view may be turned on in the service."""
    found = _findings(QUIET_DAYS["long noise"](), settings=LevelSettings(novelty=True))
    assert len(found) > 0

def test_a_move_the_series_never_made_is_a_novel_pattern():
    """A square wave between two levels; after the warm-up it stops halfway once, inside the range
    it always had: not a record, not far from the level's mean, but a level it never visited."""
    n = 3000
    x = np.where((np.arange(n) // 20) % 2 == 0, 10.0, 20.0) + np.random.default_rng(2).normal(0, 0.05, n)
    x[2500:2505] = 15.0
    found = _findings(x, settings=LevelSettings(novelty=True))
    assert any(2500 <= i <= 2505 for i, _ in found)
    det = LevelEnsemble()
    kinds = [det.update(15.0 * i, [v]).kind[0] for i, v in enumerate(x[:2501])]
    assert kinds[-1] == NOVEL_PATTERN


def test_novelty_warm_up_is_a_duration_where_the_step_is_long():
    hourly, fine = ContextNovelty(grid_points=600, grid_s=2 * 86_400), ContextNovelty(grid_points=600, grid_s=2 * 86_400)
    for i in range(60):
        hourly.update(3600.0 * i, [float(i % 7)])
        fine.update(15.0 * i, [float(i % 7)])
    assert hourly.ready[0] and not fine.ready[0]  # two days of an hourly series, an hour of a 15 s one


def test_novelty_scores_nothing_on_bad_input_and_rests_after_a_finding():
    det = ContextNovelty(grid_points=50, rest_points=30)
    for i in range(100):
        det.update(60.0 * i, [float(i % 5)])
    assert np.isnan(det.update(60.0 * 100, [np.nan]).score[0])
    assert np.isnan(det.update(60.0 * 101, [np.inf]).score[0])
    assert det.update(60.0 * 102, [100.0]).score[0] >= 0.75  # off the grid: an edge level never visited
    after = [det.update(60.0 * (103 + i), [200.0 + i]).score[0] for i in range(29)]
    assert max(after) == 0.0


def test_vectorised_tick_scores_like_the_streaming_path():
    rng = np.random.default_rng(9)
    data = rng.normal(10, 1, (900, 4)) * np.arange(1, 5)
    many = ContextNovelty(4, grid_points=300)
    singles = [ContextNovelty(grid_points=300) for _ in range(4)]
    for i in range(900):
        tick = many.update(60.0 * i, data[i]).score
        alone = [d.process_one(data[i, k], 60.0 * i) for k, d in enumerate(singles)]
        np.testing.assert_allclose(tick, alone, equal_nan=True)


def test_knn_cad_score_is_a_conformal_p_value():
    """On independent noise every window is as strange as any other: a score of 0.99 or more comes
    about once in a hundred points (fewer: an alarm rests the series)."""
    rng = np.random.default_rng(5)
    data = rng.normal(0, 1, (3000, 4))
    det = KnnCad(4, dim=8, memory=200, k=10)
    scores = np.array([det.update(60.0 * i, data[i]).score for i in range(3000)])
    judged = scores[np.isfinite(scores)]
    assert judged.size > 8000
    assert 0.002 < np.mean(judged >= 0.99) < 0.02
    assert 0.3 < np.median(judged) < 0.6  # uniform, less the rests (scored 0) after alarms


def test_knn_cad_vectorised_tick_scores_like_the_streaming_path():
    rng = np.random.default_rng(8)
    data = rng.normal(5, 1, (400, 3)) * np.arange(1, 4)
    many = KnnCad(3, dim=6, memory=60, k=5)
    singles = [KnnCad(dim=6, memory=60, k=5) for _ in range(3)]
    for i in range(400):
        tick = many.update(60.0 * i, data[i]).score
        alone = [d.process_one(data[i, k], 60.0 * i) for k, d in enumerate(singles)]
        np.testing.assert_allclose(tick, alone, equal_nan=True)


def test_art_windows_vectorised_tick_scores_like_the_streaming_path():
    rng = np.random.default_rng(10)
    data = np.sin(np.arange(500)[:, None] / np.array([3.0, 5.0, 7.0])) + rng.normal(0, 0.05, (500, 3))
    data[450, 1] += 3.0
    many = ArtWindows(3, grid_points=200, categories=16)
    singles = [ArtWindows(grid_points=200, categories=16) for _ in range(3)]
    for i in range(500):
        tick = many.update(60.0 * i, data[i]).score
        alone = [d.process_one(data[i, k], 60.0 * i) for k, d in enumerate(singles)]
        np.testing.assert_allclose(tick, alone, equal_nan=True)
    assert many.used.sum(axis=1).max() <= 16


def test_the_service_with_novelty_on_records_a_novel_pattern():
    from anomaly.service import AnomalyService, AnomalySettings
    from telemetry.catalog import default_catalog
    from telemetry.clock import VirtualClock

    clock = VirtualClock(0.0)
    settings = AnomalySettings(level=LevelSettings(novelty=True), multivariate={"enabled": False})
    service = AnomalyService(clock=clock, catalog=default_catalog(), settings=settings)
    n = 3000
    x = np.where((np.arange(n) // 20) % 2 == 0, 10.0, 20.0) + np.random.default_rng(2).normal(0, 0.05, n)
    x[2500:2505] = 15.0
    found = []
    for i in range(n):
        clock.advance_to(15.0 * i)
        found += service.observe(15.0 * i, [("demo_queue_depth", {}, x[i])])
    novel = [f for f in found if f.kind == NOVEL_PATTERN]
    assert novel and all(15.0 * 2500 <= f.ts <= 15.0 * 2505 for f in novel)
    assert novel[0].detector == "robust_level" and novel[0].value == 15.0


def test_a_context_table_too_large_is_a_clear_error():
    with pytest.raises(ValueError, match="levels\\*\\*orders"):
        ContextNovelty(levels=16, orders=6)


@pytest.mark.parametrize("case", sorted(QUIET_DAYS))
def test_quiet_novelty_mode_gives_no_finding_on_a_quiet_day(case):
    """Two grids offset by half a level (noise that crosses one grid's cut does not cross the
    other's), new moves between familiar levels only: the quiet-day series stay quiet."""
    step = 300.0 if case == "daily seasonal" else 15.0
    assert _findings(QUIET_DAYS[case](), step_s=step, settings=LevelSettings.novelty_mode("quiet")) == []


def test_quiet_novelty_mode_finds_a_step_taken_backwards():
    """A staircase 10 -> 14 -> 20 -> 10, each step held 5 points; once it steps back from 20 to 14:
    every value is familiar and in range, only the move is new."""
    n = 3000
    x = np.array([10.0, 14.0, 20.0])[(np.arange(n) // 5) % 3] + np.random.default_rng(6).normal(0, 0.05, n)
    x[2505:2510] = 14.0 + np.random.default_rng(7).normal(0, 0.05, 5)
    assert x[2504] > 19  # the staircase stands at 20 just before
    found = _findings(x, settings=LevelSettings.novelty_mode("quiet"))
    assert [i for i, _ in found] == [2505]
    assert _findings(x) == []  # the level detector alone does not see it


def test_unknown_novelty_mode_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown novelty mode"):
        LevelSettings.novelty_mode("loud")


def test_quiet_mode_leaves_a_new_level_and_the_way_back_to_the_level_detector():
    """A noise series reaches a level it never visited (a record) and drops back: neither the
    arrival nor the move out of it is a novel pattern in the quiet mode (the record is the level
    detector's new-extreme rule's to judge); the move out of it was the one quiet-day page."""
    x = 0.18 * np.exp(np.random.default_rng(13).normal(0, 0.15, 2000))
    x[1500] = x[:1500].max() + 0.5 * np.ptp(x[:600])
    det = LevelSettings.novelty_mode("quiet").detector(1)
    calibrated = [float(det.update(15.0 * i, [v]).calibrated[0]) for i, v in enumerate(x)]
    assert calibrated[1500] == 0.0 and calibrated[1501] == 0.0
    nab_mode = LevelSettings.novelty_mode("nab").detector(1)
    loud = [float(nab_mode.update(15.0 * i, [v]).calibrated[0]) for i, v in enumerate(x[:1502])]
    assert np.nanmax(loud[1500:]) == 0.5  # the one-grid mode calls the record a novel pattern
