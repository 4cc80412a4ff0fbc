"""Contextual novelty detector: the idea of CAD OSE (Smirnov's Contextual Anomaly Detector, open
source edition, NAB's "contextOSE"), vectorised over many series.

CAD OSE turns each value into a few bits (its position in the series' range: 3 bits, 8 levels) and
learns the contexts those patterns appear in: which pattern followed which. A point is anomalous
when the context it completes was never seen. Here the contexts are the last k levels for
k = 1..`orders` (a level, a level after a level, ...), counted per series in one table indexed by
the k-gram's code; the score is the share of the point's contexts that are new. A series that keeps
to its usual moves scores 0; a new move, or familiar moves in a new order, scores towards 1.

The grid the levels are cut on: CAD OSE (like HTM and ARTime) is handed each NAB file's minimum and
maximum, which include the file's anomalies; a service cannot know them. Here the grid is the range
the series showed during its warm-up (`grid_s` of its own time, or `grid_points` points, whichever
comes first: a duration, so an hourly series is not made to wait weeks), widened by `margin` of
that range on each side; the warm-up's values, kept until then, are replayed onto the grid, and
later values are clipped to it (a value off the grid lands in an edge level no ordinary value has
visited). Like CAD OSE, after a score of `rest_base` or more the series rests for `rest_points`
points (scores 0): one novel episode is one finding.

>>> import numpy as np
>>> det = ContextNovelty(n_series=1, grid_points=100)
>>> quiet = [det.process_one(float(i % 10), t=60.0 * i) for i in range(400)]
>>> max(s for s in quiet[100:] if s == s)
0.0
>>> det.process_one(2.5, t=60.0 * 400) > 0  # the sawtooth never went 9 -> 2
True
"""

from __future__ import annotations

import numpy as np

from anomaly.base import SPIKE, Detector, TickScores, as_tick


class ContextNovelty(Detector):
    name = "context_novelty"

    def __init__(
        self,
        n_series: int = 1,
        *,
        levels: int = 8,  # 3 bits, as CAD OSE
        orders: int = 5,  # contexts of up to 5 points
        margin: float = 0.6875,  # the grid extends the warm-up's range by this much of it on each side
        grid_points: int = 600,
        grid_s: float = 172_800.0,  # two days of the series' own time, or grid_points, whichever first
        grid_min_s: float = 0.0,  # ... but never less than this much of its own time (a whole day)
        rest_base: float = 0.75,
        rest_points: int = 30,
        min_expected: float = 0.0,  # a new move counts only if its two levels would have made it this often
        min_resolutions: float = 0.0,  # a level at least this many steps of the series' resolution wide
        shift: float = 0.0,  # the grid moved up by this fraction of a level (a second, offset grid)
    ) -> None:
        super().__init__(n_series)
        n = self.n_series
        self.levels, self.orders, self.margin, self.shift = int(levels), int(orders), float(margin), float(shift)
        self.grid_points, self.grid_s, self.grid_min_s = int(grid_points), float(grid_s), float(grid_min_s)
        self.rest_base, self.rest_points = float(rest_base), int(rest_points)
        self.min_expected, self.min_resolutions = float(min_expected), float(min_resolutions)
        if self.levels**self.orders > 1 << 20:
            raise ValueError(f"{self.levels} levels and contexts of {self.orders} make a table of "
                             f"{self.levels**self.orders} per series; keep levels**orders within 1,048,576")
        # code of a k-gram: offset_k + sum_j level[t-j] * levels**j; every order in one table
        self._offsets = np.cumsum([0] + [self.levels**k for k in range(1, self.orders)])
        self._powers = self.levels ** np.arange(self.orders)
        self.seen = np.zeros((n, int(self._offsets[-1] + self.levels**self.orders)), dtype=bool)
        self.history = np.zeros((n, self.orders), dtype=np.int64)  # last levels, newest first
        self.visits = np.zeros((n, self.levels), dtype=np.int64)  # points seen in each level since the grid
        self.lowest = np.full(n, np.nan)  # the grid, NaN until the warm-up is over
        self.highest = np.full(n, np.nan)
        # warm-up values, replayed onto the grid; it grows where a short step needs more than
        # grid_points values to cover grid_min_s
        self.buffer = np.full((n, self.grid_points), np.nan)
        self.first_ts = np.full(n, np.nan)
        self.count = np.zeros(n, dtype=np.int64)
        self.since_alarm = np.full(n, np.iinfo(np.int64).max // 2)
        # where the measurement itself is coarse (one event of a counter's rate, one bucket of a
        # quantile read from buckets; set by the caller, or shared with the level detector's): a
        # grid finer than `min_resolutions` of it cuts the measurement's own grain into "levels" and
        # its jitter into new moves
        self.resolution = np.zeros(n)
        self._rows = np.arange(n)

    @property
    def ready(self) -> np.ndarray:
        """Series whose grid is set (their warm-up is over)."""
        return np.isfinite(self.lowest)

    def _codes(self, rows, values):
        lo, hi = self.lowest[rows], self.highest[rows]
        span = hi - lo
        pos = np.where(span > 0, (values - lo) / np.where(span > 0, span, 1.0), 0.5)
        level = np.clip(np.nan_to_num(pos * self.levels).astype(np.int64), 0, self.levels - 1)
        hist = np.concatenate([level[:, None], self.history[rows, :-1]], axis=1)
        codes = self._offsets[None, :] + np.cumsum(hist * self._powers[None, :], axis=1)
        defined = np.arange(self.orders)[None, :] < np.minimum(self.count[rows] + 1, self.orders)[:, None]
        return hist, codes, defined

    def _novelty(self, rows, hist, codes, defined):
        new = ~self.seen[rows[:, None], codes] & defined
        novelty = new.sum(axis=1) / np.maximum(defined.sum(axis=1), 1)
        if self.min_expected > 0 and self.orders > 1:
            # a move never made is news only if the series sits in both its levels often enough that,
            # were consecutive points unrelated, it would have made it `min_expected` times by now:
            # noise's rare jumps go from or to a rarely visited level, a broken pattern between two
            # familiar ones
            moved = np.flatnonzero(new[:, 1])  # a new move: rare, so judged only there
            if moved.size:
                r, h = rows[moved], hist[moved]
                expected = self.visits[r, h[:, 1]] * self.visits[r, h[:, 0]] / np.maximum(self.count[r], 1)
                novelty[moved[expected < self.min_expected]] = 0.0
        return novelty

    def _learn(self, rows, values):
        self._remember(rows, *self._codes(rows, values))

    def _remember(self, rows, hist, codes, defined):
        if defined.all():  # the usual case: every order defined, one flat scatter
            self.seen[np.repeat(rows, codes.shape[1]), codes.ravel()] = True
        else:
            r, c = np.nonzero(defined)
            self.seen[rows[r], codes[r, c]] = True
        self.history[rows] = hist
        if self.min_expected > 0:  # only that rule reads the visits
            self.visits[rows, hist[:, 0]] += 1
        self.count[rows] += 1

    def _set_grid(self, rows):
        """End of warm-up for these series: cut the grid on what they showed, replay it."""
        buf = self.buffer[rows]
        lo, hi = np.nanmin(buf, axis=1), np.nanmax(buf, axis=1)
        room = self.margin * (hi - lo)
        # a grid narrower than its floor is widened about its middle
        floor = self.min_resolutions * self.resolution[rows] * self.levels
        room += np.maximum(floor - (hi - lo + 2 * room), 0.0) / 2
        offset = self.shift * (hi - lo + 2 * room) / self.levels
        self.lowest[rows], self.highest[rows] = lo - room + offset, hi + room + offset
        self.count[rows] = 0
        self.history[rows] = 0
        self.visits[rows] = 0
        for j in range(self.buffer.shape[1]):  # oldest first; NaN where the buffer did not fill
            x = buf[:, j]
            have = np.isfinite(x)
            if have.any():
                self._learn(rows[have], x[have])
        self.buffer[rows] = np.nan
        warming = self.count[~self.ready]
        if self.buffer.shape[1] > self.grid_points and warming.max(initial=0) < self.grid_points:
            self.buffer = self.buffer[:, : self.grid_points].copy()  # the day-long buffers are done with

    def _scores(self, values, ok, learn: bool) -> TickScores:
        score = np.full(self.n_series, np.nan)
        rows = np.flatnonzero(ok & self.ready)
        if rows.size:
            x = np.clip(values[rows], self.lowest[rows], self.highest[rows])
            hist, codes, defined = self._codes(rows, x)
            novelty = self._novelty(rows, hist, codes, defined)
            resting = self.since_alarm[rows] < self.rest_points
            score[rows] = np.where(resting, 0.0, novelty)
            if learn:
                self.since_alarm[rows] = np.where(novelty >= self.rest_base, 0, self.since_alarm[rows] + 1)
                self._remember(rows, hist, codes, defined)
        kind = np.where(np.isfinite(score), SPIKE, "").astype(object)
        return TickScores(score, np.where(ok, self.lowest, np.nan), np.where(ok, self.highest, np.nan), kind)

    def peek(self, ts, values) -> TickScores:
        ts, values = as_tick(self.n_series, ts, values)
        return self._scores(values, self.guard.screen(ts, values, commit=False), learn=False)

    def update(self, ts, values) -> TickScores:
        ts, values = as_tick(self.n_series, ts, values)
        ok = self.guard.screen(ts, values)
        out = self._scores(values, ok, learn=True)
        warming = np.flatnonzero(ok & ~self.ready)
        if warming.size:
            self.first_ts[warming] = np.where(np.isnan(self.first_ts[warming]), ts[warming], self.first_ts[warming])
            k = self.count[warming]
            if k.max() >= self.buffer.shape[1]:
                self.buffer = np.concatenate([self.buffer, np.full_like(self.buffer, np.nan)], axis=1)
            self.buffer[warming, k] = values[warming]
            self.count[warming] += 1
            elapsed = ts[warming] - self.first_ts[warming]
            done = warming[((self.count[warming] >= self.grid_points) | (elapsed >= self.grid_s))
                           & (elapsed >= self.grid_min_s)]
            if done.size:
                self._set_grid(done)
        return out
