"""KNN-CAD: conformal k-nearest-neighbour anomaly detection (Burnaev and Ishimtsev, "Conformalized
density- and distance-based anomaly detection in time-series data", 2016; NAB's "knncad"),
vectorised over many series.

Each point closes a window of the last `dim` values. Its nonconformity is the sum of its distances
to the `k` nearest of the last `memory` windows of the same series; the score is the share of the
series' recent nonconformities (the last `memory` of them) that are smaller: a conformal p-value,
calibrated per series by construction (0.997 means "stranger than 99.7% of its own recent
windows"). As in the NAB detector, after a score of `alarm` or more the series rests for
`memory / 5` points. The original measures distance with the inverse Gram matrix of the training
windows (Mahalanobis); here the distance is Euclidean, which ranks a series' windows the same way up
to the weighting of lags (a conformal score only uses the ranking).

>>> import numpy as np
>>> det = KnnCad(n_series=1, dim=8, memory=100, k=5)
>>> x = np.sin(np.arange(600) / 5.0)
>>> s = [det.process_one(v, t=60.0 * i) for i, v in enumerate(x)]
>>> x2 = x[599] + 10.0  # a jump the sine never made
>>> det.process_one(x2, t=60.0 * 600) >= 0.99
True
"""

from __future__ import annotations

import numpy as np

from anomaly.base import SPIKE, Detector, TickScores, as_tick


class KnnCad(Detector):
    name = "knn_cad"

    def __init__(self, n_series: int = 1, *, dim: int = 19, memory: int = 300, k: int = 27,
                 alarm: float = 0.997, min_calibration: int = 50) -> None:
        super().__init__(n_series)
        n = self.n_series
        self.dim, self.memory, self.k = int(dim), int(memory), min(int(k), int(memory))
        self.alarm, self.min_calibration = float(alarm), int(min_calibration)
        self.recent = np.zeros((n, self.dim))  # last dim values, oldest first
        self.windows = np.zeros((n, self.memory, self.dim))  # ring of past windows
        self.alphas = np.full((n, self.memory), np.nan)  # ring of past nonconformities
        self.count = np.zeros(n, dtype=np.int64)  # points seen
        self.stored = np.zeros(n, dtype=np.int64)  # windows stored (capped by memory in use)
        self.n_alpha = np.zeros(n, dtype=np.int64)
        self.rest = np.zeros(n, dtype=np.int64)
        self._rows = np.arange(n)

    def _score(self, values, ok):
        window = np.concatenate([self.recent[:, 1:], values[:, None]], axis=1)
        full = ok & (self.count + 1 >= self.dim) & (self.stored >= self.memory)
        score = np.full(self.n_series, np.nan)
        alpha = np.full(self.n_series, np.nan)
        rows = np.flatnonzero(full)
        if rows.size:
            w = np.where(np.isfinite(window[rows]), window[rows], 0.0)
            d = np.sqrt(((self.windows[rows] - w[:, None, :]) ** 2).sum(axis=2))
            a = np.partition(d, self.k - 1, axis=1)[:, : self.k].sum(axis=1)
            alpha[rows] = a
            calibrated = self.n_alpha[rows] >= self.min_calibration
            share = (self.alphas[rows] < a[:, None]).sum(axis=1) / np.clip(self.n_alpha[rows], 1, self.memory)
            s = np.where(calibrated, share, np.nan)
            score[rows] = np.where(self.rest[rows] > 0, 0.0, s)
        return window, alpha, score

    def _out(self, ok, score):
        kind = np.where(np.isfinite(score), SPIKE, "").astype(object)
        nan = np.full(self.n_series, np.nan)
        return TickScores(score, nan, nan, kind)

    def peek(self, ts, values) -> TickScores:
        ts, values = as_tick(self.n_series, ts, values)
        ok = self.guard.screen(ts, values, commit=False)
        return self._out(ok, self._score(values, ok)[2])

    def update(self, ts, values) -> TickScores:
        ts, values = as_tick(self.n_series, ts, values)
        ok = self.guard.screen(ts, values)
        window, alpha, score = self._score(values, ok)
        self.rest = np.where(ok & (self.rest > 0), self.rest - 1, self.rest)
        self.rest = np.where(ok & (np.nan_to_num(score) >= self.alarm), self.memory // 5, self.rest)
        have_alpha = np.flatnonzero(np.isfinite(alpha))
        if have_alpha.size:
            self.alphas[have_alpha, self.n_alpha[have_alpha] % self.memory] = alpha[have_alpha]
            self.n_alpha[have_alpha] += 1
        # the window joins the ring once it is whole
        store = np.flatnonzero(ok & (self.count + 1 >= self.dim))
        if store.size:
            self.windows[store, self.stored[store] % self.memory] = window[store]
            self.stored[store] += 1
        self.recent = np.where(ok[:, None], window, self.recent)
        self.count += ok
        return self._out(ok, score)
