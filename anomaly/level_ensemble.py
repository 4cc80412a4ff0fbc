"""The level bank's detector: the robust level detector and the contextual novelty detector side by
side, combined at the findings stage (`LikelihoodGate`).

The level detector's raw score goes through the findings stage's likelihood, as before. The novelty
detector's score is calibrated by construction (the share of the point's contexts never seen, on a
grid fixed after the warm-up): a point whose contexts are at least `novelty_full` new is a move the
series never made, and it is passed as `novelty_score` on the findings scale (0.5: above the 0.4
finding threshold), else 0. The findings stage takes the larger of the two under one cooldown, so
one parameter set serves the service and NAB (`LevelSettings`).

>>> import numpy as np
>>> det = LevelEnsemble(n_series=1)
>>> rng = np.random.default_rng(0)
>>> quiet = [det.update(60.0 * i, [180 + rng.normal(0, 5)]) for i in range(700)]
>>> max(float(s.calibrated[0]) for s in quiet[600:])
0.0
>>> float(det.update(60.0 * 700, [400.0]).calibrated[0])
0.5
"""

from __future__ import annotations

import numpy as np

from anomaly.base import NOVEL_PATTERN, Detector, TickScores, as_tick
from anomaly.context_novelty import ContextNovelty
from anomaly.robust_level import RobustLevel


class LevelEnsemble(Detector):
    name = RobustLevel.name  # findings keep the level detector's name; `kind` says novel_pattern

    def __init__(self, n_series: int = 1, *, level: RobustLevel | None = None,
                 novelty: ContextNovelty | list[ContextNovelty] | None = None, novelty_full: float = 0.8,
                 novelty_score: float = 0.5, new_levels: bool = True) -> None:
        super().__init__(n_series)
        self.level = level or RobustLevel(self.n_series)
        # several novelty detectors on grids offset from each other: a move is novel only when it is
        # novel on all of them (noise that crosses one grid's cut does not cross the other's)
        grids = novelty if isinstance(novelty, list) else [novelty or ContextNovelty(self.n_series)]
        self.grids = grids
        self.novelty = grids[0]
        if self.level.n_series != self.n_series or any(g.n_series != self.n_series for g in grids):
            raise ValueError("the ensemble's detectors must watch as many series as it does")
        self.guard = self.level.guard  # one count of skipped points: the level detector's
        self.novelty_full, self.novelty_score = float(novelty_full), float(novelty_score)
        # False: a level never visited (every context new) is left to the level detector's
        # new-extreme rule; only new moves between familiar levels count
        self.new_levels = bool(new_levels)
        # the series' last point landed in a level it had never visited: the move out of it is new
        # only because the arrival was (and the arrival is the level detector's to judge)
        self.from_new_level = np.zeros(self.n_series, dtype=bool)
        # the grids floor their levels on the level detector's resolution (the service sets it there)
        for g in grids:
            g.resolution = self.level.resolution
        # series whose steps are decisions, not symptoms (a capacity an autoscaler or an operator
        # sets): the level view judges them, the pattern views do not (set by the service)
        self.patterns_judged = np.ones(self.n_series, dtype=bool)

    @property
    def resolution(self) -> np.ndarray:
        """Where the measurement itself is coarse (set by the service), as on `RobustLevel`."""
        return self.level.resolution

    def _combine(self, lv: TickScores, nvs: list[TickScores], learn: bool = False) -> TickScores:
        scores = np.stack([nv.score for nv in nvs])
        judged = np.isfinite(scores).all(axis=0)
        least = np.where(judged, np.nan_to_num(scores).min(axis=0), np.nan)
        novel = (np.nan_to_num(least) >= self.novelty_full) & self.patterns_judged
        if not self.new_levels:
            arrived = np.nan_to_num(least) >= 1.0  # a never-visited level (on every grid)
            novel &= ~arrived & ~self.from_new_level
            if learn:
                self.from_new_level = np.where(judged, arrived, self.from_new_level)
        calibrated = np.where(novel, self.novelty_score, np.where(judged, 0.0, np.nan))
        kind = lv.kind.copy()
        # named a novel pattern where the level view alone would not have paged for it
        kind[novel & ~(np.nan_to_num(lv.score) >= self.novelty_score)] = NOVEL_PATTERN
        return TickScores(lv.score, lv.expected_low, lv.expected_high, kind, calibrated=calibrated)

    def peek(self, ts, values) -> TickScores:
        ts, values = as_tick(self.n_series, ts, values)
        return self._combine(self.level.peek(ts, values), [g.peek(ts, values) for g in self.grids])

    def update(self, ts, values) -> TickScores:
        ts, values = as_tick(self.n_series, ts, values)
        return self._combine(self.level.update(ts, values), [g.update(ts, values) for g in self.grids], learn=True)
