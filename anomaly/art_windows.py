"""Adaptive resonance over windows: the idea of ARTime (Hampton, NAB's leader at 74.9; Julia, built
on the distributed dual-vigilance fuzzy ART of AdaptiveResonance.jl), vectorised over many series.

Fuzzy ART (Carpenter, Grossberg and Rosen, 1991) learns categories as boxes in the unit hypercube:
an input I (here the last `window` values, placed on the series' grid and complement coded as
[x, 1 - x]) resonates with category j when the match |I ^ w_j| / |I| reaches the vigilance `rho`
(^ is the element-wise minimum); among resonating categories the one with the highest choice
|I ^ w_j| / (alpha + |w_j|) learns (fast learning: w_j <- I ^ w_j, the box grows to hold the window).
A window no category resonates with starts a new category; as in ARTime, that is the anomaly, once
the warm-up's categories are learned: the score is how far the best match falls short of the
vigilance, (rho - best match) / (1 - rho), capped at 1 (0 when a category resonates). ARTime also
adapts its vigilance and masks detections after one; here the vigilance is fixed and, as in the
novelty detector, the series rests for `rest_points` points after a score of `rest_base` or more.

The grid (range of the warm-up plus a margin; a duration, not a point count) and the replay of the
warm-up are the novelty detector's (`ContextNovelty`), of which this is a subclass.

>>> import numpy as np
>>> det = ArtWindows(n_series=1, grid_points=200)
>>> x = np.sin(np.arange(800) / 4.0)
>>> s = [det.process_one(v, t=60.0 * i) for i, v in enumerate(x)]
>>> max(v for v in s[400:] if v == v)
0.0
>>> max(det.process_one(v, t=60.0 * (800 + i)) for i, v in enumerate([0.0] * 8)) > 0  # the sine stops
True
"""

from __future__ import annotations

import numpy as np

from anomaly.base import SPIKE, TickScores
from anomaly.context_novelty import ContextNovelty


class ArtWindows(ContextNovelty):
    name = "art_windows"

    def __init__(self, n_series: int = 1, *, window: int = 8, categories: int = 64, rho: float = 0.75,
                 margin: float = 0.5, grid_points: int = 600, grid_s: float = 172_800.0,
                 rest_base: float = 0.75, rest_points: int = 30) -> None:
        super().__init__(n_series, levels=2, orders=1, margin=margin, grid_points=grid_points, grid_s=grid_s,
                         rest_base=rest_base, rest_points=rest_points)
        n = self.n_series
        self.window, self.n_categories, self.rho, self.choice_alpha = int(window), int(categories), float(rho), 1e-3
        self.recent = np.zeros((n, self.window))  # last values on the grid, oldest first
        self.weights = np.ones((n, self.n_categories, 2 * self.window))
        self.used = np.zeros((n, self.n_categories), dtype=bool)
        self.last_used = np.zeros((n, self.n_categories), dtype=np.int64)

    def _on_grid(self, rows, values):
        lo, hi = self.lowest[rows], self.highest[rows]
        span = hi - lo
        return np.clip(np.where(span > 0, (values - lo) / np.where(span > 0, span, 1.0), 0.5), 0.0, 1.0)

    def _match(self, rows, values):
        """The complement-coded window ending at `values`, and each category's match and choice."""
        win = np.concatenate([self.recent[rows, 1:], self._on_grid(rows, values)[:, None]], axis=1)
        coded = np.concatenate([win, 1.0 - win], axis=1)
        w = self.weights[rows]
        overlap = np.minimum(coded[:, None, :], w).sum(axis=2)
        used = self.used[rows]
        match = np.where(used, overlap / self.window, -np.inf)
        choice = np.where(used, overlap / (self.choice_alpha + w.sum(axis=2)), -np.inf)
        whole = self.count[rows] + 1 >= self.window
        return win, coded, match, choice, whole

    def _novelty(self, rows, values):
        _, _, match, _, whole = self._match(rows, values)
        best = match.max(axis=1)
        short = np.clip((self.rho - best) / (1.0 - self.rho), 0.0, 1.0)
        return np.where(whole & self.used[rows].any(axis=1), short, 0.0)

    def _learn(self, rows, values):
        win, coded, match, choice, whole = self._match(rows, values)
        resonant = match >= self.rho
        pick = np.argmax(np.where(resonant, choice, -np.inf), axis=1)
        hit = resonant.any(axis=1)
        # a window nothing resonates with takes a free category, or the one unused longest
        free = np.argmin(np.where(self.used[rows], self.last_used[rows], -1), axis=1)
        target = np.where(hit, pick, free)
        learn = whole
        r, t = rows[learn], target[learn]
        self.weights[r, t] = np.where(hit[learn, None], np.minimum(coded[learn], self.weights[r, t]), coded[learn])
        self.used[r, t] = True
        self.last_used[r, t] = self.count[r]
        self.recent[rows] = win
        self.count[rows] += 1

    def _set_grid(self, rows):
        self.recent[rows] = 0.0
        self.used[rows] = False
        self.weights[rows] = 1.0
        super()._set_grid(rows)

    def _scores(self, values, ok, learn: bool) -> TickScores:
        score = np.full(self.n_series, np.nan)
        rows = np.flatnonzero(ok & self.ready)
        if rows.size:
            novelty = self._novelty(rows, values[rows])
            resting = self.since_alarm[rows] < self.rest_points
            score[rows] = np.where(resting, 0.0, novelty)
            if learn:
                self.since_alarm[rows] = np.where(novelty >= self.rest_base, 0, self.since_alarm[rows] + 1)
                self._learn(rows, values[rows])
        kind = np.where(np.isfinite(score), SPIKE, "").astype(object)
        return TickScores(score, np.where(ok, self.lowest, np.nan), np.where(ok, self.highest, np.nan), kind)
