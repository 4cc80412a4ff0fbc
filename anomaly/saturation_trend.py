"""Saturation trend detector: sees a resource creeping towards its capacity and forecasts when it
runs out.

Per series, a ring buffer holds the last `window` points. The slope is a Theil-Sen estimate (the
median of pairwise slopes, here the pairs half a window apart, which keeps it O(window) and robust
to a third of the points being wild); the current level is the median of the points projected to
now along that slope. Time to exhaustion = (capacity - level) / slope, capacity as the catalog
declares it (ratio metrics saturate at 1.0) or as its capacity gauge reads. The fit runs on the
headroom, so a capacity that grows with the load (autoscaling) is taken into account. Confidence combines how many pairs agree that the
series rises with how far the rise over the window stands out of the residual noise, so a flat
noisy series never forecasts exhaustion with confidence.

The score is confidence times urgency, where urgency is 1 / (1 + time left / `horizon_s`): 1 at
capacity, 1/2 with `horizon_s` left. With the service's threshold of 0.4, a fully confident forecast
is reported with 1.5 horizons left, one of confidence 0.6 with half a horizon left.

>>> import numpy as np
>>> det = SaturationTrend(n_series=1, capacity=1.0, window=30, horizon_s=3600)
>>> rng = np.random.default_rng(0)
>>> for i in range(60):  # 0.5 rising 0.5 % per minute: exhausted 100 minutes after the start
...     s = det.update(60.0 * i, [0.5 + 0.005 * i + rng.normal(0, 0.005)])
>>> round(float(s.time_to_exhaustion_s[0]) / 60)  # minutes left, truth 41
41
"""

from __future__ import annotations

import numpy as np

from anomaly.base import SATURATION_TREND, Detector, TickScores, as_tick

_MAD_TO_SIGMA = 1.4826


class SaturationTrend(Detector):
    name = "saturation_trend"

    def __init__(
        self,
        n_series: int = 1,
        *,
        capacity=1.0,  # scalar or one per series (NaN: this series has no declared capacity)
        window: int = 30,
        horizon_s: float = 3600.0,  # forecasts further out than this are not urgent
        min_rise_sigmas: float = 3.0,  # the rise over the window must stand this far out of the noise
        refit_every: int = 1,  # refit the slope every k ticks (the hot path with thousands of series)
        steady_margin: float = 0.05,  # a window never this far below capacity is steady, not arriving
    ) -> None:
        self.steady_margin = float(steady_margin)
        super().__init__(n_series)
        n = self.n_series
        if window < 6:
            raise ValueError("window must hold at least 6 points")
        self.capacity = np.broadcast_to(np.asarray(capacity, dtype=float), (n,)).copy()
        self.window, self.half = int(window), int(window) // 2
        self.horizon_s, self.min_rise_sigmas = float(horizon_s), float(min_rise_sigmas)
        self.refit_every = max(1, int(refit_every))
        self.buf_x = np.zeros((n, self.window))
        self.buf_c = np.zeros((n, self.window))  # the capacity when each point was taken
        self.buf_t = np.zeros((n, self.window))
        self.pos = np.zeros(n, dtype=np.int64)
        self.count = np.zeros(n, dtype=np.int64)
        self._rows = np.arange(n)
        self._ticks = 0
        nan = np.full(n, np.nan)
        self.slope, self.level, self.level_ts = nan.copy(), nan.copy(), nan.copy()
        self.confidence, self.noise = nan.copy(), nan.copy()
        self.window_min = nan.copy()

    def _fit(self, rows: np.ndarray) -> None:
        """Theil-Sen slope, level now, residual noise and confidence for the given series."""
        # only windows whose every point had a known capacity can be judged against it
        known = self.buf_c[rows]
        rows = rows[np.isfinite(known).all(axis=1) & (known > 0).all(axis=1)]
        if rows.size == 0:
            return
        order = (self.pos[rows, None] + np.arange(self.window)) % self.window  # oldest first
        # work on headroom (capacity - usage), so a capacity that grows (an autoscaler adding
        # workers) slows the forecast down, and one that shrinks speeds it up
        c = self.buf_c[rows[:, None], order]
        used = self.buf_x[rows[:, None], order]
        c_now = c[:, -1]
        x = used + (c_now[:, None] - c)  # usage as it would read against today's capacity
        t = self.buf_t[rows[:, None], order]
        h = self.half
        w2 = 2 * h
        dt = t[:, h:w2] - t[:, :h]
        slopes = (x[:, h:w2] - x[:, :h]) / np.where(dt > 0, dt, np.nan)
        slope = np.nanmedian(slopes, axis=1) if np.isnan(slopes).any() else np.median(slopes, axis=1)
        t_now = t[:, -1]
        projected = x - slope[:, None] * (t - t_now[:, None])
        level = np.median(projected, axis=1)
        resid = projected - level[:, None]
        noise = _MAD_TO_SIGMA * np.median(np.abs(resid), axis=1)
        span = t_now - t[:, 0]
        rise = slope * span
        scale = np.maximum(noise, 1e-6 * np.maximum(np.abs(level), 1e-9))
        agree = np.mean(slopes > 0, axis=1)  # NaN slopes count as disagreeing
        sign_conf = np.clip(2.0 * agree - 1.0, 0.0, 1.0)
        rise_conf = np.clip(rise / (self.min_rise_sigmas * scale) - 0.5, 0.0, 1.0)
        self.slope[rows], self.level[rows], self.level_ts[rows] = slope, level, t_now
        self.noise[rows] = noise
        with np.errstate(divide="ignore", invalid="ignore"):
            self.window_min[rows] = (used / c).min(axis=1)
        self.confidence[rows] = sign_conf * rise_conf

    def _forecast(self, ts: np.ndarray, ready: np.ndarray) -> TickScores:
        # project the fitted level to this tick's time, then ask when the line meets capacity
        level_now = self.level + self.slope * np.nan_to_num(ts - self.level_ts)
        headroom = self.capacity - level_now
        with np.errstate(divide="ignore", invalid="ignore"):
            tte = np.where(self.slope > 0, headroom / self.slope, np.inf)
        tte = np.where(headroom <= 0, 0.0, tte)
        # urgency is 1 with no time left, 1/2 at `horizon_s` left, and falls slowly beyond: a very
        # confident forecast may warn a little past the horizon, a doubtful one only close to the end
        urgency = 1.0 / (1.0 + np.maximum(tte, 0.0) / self.horizon_s)
        # at capacity: news if the window still saw headroom (it just got there), a steady state
        # (a full cache, a quota used to the brim by design) if it never left capacity
        arrived = self.window_min < (1.0 - self.steady_margin)  # the lowest fill the window saw
        conf = np.where(headroom <= 0, np.where(arrived, 1.0, 0.0), self.confidence)
        score = np.where(ready, np.clip(conf * urgency, 0.0, 1.0), np.nan)
        kind = np.where(ready, SATURATION_TREND, "").astype(object)
        band = 3.0 * np.nan_to_num(self.noise)
        tte_out = np.where(ready, tte, np.nan)
        return TickScores(
            score,
            np.where(ready, level_now - band, np.nan),
            np.where(ready, level_now + band, np.nan),
            kind,
            time_to_exhaustion_s=tte_out,
            confidence=np.where(ready, conf, np.nan),
        )

    def _ready(self, ok: np.ndarray) -> np.ndarray:
        return (ok & (self.count >= self.window) & np.isfinite(self.capacity) & (self.capacity > 0)
                & np.isfinite(self.slope))

    def peek(self, ts, values) -> TickScores:
        ts, values = as_tick(self.n_series, ts, values)
        ok = self.guard.screen(ts, values, commit=False)
        return self._forecast(ts, self._ready(ok))

    def update(self, ts, values) -> TickScores:
        ts, values = as_tick(self.n_series, ts, values)
        ok = self.guard.screen(ts, values)
        rows = self._rows[ok]
        p = self.pos[rows]
        self.buf_x[rows, p] = values[rows]
        self.buf_c[rows, p] = self.capacity[rows]
        self.buf_t[rows, p] = ts[rows]
        self.pos[rows] = (p + 1) % self.window
        self.count[rows] += 1
        self._ticks += 1
        full = rows[self.count[rows] >= self.window]
        if self.refit_every > 1:
            # spread refits over ticks: each series refits on its own turn
            full = full[(full + self._ticks) % self.refit_every == 0]
        self._fit(full)
        return self._forecast(ts, self._ready(ok))
