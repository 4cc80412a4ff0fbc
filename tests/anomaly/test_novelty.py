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
    """The service's level bank (the level view with the quiet novelty view beside it) and the level
    view alone, through the gate's calibrated path."""
    from anomaly.service import AnomalySettings

    step = 300.0 if case == "daily seasonal" else 15.0
    service = AnomalySettings().level
    assert service.novelty and service == LevelSettings.novelty_mode("quiet")
    assert _findings(QUIET_DAYS[case](), step_s=step, settings=service) == []
    assert _findings(QUIET_DAYS[case](), step_s=step, settings=LevelSettings()) == []


def test_novelty_mode_pages_on_noise_which_is_why_it_is_off():
    """Kept honest: noise keeps making moves it never made before (a rare jump between two levels,
    a wander past the warm-up's range), and the one-grid novelty view ('nab' mode) pages on them:
    the service runs the 'quiet' one (two offset grids, the rules above)."""
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


def test_a_counter_of_whole_events_is_coarse_at_one_event_per_interval():
    from anomaly.series import Sample, SeriesDeriver

    deriver = SeriesDeriver()
    for ts, events, seconds in ((0.0, 3, 1.5), (15.0, 4, 2.25), (30.0, 6, 2.75)):
        out = dict(deriver.derive(ts, [Sample("errors_total", {}, float(events), metric_type="counter"),
                                       Sample("busy_seconds_total", {}, seconds, metric_type="counter")]))
    by_metric = {k.metric: k for k in out}
    assert out[by_metric["errors_total"]] == 2 / 15
    assert deriver.resolution[by_metric["errors_total"]] == 1 / 15
    assert by_metric["busy_seconds_total"] not in deriver.resolution  # a measured quantity has no grain


def _sparse_events(n: int, seed: int, rate: float = 0.004) -> np.ndarray:
    """A counter's rate with rare whole events (one per step at most, mostly none) whose rate
    rises a little over the day, as the normal day's error counters do."""
    p = rate * (1 + np.arange(n) / n)
    return np.where(np.random.default_rng(seed).random(n) < p, 1 / 15, 0.0)


def test_novelty_levels_no_finer_than_the_measurement_keep_sparse_events_quiet():
    """Two errors in a row where the warm-up only had single ones: on a grid finer than one event
    that is a move never made (the normal day's sparse counters paged so). Either of the quiet
    mode's two rules keeps it quiet: each level at least two events wide (the resolution the
    service sets for an events counter), or a new move counted only between levels the series sits
    in often enough to have made it before (a lone event's level is visited a handful of times)."""
    n = 3000
    data = np.stack([_sparse_events(n, seed) for seed in range(40)], axis=1)
    quiet = LevelSettings.novelty_mode("quiet")

    def novel(**fields) -> int:
        s = type(quiet)(**{**quiet.model_dump(), **fields})
        det = s.detector(data.shape[1])
        det.level.resolution[:] = 1 / 15
        return sum(int((det.update(15.0 * i, row).calibrated > 0).sum()) for i, row in enumerate(data))

    assert quiet.novelty_level_resolutions == 2 and quiet.novelty_min_expected == 1
    assert novel(novelty_level_resolutions=0, novelty_min_expected=0) > 0
    assert novel(novelty_level_resolutions=2, novelty_min_expected=0) == 0
    assert novel(novelty_level_resolutions=0, novelty_min_expected=1) == 0
    assert novel() == 0


def test_novelty_grid_waits_for_a_whole_day_where_the_step_is_short():
    """600 points of a 15 s series are 2.5 hours: a grid cut then has not seen the day's peak.
    With `grid_min_s` it waits for a day of the series' own time, however many points that is, and
    replays all of them onto the grid; an hourly series is not made to wait longer."""
    fine = ContextNovelty(grid_points=600, grid_s=2 * 86_400, grid_min_s=86_400)
    hourly = ContextNovelty(grid_points=600, grid_s=2 * 86_400, grid_min_s=86_400)
    day = 86_400 // 15
    peak = np.r_[np.zeros(day - 100), np.full(100, 50.0)]  # the day's peak comes late
    for i in range(day):
        fine.update(15.0 * i, [peak[i] + i % 3])
        if i in (600, day - 2):
            assert not fine.ready[0]  # well past grid_points, not yet a day
    fine.update(15.0 * day, [1.0])
    assert fine.ready[0] and fine.highest[0] > 50  # the grid holds the peak
    assert fine.buffer.shape[1] == 600  # the day-long buffer is let go once the grid is cut
    assert fine.count[0] == day + 1  # every warm-up point was replayed onto the grid
    for i in range(50):
        hourly.update(3600.0 * i, [float(i % 7)])
    assert hourly.ready[0]  # two days of an hourly series: 48 points


def test_expected_steps_are_left_to_the_level_view():
    """An autoscaler's capacity steps between replica counts as load moves: a decision, not a
    symptom. With the novelty view on, the service's pattern views leave the catalog's capacities
    and the autoscaler's replicas alone; the same steps on a series of no such kind are judged."""
    from anomaly.service import AnomalyService, AnomalySettings
    from telemetry.catalog import default_catalog
    from telemetry.clock import VirtualClock

    clock = VirtualClock(0.0)
    settings = AnomalySettings(level=LevelSettings(novelty=True), multivariate={"enabled": False})
    service = AnomalyService(clock=clock, catalog=default_catalog(), settings=settings)
    n = 3000
    x = np.where((np.arange(n) // 20) % 2 == 0, 64.0, 72.0)
    x[2500:2505] = 68.0  # halfway between two replica counts: a move never made
    found = []
    for i in range(n):
        clock.advance_to(15.0 * i)
        found += service.observe(15.0 * i, [
            ("voxwatch_worker_capacity", {"worker_pool": "stt"}, x[i]),
            ("voxwatch_autoscaler_ready_replicas", {"worker_pool": "stt"}, x[i] / 8),
            ("demo_queue_depth", {}, x[i]),
        ])
    novel = {f.metric for f in found if f.kind == NOVEL_PATTERN}
    assert novel == {"demo_queue_depth"}


def test_a_config_that_sets_one_level_field_keeps_the_services_novelty_view():
    from anomaly.service import AnomalySettings

    settings = AnomalySettings.model_validate({"level": {"threshold": 0.5}})
    assert settings.level.threshold == 0.5
    assert settings.level == LevelSettings.novelty_mode("quiet").model_copy(update={"threshold": 0.5})
    assert not AnomalySettings.model_validate({"level": {"novelty": False}}).level.novelty
    assert AnomalySettings(level=LevelSettings()).level == LevelSettings()  # a whole LevelSettings is taken as it is
