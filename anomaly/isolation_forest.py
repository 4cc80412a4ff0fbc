"""Multivariate detector: scikit-learn's IsolationForest over per-stage feature vectors (for
example one vector per pipeline stage and region: p50, p99, error rate, queue depth), for the
anomalies no single series shows on its own.

Each entity's features are first standardised against that entity's own running robust level and
scale, so one pooled forest serves stages of very different magnitudes. The forest is refit every
`refit_every` ticks on the recent standardised vectors, in a background thread: the hot path only
calls `score_samples` on the model in hand and swaps in the new one when it is ready. Scores are
the forest's own anomaly score in [0, 1] (about 0.5 for ordinary points); NaN until the first fit.

>>> import numpy as np
>>> det = MultivariateIsolation(n_entities=4, n_features=3, refit_every=200, background=False)
>>> rng = np.random.default_rng(0)
>>> for i in range(400):
...     s = det.update(float(i), rng.normal(0, 1, (4, 3)) + [100, 5, 0.01])
>>> det.fits >= 1
True
>>> odd = rng.normal(0, 1, (4, 3)) + [100, 5, 0.01]
>>> odd[2] += [6, -6, 6]
>>> s = det.update(400.0, odd)
>>> int(np.nanargmax(s.score)), bool(s.score[2] > 0.65)
(2, True)
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
from sklearn.ensemble import IsolationForest

from anomaly.base import MULTIVARIATE, Detector, TickScores

_SIGMA_PER_ABS_DEV = 1.2533


class MultivariateIsolation(Detector):
    name = "isolation_forest"

    def __init__(
        self,
        n_entities: int,
        n_features: int,
        *,
        feature_names: list[str] | None = None,
        refit_every: int = 500,  # ticks between refits
        history: int = 4096,  # standardised vectors kept for the next fit
        n_estimators: int = 100,
        alpha: float = 0.01,  # per-entity level/scale memory: about 100 ticks
        background: bool = True,
        seed: int = 0,
        settle: int = 100,  # ticks before an entity's standardisation is trusted
        min_train: int = 256,  # vectors needed before the first fit
    ) -> None:
        self.settle, self.min_train = settle, min_train
        super().__init__(n_entities)
        self.n_features = int(n_features)
        self.feature_names = list(feature_names or [f"f{i}" for i in range(n_features)])
        self.refit_every, self.history, self.n_estimators = refit_every, history, n_estimators
        self.alpha, self.background, self.seed = alpha, background, seed
        self.level = np.zeros((n_entities, n_features))
        self.dev = np.zeros((n_entities, n_features))
        self.count = np.zeros(n_entities, dtype=np.int64)
        self._buffer = np.zeros((history, n_features))
        self._filled = 0
        self._next = 0
        self._ticks = 0
        self.model: IsolationForest | None = None
        self.fits = 0
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="iforest-refit") if background else None
        self._pending: Future | None = None
        self.last_top_feature = np.full(n_entities, "", dtype=object)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def _screen(self, ts, values, commit: bool):
        values = np.asarray(values, dtype=float).reshape(self.n_series, self.n_features)
        ts = np.broadcast_to(np.asarray(ts, dtype=float), (self.n_series,)).astype(float)
        # a vector is usable only whole: any missing or infinite feature leaves the row out
        row_nan = np.where(np.isnan(values).any(axis=1), np.nan, 0.0)
        row_inf = np.where(np.isinf(values).any(axis=1) & ~np.isnan(row_nan), np.inf, 0.0)
        ok = self.guard.screen(ts, row_nan + row_inf, commit=commit)
        return ts, values, ok

    def _standardise(self, values):
        scale = np.maximum(_SIGMA_PER_ABS_DEV * self.dev, 1e-6 * np.maximum(np.abs(self.level), 1e-9))
        return (values - self.level) / scale

    def _score(self, z, ok):
        score = np.full(self.n_series, np.nan)
        model = self.model
        ready = ok & (self.count >= self.settle)
        if model is not None and ready.any():
            score[ready] = -model.score_samples(np.clip(z[ready], -50, 50))
        top = np.array(self.feature_names, dtype=object)[np.argmax(np.abs(np.nan_to_num(z)), axis=1)]
        return score, top

    def peek(self, ts, values) -> TickScores:
        ts, values, ok = self._screen(ts, values, commit=False)
        z = self._standardise(values)
        score, _ = self._score(z, ok)
        return self._result(score)

    def _result(self, score):
        nan = np.full(self.n_series, np.nan)
        kind = np.where(np.isfinite(score), MULTIVARIATE, "").astype(object)
        return TickScores(score, nan, nan.copy(), kind)

    def update(self, ts, values) -> TickScores:
        ts, values, ok = self._screen(ts, values, commit=True)
        z = self._standardise(values)
        score, top = self._score(z, ok)
        self.last_top_feature = top
        self._learn(values, z, ok)
        return self._result(score)

    def _learn(self, values, z, ok):
        fresh = ok & (self.count == 0)
        self.level[fresh] = values[fresh]
        warm = ok & (self.count > 0)
        if warm.any():
            lim = np.where(self.count[warm, None] > 10, 4 * _SIGMA_PER_ABS_DEV * self.dev[warm] + 1e-12, np.inf)
            e = np.clip(values[warm] - self.level[warm], -lim, lim)
            self.level[warm] += self.alpha * e
            a = np.where(self.count[warm, None] < 10, 0.3, self.alpha)
            self.dev[warm] += a * (np.abs(e) - self.dev[warm])
        self.count += ok
        # only vectors standardised against settled levels teach the forest what ordinary looks like
        rows = z[ok & (self.count > self.settle)]
        if len(rows):
            rows = np.clip(rows, -50, 50)[-self.history :]
            idx = (self._next + np.arange(len(rows))) % self.history
            self._buffer[idx] = rows
            self._next = int((self._next + len(rows)) % self.history)
            self._filled = min(self.history, self._filled + len(rows))
        self._ticks += 1
        if self._ticks % self.refit_every == 0 and self._filled >= self.min_train:
            self._refit()

    def _refit(self) -> None:
        data = self._buffer[: self._filled].copy()
        if self._pool is None:
            self._fit(data)
        elif self._pending is None or self._pending.done():
            self._pending = self._pool.submit(self._fit, data)

    def _fit(self, data: np.ndarray) -> None:
        model = IsolationForest(n_estimators=self.n_estimators, random_state=self.seed, n_jobs=1).fit(data)
        with self._lock:
            self.model = model  # one assignment: the hot path sees the old model or the new one
            self.fits += 1

    def wait_for_refit(self) -> None:
        """Block until a background refit in flight is done (tests, shutdown)."""
        if self._pending is not None:
            self._pending.result()
