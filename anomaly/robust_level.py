"""Level and spike detector for latency and error series: robust running statistics, seasonal
where the series has a daily shape.

Each series keeps a fast robust level (EWMA of winsorised values) and, beside it, a daily and a
weekly profile (one slot per `slot_s` seconds of the day or week, learned as the residual to a slow
level). Whichever predicted the series better lately is used. A point's score is how far it lies from the
prediction in units of the recent absolute error, turned into a tail probability on a log scale:
score = min(1, -log10(p) / `log10_p_full`). The tail is Laplace (or Gaussian), made heavier per
series where that series' own extremes are heavier (a learned quantile of |z| and the mean excess
beyond it), so a series is not paged for the bursts it always has. Values are winsorised
before they are learned, so one spike does not drag the baseline, but a lasting shift is absorbed
within tens of points.

>>> import numpy as np
>>> det = RobustLevel(n_series=1)
>>> rng = np.random.default_rng(0)
>>> quiet = [det.process_one(180 + rng.normal(0, 5), t=60.0 * i) for i in range(300)]
>>> max(s for s in quiet if s == s) < 0.6
True
>>> det.process_one(400.0, t=60.0 * 300) > 0.9
True
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import log_ndtr

from anomaly.base import LEVEL_SHIFT, SPIKE, Detector, TickScores, as_tick

_SIGMA_PER_ABS_DEV = math.sqrt(math.pi / 2)  # sigma = 1.2533 * mean absolute deviation (Gaussian)
_LN10 = math.log(10.0)


class _Profile:
    """One seasonal profile (a period split into slots) for every series."""

    def __init__(self, n: int, period_s: float, slot_s: float) -> None:
        self.period_s, self.slot_s = float(period_s), float(slot_s)
        self.n_slots = max(1, int(round(period_s / slot_s)))
        self.season = np.zeros((n, self.n_slots))  # residual to the slow level, per slot
        self.seen = np.zeros((n, self.n_slots), dtype=bool)
        self.err = np.zeros(n)  # recent absolute error of slow level + profile
        self.err_count = np.zeros(n, dtype=np.int64)  # points that error has been measured on

    def slot(self, ts: np.ndarray) -> np.ndarray:
        safe = np.where(np.isfinite(ts), ts, 0.0)
        return ((safe % self.period_s) // self.slot_s).astype(np.int64) % self.n_slots


class RobustLevel(Detector):
    name = "robust_level"

    def __init__(
        self,
        n_series: int = 1,
        *,
        alpha: float = 0.05,  # fast level: about 20 points of memory
        alpha_err: float = 0.01,  # recent absolute error: about 100 points
        alpha_slow: float = 0.005,  # slow level under the seasonal profiles
        alpha_season: float = 0.3,  # per slot of a profile
        periods_s: tuple[float, ...] = (86_400.0, 604_800.0),  # daily and weekly (a weekday differs from a Sunday)
        slot_s: float = 300.0,
        clip_sigma: float = 3.0,  # winsorise learned values at this many sigmas
        err_clip_sigma: float = 1000.0,  # the error scale learns from bursts up to this size
        warmup: int = 30,
        log10_p_full: float = 12.0,  # a tail probability of 1e-12 scores 1.0
        relative_floor: float = 0.01,  # scale never below this fraction of the level (constant series)
        absolute_floor: float = 1e-9,
        tail: str = "laplace",  # or "gaussian"
        # Adaptive tail (peaks over threshold): each series learns, above and below its prediction
        # apart, the `tail_quantile` quantile of its |z| and the mean excess beyond it, so a series
        # whose ordinary bursts are heavier than the Laplace tail is judged by its own tail (and its
        # upward bursts do not excuse a drop). It only ever lowers a score (0: off).
        tail_quantile: float = 0.02,
        alpha_tail: float = 0.02,  # mean excess over the quantile: about 50 exceedances of memory
        # A value outside everything the series has shown so far, by `new_extreme_margin` of the
        # range seen and by `new_extreme_sigmas` of its current scale, scores 1.0 (Numenta's
        # "spatial anomaly"): a clear new record is news even on a series whose bursts the adaptive
        # tail has learned to forgive. The scale part keeps the ordinary records of a noise series
        # (its running maximum creeps up for ever) from paging. None: off.
        new_extreme_margin: float | None = 0.1,
        new_extreme_sigmas: float = 3.0,
    ) -> None:
        super().__init__(n_series)
        n = self.n_series
        self.alpha, self.alpha_err, self.alpha_slow, self.alpha_season = alpha, alpha_err, alpha_slow, alpha_season
        self.profiles = [_Profile(n, p, slot_s) for p in periods_s]
        self.err_clip_sigma = err_clip_sigma
        self.clip_sigma, self.warmup, self.log10_p_full = clip_sigma, warmup, log10_p_full
        self.relative_floor, self.absolute_floor = relative_floor, absolute_floor
        self.tail = tail
        self.tail_quantile, self.alpha_tail = tail_quantile, alpha_tail
        self.new_extreme_margin, self.new_extreme_sigmas = new_extreme_margin, new_extreme_sigmas
        # start at the Laplace tail's own quantile and mean excess (in sigma units), so a series with
        # a Laplace-like tail scores as it would without the adaptive tail
        q = tail_quantile if tail_quantile > 0 else 0.02
        # row 0: points above the prediction, row 1: below
        self.tail_u = np.full((2, n), -math.log(q) / _SIGMA_PER_ABS_DEV)
        self.tail_excess = np.full((2, n), 1.0 / _SIGMA_PER_ABS_DEV)
        self.lowest = np.full(n, np.nan)  # range seen so far, for the new-extreme rule
        self.highest = np.full(n, np.nan)
        self.count = np.zeros(n, dtype=np.int64)
        self.first_ts = np.full(n, np.nan)
        self.level = np.zeros(n)
        self.slow = np.zeros(n)
        self.err_plain = np.zeros(n)
        self.drift = np.zeros(n)  # EWMA of signed z: a lasting shift rather than a single spike
        self.last_x = np.full(n, np.nan)
        # smallest change seen: one event for a counter's rate, one unit for a count. It floors the
        # scale, so a series that is usually still does not call its every step an outlier.
        self.quantum = np.full(n, np.nan)
        # set by the caller where the measurement itself is coarse (a quantile read from buckets)
        self.resolution = np.zeros(n)
        self._rows = np.arange(n)

    # -- internals ------------------------------------------------------------------------------
    def _predict(self, ts: np.ndarray):
        """The prediction of each series: the fast level, or the slow level plus the seasonal
        profile that has lately predicted better (by a clear margin, and only once a whole period
        has been seen)."""
        pred, err = self.level.copy(), self.err_plain.copy()
        slots, seasonal = [], []
        for p in self.profiles:
            slot = p.slot(ts)
            sp = self.slow + p.season[self._rows, slot]
            use = (
                p.seen[self._rows, slot]
                & (ts - self.first_ts >= p.period_s)
                & (p.err_count >= self.warmup)  # judged on enough points to be trusted
                & (p.err < 0.8 * err)
            )
            pred = np.where(use, sp, pred)
            err = np.where(use, p.err, err)
            slots.append(slot)
            seasonal.append(sp)
        scale = np.maximum(
            _SIGMA_PER_ABS_DEV * err,
            np.maximum(self.relative_floor * np.abs(pred), self.absolute_floor),
        )
        scale = np.fmax(np.maximum(scale, self.resolution), self.quantum)
        return slots, seasonal, pred, scale

    def _tail_log10_p(self, absz, below):
        """-log10 of the tail probability of |z|: the fixed tail, or the series' own learned tail
        where that is heavier (never lighter: the adaptive tail only forgives)."""
        if self.tail == "laplace":
            fixed = absz * _SIGMA_PER_ABS_DEV / _LN10
        else:
            fixed = -(math.log(2.0) + log_ndtr(-absz)) / _LN10
        q = self.tail_quantile
        if q <= 0:
            return fixed
        u, excess = self.tail_u[below, self._rows], self.tail_excess[below, self._rows]
        beyond = (-math.log(q) + (absz - u) / excess) / _LN10
        learned = np.where(absz > u, beyond, np.minimum(fixed, -math.log10(q)))
        return np.minimum(fixed, learned)

    def _score(self, ts, values, ok):
        slots, seasonal, pred, scale = self._predict(ts)
        z = (values - pred) / scale
        # tail probability on a log scale. Latency and error series are heavy-tailed: a Laplace
        # tail (exp(-|e| / mean abs error)) keeps their ordinary bursts from scoring like outliers.
        absz = np.minimum(np.abs(np.nan_to_num(z)), 1e6)
        below = (np.nan_to_num(z) < 0).astype(np.int64)
        score = np.clip(self._tail_log10_p(absz, below) / self.log10_p_full, 0.0, 1.0)
        if self.new_extreme_margin is not None:
            span = self.highest - self.lowest  # NaN before the first point, 0 while constant
            margin = np.maximum(self.new_extreme_margin * span, self.new_extreme_sigmas * scale)
            record = (span > 0) & ((values > self.highest + margin) | (values < self.lowest - margin))
            score = np.where(record, 1.0, score)
        # a series never seen to move has no scale yet: its first move sets one, it is not judged
        first_move = ok & np.isnan(self.quantum) & (values != self.last_x) & ~np.isnan(self.last_x)
        ready = ok & (self.count >= self.warmup) & ~first_move
        score = np.where(ready, score, np.nan)
        k = 3.0
        return (slots, seasonal, pred, scale, absz, below), z, score, pred - k * scale, pred + k * scale

    def _kind(self, z, score, ready):
        zc = np.clip(np.nan_to_num(z), -10, 10)
        drift = 0.7 * self.drift + 0.3 * zc
        # one wild point is a spike; it is a level shift when the points before it leaned the same way
        sustained = (np.abs(self.drift) > 1.5) & (np.sign(self.drift) == np.sign(zc)) & (np.abs(zc) > 2)
        kind = np.where(sustained, LEVEL_SHIFT, SPIKE).astype(object)
        kind[~ready] = ""
        return kind, drift

    def peek(self, ts, values) -> TickScores:
        ts, values = as_tick(self.n_series, ts, values)
        ok = self.guard.screen(ts, values, commit=False)
        _, z, score, lo, hi = self._score(ts, values, ok)
        kind, _ = self._kind(z, score, np.isfinite(score))
        return TickScores(score, np.where(ok, lo, np.nan), np.where(ok, hi, np.nan), kind)

    def update(self, ts, values) -> TickScores:
        ts, values = as_tick(self.n_series, ts, values)
        ok = self.guard.screen(ts, values)
        state, z, score, lo, hi = self._score(ts, values, ok)
        kind, drift = self._kind(z, score, np.isfinite(score))
        self._learn(ts, values, ok, state, drift)
        return TickScores(score, np.where(ok, lo, np.nan), np.where(ok, hi, np.nan), kind)

    def _learn(self, ts, x, ok, state, drift):
        slots, seasonal, pred, scale, absz, below = state
        if self.tail_quantile > 0:
            self._learn_tail(absz, below, ok & (self.count >= self.warmup))
        self.lowest = np.where(ok, np.fmin(self.lowest, x), self.lowest)
        self.highest = np.where(ok, np.fmax(self.highest, x), self.highest)
        fresh = ok & (self.count == 0)
        if fresh.any():  # a series' first point sets its levels
            self.level[fresh] = x[fresh]
            self.slow[fresh] = x[fresh]
            self.first_ts[fresh] = ts[fresh]
        cs = self.clip_sigma
        xv = np.where(ok, x, 0.0)
        warm = ok & (self.count >= 2)  # the error scale needs a couple of points before it means anything
        # winsorise only once the scale has been learned, else the first points could never move it
        lim = np.where(warm, cs * scale, np.inf)
        elim = lim * (self.err_clip_sigma / cs)
        e_plain = np.clip(xv - self.level, -lim, lim)
        a_plain = np.minimum(np.abs(xv - self.level), elim)
        # a plain average until the EWMA's memory fills, so the early scale is not biased towards 0
        a_err = np.maximum(self.alpha_err, 1.0 / np.maximum(self.count, 1))
        self.err_plain = np.where(ok & ~fresh, self.err_plain + a_err * (a_plain - self.err_plain), self.err_plain)
        self.level = np.where(ok, self.level + self.alpha * e_plain, self.level)
        resid = np.clip(xv - self.slow, -lim * 4, lim * 4)
        deseason = np.zeros_like(xv)  # the slow level learns with the first profile's shape removed
        for i, (p, slot, sp) in enumerate(zip(self.profiles, slots, seasonal)):
            seen = p.seen[self._rows, slot]
            a = np.minimum(np.abs(xv - sp), elim)
            # a profile's error counts only where its slot has been learned at least once
            a_err = np.maximum(self.alpha_err, 1.0 / (p.err_count + 1.0))
            p.err = np.where(ok & seen, p.err + a_err * (a - p.err), p.err)
            p.err_count += ok & seen
            cur = p.season[self._rows, slot]
            if i == 0:
                deseason = np.where(seen, cur, 0.0)
            p.season[self._rows, slot] = np.where(ok, np.where(seen, cur + self.alpha_season * (resid - cur), resid), cur)
            p.seen[self._rows, slot] |= ok
        step = np.clip(xv - self.slow - deseason, -lim, lim)
        self.slow = np.where(ok, self.slow + self.alpha_slow * step, self.slow)
        self.drift = np.where(ok & (self.count >= self.warmup), drift, self.drift)
        moved = ok & ~np.isnan(self.last_x) & (xv != self.last_x)
        if moved.any():
            step_size = np.abs(xv - self.last_x)
            first = moved & np.isnan(self.quantum)
            self.guard.skipped["first_move"] += int(np.count_nonzero(first & (self.count >= self.warmup)))
            self.quantum = np.where(moved, np.fmin(self.quantum, step_size), self.quantum)
        self.last_x = np.where(ok, xv, self.last_x)
        self.count += ok

    def _learn_tail(self, absz, below, learn):
        """Moves each series' tail quantile on the side the point fell (a stochastic quantile
        estimate: up on an exceedance, down a little otherwise, balanced at the quantile) and the
        mean excess beyond it."""
        q, rows = self.tail_quantile, self._rows
        u, mean_excess = self.tail_u[below, rows], self.tail_excess[below, rows]
        over = absz > u
        u_new = np.maximum(u + 0.0025 * mean_excess * (over - q) / q, 0.5)
        excess = np.minimum(absz - u_new, 50.0 * mean_excess)  # one wild point moves it a bounded step
        ex_new = np.maximum(mean_excess + self.alpha_tail * (excess - mean_excess), 0.05)
        self.tail_u[below, rows] = np.where(learn, u_new, u)
        self.tail_excess[below, rows] = np.where(learn & over, ex_new, mean_excess)
