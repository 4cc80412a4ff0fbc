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
                 novelty: ContextNovelty | None = None, novelty_full: float = 0.8,
                 novelty_score: float = 0.5) -> None:
        super().__init__(n_series)
        self.level = level or RobustLevel(self.n_series)
        self.novelty = novelty or ContextNovelty(self.n_series)
        if self.level.n_series != self.n_series or self.novelty.n_series != self.n_series:
            raise ValueError("the ensemble's detectors must watch as many series as it does")
        self.guard = self.level.guard  # one count of skipped points: the level detector's
        self.novelty_full, self.novelty_score = float(novelty_full), float(novelty_score)

    @property
    def resolution(self) -> np.ndarray:
        """Where the measurement itself is coarse (set by the service), as on `RobustLevel`."""
        return self.level.resolution

    def _combine(self, lv: TickScores, nv: TickScores) -> TickScores:
        novel = np.nan_to_num(nv.score) >= self.novelty_full
        calibrated = np.where(novel, self.novelty_score, np.where(np.isfinite(nv.score), 0.0, np.nan))
        kind = lv.kind.copy()
        # named a novel pattern where the level view alone would not have paged for it
        kind[novel & ~(np.nan_to_num(lv.score) >= self.novelty_score)] = NOVEL_PATTERN
        return TickScores(lv.score, lv.expected_low, lv.expected_high, kind, calibrated=calibrated)

    def peek(self, ts, values) -> TickScores:
        ts, values = as_tick(self.n_series, ts, values)
        return self._combine(self.level.peek(ts, values), self.novelty.peek(ts, values))

    def update(self, ts, values) -> TickScores:
        ts, values = as_tick(self.n_series, ts, values)
        return self._combine(self.level.update(ts, values), self.novelty.update(ts, values))
