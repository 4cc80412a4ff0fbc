"""ARTime over many series at once: the same algorithm as `anomaly.artime.ARTime` (the readable,
per-series port of ARTimeNAB.jl, kept as the reference), with each step written as array
operations across the series that tick together, so the ARTime mode can run in the vectorised
path of the service and of the NAB run.

Per tick, the series that got a point are one index array: their blocks, levels, running median,
feature windows (the Haar transform along the rows), the dual-vigilance category search (the
categories in one pool, each series with its own capacity: `anomaly.category_pool`, so one series
with many categories costs only its own room) and the masking rules are array operations. The search's
heavy part (32 weights of every category of every due series, and the learning of the resonant
ones) runs in two small numba kernels (`_overlap_loops`, `_learn_loops`: plain loops, additions in
numpy's own order); without numba the same search runs as numpy operations, with the same results,
about half as fast. The match itself takes numpy's power, as the reference does. Rare events run per series:
the end of a probation (its range; the replay itself is batched over the series that end it
together), the vigilance schedule (every half trend window, about one downsampled step in 60) and
a report. The results are the reference's, float for float (tests/anomaly/test_artime_bank.py):
every sum is taken over the same values in the same order, so each decision falls the same way.

>>> import numpy as np
>>> bank = ARTimeVectorBank(2, probation=600)
>>> x = (np.arange(2000) % 40) / 40.0  # a sawtooth ...
>>> x[1500:1520] = 2.5  # ... that jumps once (on the second series only)
>>> s = np.array([bank.update(np.array([(v % 0.5), v])) for v in x])
>>> [int(i) for i in np.flatnonzero(s[:, 1])]  # the reference ARTime reports 1504 too
[1504]
"""

from __future__ import annotations

import copy
import importlib.util

import numpy as np

from anomaly.artime import _SQRT_HALF, _similarity, learned_range
from anomaly.category_pool import CategoryPool


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """`artime._unit` on every row: shifted to 0 and scaled to a top of 1 (unless flat)."""
    x = x - x.min(axis=1, keepdims=True)
    top = x.max(axis=1, keepdims=True)
    return np.divide(x, top, out=x.copy(), where=top != 0)


def _pairwise_sum(c: np.ndarray) -> np.ndarray:
    """The sum over axis 1 of a (rows, n, columns) array, each in the order numpy sums a
    contiguous row of n values (8 running sums, then a tree; the reference sums its category rows
    that way), so the same bits; over axis 1 the operations run along long rows, not 32 values."""
    n = c.shape[1]
    if n < 8:
        res = c[:, 0]
        for i in range(1, n):
            res = res + c[:, i]
        return res
    if n > 128:  # numpy splits longer rows in halves first: not needed for ARTime's 32
        return np.ascontiguousarray(np.moveaxis(c, 1, -1)).sum(axis=-1)
    top = n - n % 8
    r = c[:, 0:8]
    for i in range(8, top, 8):
        r = r + c[:, i : i + 8]
    s = r[:, 0::2] + r[:, 1::2]
    t = s[:, 0::2] + s[:, 1::2]
    res = t[:, 0] + t[:, 1]
    for i in range(top, n):
        res = res + c[:, i]
    return res


def _overlap_loops(w, size, newest, base, cap, x, counts, n_cat, ei, feature_sim, energy):  # pragma: no cover
    """The search's heavy part, one pass per category: |x ^ w| (the same pairwise order as
    `_pairwise_sum`: 8 running sums along the categories, then the tree) over the category's size,
    and the newest value's part over its weights, for the series whose categories start at `base`
    in the pool (`anomaly.category_pool`: `cap` of them, 2 dim x cap weights) against `x`; 0 past
    each count.
    Compiled by numba when it is there: plain loops, no reordering of the additions (no fastmath),
    so the same bits as numpy's sum."""
    d = x.shape[1]
    top = d - d % 8
    acc = np.empty((8, n_cat))
    for a in range(base.shape[0]):
        o, k, n = base[a], cap[a], counts[a]
        wo = o * d  # the series' weights: w[wo + i * k + c] is weight i of category c
        for j in range(8):
            xj = x[a, j]
            for c in range(n):
                v = w[wo + j * k + c]
                acc[j, c] = v if v < xj else xj
        for i in range(8, top, 8):
            for j in range(8):
                xj = x[a, i + j]
                row = wo + (i + j) * k
                for c in range(n):
                    v = w[row + c]
                    acc[j, c] += v if v < xj else xj
        for c in range(n):
            res = ((acc[0, c] + acc[1, c]) + (acc[2, c] + acc[3, c])) + ((acc[4, c] + acc[5, c]) + (acc[6, c] + acc[7, c]))
            for i in range(top, d):
                v = w[wo + i * k + c]
                res += v if v < x[a, i] else x[a, i]
            feature_sim[a, c] = res / size[o + c]
            v, u = w[wo + ei * k + c], w[wo + (d - 1) * k + c]
            v, u = (v if v < x[a, ei] else x[a, ei]), (u if u < x[a, d - 1] else x[a, d - 1])
            energy[a, c] = (v + u) / newest[o + c]
        for c in range(n, n_cat):
            feature_sim[a, c] = energy[a, c] = 0.0


def _pairwise32(v, d):  # pragma: no cover (compiled)
    """numpy's sum of a contiguous row of d (8 to 128) values, in its order (as `_pairwise_sum`)."""
    top = d - d % 8
    r0, r1, r2, r3, r4, r5, r6, r7 = v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]
    for i in range(8, top, 8):
        r0 += v[i]
        r1 += v[i + 1]
        r2 += v[i + 2]
        r3 += v[i + 3]
        r4 += v[i + 4]
        r5 += v[i + 5]
        r6 += v[i + 6]
        r7 += v[i + 7]
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    for i in range(top, d):
        res += v[i]
    return res


def _learn_loops(w, size, newest, base, cap, x, m, counts, rho_ub, can_learn, ei,
                 best, m_best, learns, dead):  # pragma: no cover (compiled)
    """The rest of a search step per series: the first best category, and fast learning of every
    category at or above the upper vigilance (w <- x ^ w, its sum and newest weights stored as
    `CategoryPool.store` does; `dead` where those are both 0)."""
    d = x.shape[1]
    col = np.empty(d)
    for a in range(base.shape[0]):
        o, k, n = base[a], cap[a], counts[a]
        wo = o * d
        b, mb = 0, m[a, 0]
        for c in range(1, n):
            if m[a, c] > mb:
                b, mb = c, m[a, c]
        best[a], m_best[a] = b, mb
        learns[a] = dead[a] = False
        if not can_learn[a]:
            continue
        for c in range(n):
            if m[a, c] < rho_ub[a]:
                continue
            learns[a] = True
            changed = False
            for i in range(d):
                v = w[wo + i * k + c]
                if x[a, i] < v:
                    w[wo + i * k + c] = x[a, i]
                    changed = True
                col[i] = w[wo + i * k + c]
            if not changed:  # a window inside the category: its weights and sums stay as they are
                continue
            total = _pairwise32(col, d)
            size[o + c] = total if total != 0 else 0.001
            last = col[ei] + col[d - 1]
            newest[o + c] = last if last > 0 else 1.0
            if last <= 0:
                dead[a] = True


_kernels: dict = {}


def _compiled():
    """The two search kernels, compiled on first use (numba is imported only then, and caches the
    machine code on disk)."""
    if not _kernels:
        import numba

        jit = numba.njit(cache=True, nogil=True)
        globals()["_pairwise32"] = jit(_pairwise32)  # `_learn_loops` calls it compiled
        _kernels.update(overlap=jit(_overlap_loops), learn=jit(_learn_loops))
    return _kernels["overlap"], _kernels["learn"]


def warm_up() -> None:
    """Compile the search kernels now (numba caches them on disk; a benchmark times the search,
    not the first call's compilation)."""
    bank = ARTimeVectorBank(2, probation=64)
    for v in np.random.default_rng(0).random((80, 2)):
        bank.update(v)


def _haar_rows(x: np.ndarray) -> np.ndarray:
    """`artime.haar` on every row (the same arithmetic, so the same bits)."""
    a, details = x, []
    while a.shape[1] > 1:
        even, odd = a[:, 0::2], a[:, 1::2]
        details.append((odd - even) * _SQRT_HALF)
        a = (even + odd) * _SQRT_HALF
    return np.concatenate([a, *reversed(details)], axis=1)


def _per_series(value, n: int, name: str, dtype) -> np.ndarray:
    """One value for every series, or one per series; anything else is a clear error."""
    value = np.asarray(value, dtype=dtype)
    if value.ndim > 1 or (value.ndim == 1 and len(value) != n):
        raise ValueError(f"{name}: one value or one per series ({n}), got shape {value.shape}")
    return np.broadcast_to(value, (n,)).copy()


class DvfaBank:
    """`artime.DualVigilanceArt` for many series: category weights in one pool with a segment
    per series (`anomaly.category_pool`: each series' own capacity, 2 dim x categories: the search's
    operations run along the categories), each series' own count, cluster labels and vigilances.
    `train(rows, features, learn)` is one step of the given series; it returns their clusters (-1:
    a new cluster) and leaves their best match and its energy in `match` and `energy`.

    The search reads every weight of every due series, each series its own count. The series are
    searched in blocks in order of their category count (sorted again every 100 searches over all
    series; the pool lays the segments out in that order when it is rebuilt): a block's outputs are
    cut to its own largest count, and the numpy search gathers and pads each block to it (counts of
    11 to 121 after 2,000 points of noise). Padding is all-zero weights: they match 0, never above
    a real category (the first best wins), and resonate only where a vigilance is 0."""

    blocks, min_block = 6, 64  # blocks per search, of at least so many rows
    # the compiled search where numba is there (a declared dependency), else the numpy one
    compiled = importlib.util.find_spec("numba") is not None

    def __init__(self, n: int, dim: int, capacity: int = 16) -> None:
        self.dim = dim
        if not 8 <= 2 * dim <= 128:  # the compiled sum is numpy's 8-way order only there
            self.compiled = False
        self.pool = CategoryPool(n, 2 * dim, capacity)
        self.row = np.arange(n)  # each series' place in the search order (by category count)
        self.series_at = np.arange(n)  # and the series at each place
        self._searches = 0
        # a category whose newest weights are both 0 (it learned a newest value of 0 and one of 1)
        # matches nothing from then on, and the series never learns again (NaN in the source)
        self.dead = np.zeros(n, dtype=bool)
        self.count = np.zeros(n, dtype=np.int64)
        self.n_clusters = np.zeros(n, dtype=np.int64)
        self.rho_lb = np.zeros(n)
        self.rho_ub = np.zeros(n)
        self.match = np.zeros(n)
        self.energy = np.zeros(n)

    @property
    def nbytes(self) -> int:
        """Bytes of the bank's arrays (the category pool and the per-series state)."""
        return self.pool.nbytes + sum(v.nbytes for v in vars(self).values() if isinstance(v, np.ndarray))

    def weights(self, s: int) -> np.ndarray:
        """Series `s`'s category weights, one category per row (as the reference's `w`)."""
        return self.pool.weights(s, int(self.count[s]))

    def _append(self, series: np.ndarray, x: np.ndarray, labels: np.ndarray) -> None:
        at = self.count[series]
        full = at >= self.pool.cap[series]
        if full.any():
            self.pool.grow(series[full], at[full] + 1, order=self.series_at)
        self.dead[series[self.pool.store(series, at, x)]] = True
        self.pool.labels[self.pool.base[series] + at] = labels
        self.count[series] += 1

    def _open(self, series: np.ndarray) -> None:
        """The first input of a series only opens an all-ones category (as AdaptiveResonance.jl)."""
        self.pool.store(series, np.zeros(len(series), dtype=np.int64), np.ones((len(series), 2 * self.dim)))
        self.pool.labels[self.pool.base[series]] = 1
        self.count[series] = 1
        self.n_clusters[series] = 1
        self.match[series] = self.energy[series] = 0.0

    def _sort_rows(self) -> None:
        order = np.argsort(-self.count, kind="stable")
        self.series_at = order
        self.row[order] = np.arange(len(order))

    def _block(self, series: np.ndarray, x: np.ndarray, learn: np.ndarray):
        """Every category's match for one block of series, the best of each, and the resonant
        categories' learning."""
        pool, counts = self.pool, self.count[series]
        n_cat = int(counts.max())
        undefined = self.dead[series]
        base, cap = pool.base[series], pool.cap[series]
        if self.compiled:
            _overlap, _learn = _compiled()
            feature_sim, energy = np.empty((len(series), n_cat)), np.empty((len(series), n_cat))
            _overlap(pool.w, pool.size, pool.newest, base, cap, x, counts, n_cat, self.dim - 1,
                     feature_sim, energy)
        else:
            w, size, newest = pool.gather(series, counts, n_cat)
            common = np.minimum(w, x[:, :, None])
            feature_sim = _pairwise_sum(common) / size
            energy = (common[:, self.dim - 1] + common[:, -1]) / newest
        # numpy's power, as the reference's (its SIMD pow is not the C library's to the last bit)
        m = feature_sim**3 * energy**2
        if self.compiled:
            best, m_best = np.empty(len(series), dtype=np.int64), np.empty(len(series))
            learns, dead = np.empty(len(series), dtype=bool), np.empty(len(series), dtype=bool)
            _learn(pool.w, pool.size, pool.newest, base, cap, x, m, counts, self.rho_ub[series],
                   learn & ~undefined, self.dim - 1, best, m_best, learns, dead)
            self.dead[series[dead]] = True
        else:
            best, m_best, learns = self._learn_numpy(series, x, m, common, learn & ~undefined)
        ok = (m_best > 0) & ~undefined
        match = np.where(ok, m_best, 0.0)
        energy_best = np.where(ok, energy[np.arange(len(series)), best], 0.0)
        self.match[series], self.energy[series] = match, energy_best
        return m_best, undefined, learns, pool.labels[base + best]

    def _learn_numpy(self, series, x, m, common, can_learn):
        """`_learn_loops` with array operations (where numba is not there)."""
        best = np.argmax(m, axis=1)  # the first of the best, as the reference's stable sort
        m_best = m[np.arange(len(series)), best]
        rho_ub = self.rho_ub[series]
        resonant = (m >= rho_ub[:, None]) & can_learn[:, None]
        if (rho_ub <= 0).any():  # padding resonates too: not a category
            resonant &= np.arange(m.shape[1])[None, :] < self.count[series][:, None]
        a, j = np.nonzero(resonant)
        if len(a):
            self.dead[series[a[self.pool.store(series[a], j, common[a, :, j])]]] = True
        return best, m_best, resonant.any(axis=1)

    def _search(self, rows: np.ndarray, x: np.ndarray, learn: np.ndarray):
        """`_block` over the given series (unique) in blocks of series with like category counts
        (each block's outputs, and the numpy search's padding, cut to its own largest count)."""
        self._searches += 1
        if self._searches % 100 == 1:
            self._sort_rows()
        size = max(self.min_block, -(-len(rows) // self.blocks))
        results = (np.empty(len(rows)), np.empty(len(rows), dtype=bool), np.empty(len(rows), dtype=bool),
                   np.empty(len(rows), dtype=np.int64))
        order = np.argsort(self.row[rows], kind="stable")
        for a in range(0, len(rows), size):
            k = order[a : a + size]
            for out, got in zip(results, self._block(rows[k], x[k], learn[k]), strict=True):
                out[k] = got
        return results

    def train(self, rows: np.ndarray, features: np.ndarray, learn: np.ndarray) -> np.ndarray:
        x = np.concatenate([features, 1.0 - features], axis=1)
        cat = np.full(len(rows), -1, dtype=np.int64)
        fresh = self.count[rows] == 0
        if fresh.any():
            self._open(rows[fresh])
            cat[fresh] = 1
            if fresh.all():
                return cat
            live = np.flatnonzero(~fresh)
            rows, x, learn, sub = rows[live], x[live], learn[live], cat[live]
        else:
            live, sub = None, cat
        m_best, undefined, learns, label = self._search(rows, x, learn)
        act = learn & ~undefined
        sub[learns] = label[learns]
        same = act & ~learns & (m_best >= self.rho_lb[rows])
        new = (learn & undefined) | (act & ~learns & ~same)
        if same.any() or new.any():
            grow = same | new
            self.n_clusters[rows[new]] += 1
            label = np.where(new, self.n_clusters[rows], label)
            self._append(rows[grow], x[grow], label[grow])
            sub[same] = label[same]
        if live is not None:
            cat[live] = sub
        return cat


class ARTimeVectorBank:
    """ARTime (`anomaly.artime.ARTime`, its arguments) over `n_series` series ticking together.
    `probation`, `low` and `high` may be one value or one per series (NAB hands each file its own).
    `update(values, rows)` feeds `values[rows]` (default: the finite ones) and returns every
    series' score (0 but at a report). `relearn` is not offered here (the loop bank has it)."""

    name = "artime"

    def __init__(self, n_series: int = 1, probation=600, *, low=None, high=None, margin: float = 0.5,
                 window: int = 8, windows_per_probation: int = 13, levels: int = 80, chomp: float = 0.075,
                 initial_rho: float = 0.8, min_width: float = 0.0, relearn: bool = False,
                 max_match: float = 1.0, level_width: float = 0.0) -> None:
        if relearn:
            raise ValueError("relearn restarts one series' state: use the loop bank (artime.ARTimeBank)")
        n = self.n_series = int(n_series)
        p = _per_series(probation, n, "probation", np.int64)
        self.probation = p - p % 2
        self.window, self.levels, self.chomp, self.initial_rho = window, levels, chomp, initial_rho
        self.margin, self.min_width, self.level_width = margin, float(min_width), float(level_width)
        self.max_match = float(max_match)
        self.step = np.maximum(1, self.probation // (window * windows_per_probation))
        self.trend = np.maximum(window + 2, self.probation // self.step)
        self.mask = int(window * 1.5)
        self.low = np.full(n, np.nan) if low is None else _per_series(low, n, "low", float)
        self.high = np.full(n, np.nan) if high is None else _per_series(high, n, "high", float)
        self.buffer = np.zeros((n, int(self.probation.max()) if n else 0)) if low is None else None
        self.i = np.zeros(n, dtype=np.int64)
        self.dsi = np.zeros(n, dtype=np.int64)
        self.block = np.zeros((n, int(self.step.max()) if n else 1))
        self.moving_average = np.zeros(n)
        self.medbin = np.zeros((n, levels + 1), dtype=np.int64)
        self.medlevel = np.zeros(n, dtype=np.int64)
        self.below_med = np.zeros(n, dtype=np.int64)
        self.above_med = np.zeros(n, dtype=np.int64)
        self.f_window = np.zeros((n, window))
        self.trend_features = np.zeros((n, int(self.trend.max()) if n else 0, 2 * window))
        self.art = DvfaBank(n, 2 * window)
        self._init_detection_state(n)

    def _init_detection_state(self, n: int) -> None:
        self.last_anomaly_i = np.zeros(n, dtype=np.int64)
        self.last_anomaly_sim = np.zeros(n)
        self.last_rho_update_i = np.zeros(n, dtype=np.int64)
        self.mask_after_cat = np.zeros(n, dtype=bool)
        self.no_new_cat = np.zeros(n, dtype=np.int64)
        # the matches of past reports: the list per series (its mean, at a vigilance update) and
        # its last entry as an array (lowered while the report's episode goes on)
        self.anomaly_sims: list[list[float]] = [[] for _ in range(n)]
        self.last_sim = np.zeros(n)
        self.n_sims = np.zeros(n, dtype=np.int64)
        # the reference's shift registers as rings (a pointer, not a copy, per step); a series'
        # own length may be shorter than the array's (padding: +inf, so the minimum ignores it)
        self.sw_len = self.trend // 2 + 1
        width = int(self.sw_len.max()) if n else 1
        self.sim_window = np.where(np.arange(width)[None, :] < self.sw_len[:, None], 1.0, np.inf)
        self.sw_pos = np.zeros(n, dtype=np.int64)
        self.sd_len = self.trend + 1
        self.sim_diff = np.zeros((n, int(self.sd_len.max()) if n else 1))
        self.sd_pos = np.zeros(n, dtype=np.int64)
        self.match_sum = np.zeros(n)
        self.match_n = np.zeros(n, dtype=np.int64)

    # -- the stream ------------------------------------------------------------------------------
    @property
    def nbytes(self) -> int:
        """Bytes the bank holds: its per-series arrays and the DVFA bank's (categories included)."""
        return self.art.nbytes + sum(v.nbytes for v in vars(self).values() if isinstance(v, np.ndarray))

    def update(self, values, rows: np.ndarray | None = None) -> np.ndarray:
        values = np.asarray(values, dtype=float)
        out = np.zeros(self.n_series)
        rows = np.flatnonzero(np.isfinite(values)) if rows is None else np.asarray(rows, dtype=np.int64)
        if not len(rows):
            return out
        self.i[rows] += 1
        v = values[rows]
        waiting = np.isnan(self.low[rows])  # the range is not known yet: keep the probation
        if waiting.any():
            self._probation(rows[waiting], v[waiting])
            rows, v = rows[~waiting], v[~waiting]
        if len(rows):
            self._sample(rows, v, self.i[rows], out)
        return out

    def peek(self, values) -> np.ndarray:
        """Scores without learning (on a copy of the whole bank: slow, rarely used)."""
        return copy.deepcopy(self).update(values)

    def _probation(self, rows: np.ndarray, v: np.ndarray) -> None:
        i = self.i[rows]
        self.buffer[rows, i - 1] = v
        ends = rows[i == self.probation[rows]]
        if not len(ends):
            return
        for r in ends:
            p = int(self.probation[r])
            self.low[r], self.high[r] = learned_range(self.buffer[r, :p], self.margin, self.min_width,
                                                      self.level_width)
        # replay the probations that end together, one batched step per point (scores unused)
        scratch = np.zeros(self.n_series)
        for k in range(1, int(self.probation[ends].max()) + 1):
            g = ends[self.probation[ends] >= k]
            self._sample(g, self.buffer[g, k - 1], np.full(len(g), k), scratch)
        if not np.isnan(self.low).any():  # every probation is over: a long-lived bank drops them
            self.buffer = np.zeros((self.n_series, 0))

    def _sample(self, rows: np.ndarray, v: np.ndarray, i: np.ndarray, out: np.ndarray) -> None:
        step = self.step[rows]
        # a ring of the last `step` values, written at (i - 1) % step: when i is a multiple of the
        # step, the ring holds the block in time order (the reference's list, same mean)
        self.block[rows, (i - 1) % step] = v
        due = i % step == 0
        if due.any():
            self._downsample(rows[due], out)

    def _block_stats(self, rows: np.ndarray):
        step = self.step[rows]
        mean, top, bottom = np.empty(len(rows)), np.empty(len(rows)), np.empty(len(rows))
        for s in np.unique(step):
            sel = step == s
            block = np.ascontiguousarray(self.block[rows[sel], :s])
            mean[sel], top[sel], bottom[sel] = block.mean(axis=1), block.max(axis=1), block.min(axis=1)
        return mean, top, bottom

    def _downsample(self, rows: np.ndarray, out: np.ndarray) -> None:
        self.dsi[rows] += 1
        mean, top, bottom = self._block_stats(rows)
        d = self.dsi[rows]
        ma = np.where(d == 1, mean, self.moving_average[rows])
        ma = (ma + mean) / 2
        self.moving_average[rows] = ma
        ds = np.where(np.abs(top - ma) >= np.abs(bottom - ma), top, bottom)
        ds = np.where(np.abs(ds - mean) < 0.1 * mean, mean, ds)  # a spike must be 10% off the mean
        low, span = self.low[rows], self.high[rows] - self.low[rows]
        ds = np.divide(ds - low, span, out=ds - low, where=span != 0)
        level = np.clip(np.round(ds * self.levels), 0, self.levels).astype(np.int64)
        ds = level / self.levels
        med = self._track_median(rows, level) / self.levels
        ds = np.where(np.abs(ds - med) < self.chomp, med, ds)
        self.f_window[rows, :-1] = self.f_window[rows, 1:]
        self.f_window[rows, -1] = ds
        features = np.zeros((len(rows), 2 * self.window))
        full = d >= self.window
        if full.any():
            fw = self.f_window[rows[full]]
            features[full] = np.concatenate([_unit_rows(_haar_rows(_unit_rows(fw))), fw], axis=1)
        judged = d > self.trend[rows]
        if judged.any():
            out[rows[judged]] = self._detect(rows[judged], features[judged], d[judged])
        if not judged.all():
            early = ~judged
            self.trend_features[rows[early], d[early] - 1] = features[early]
            ready = early & (d == self.trend[rows])
            if ready.any():
                self._start_detection(rows[ready])

    def _track_median(self, rows: np.ndarray, level: np.ndarray) -> np.ndarray:
        """ARTime's running median of the levels (`ARTime._track_median`, every row at once)."""
        self.medbin[rows, level] += 1
        d = self.dsi[rows]
        half = d // 2
        med = np.where(d == 1, level, self.medlevel[rows])
        below = self.below_med[rows] + (med > level)
        above = self.above_med[rows] + (med < level)
        up = half < above
        down = ~up & (half < below)
        bins_at = np.arange(self.levels + 1)[None, :]
        if up.any():
            r, m = rows[up], med[up]
            below[up] += self.medbin[r, m]
            m = np.argmax((self.medbin[r] > 0) & (bins_at > m[:, None]), axis=1)  # the next level used
            above[up] -= self.medbin[r, m]
            med[up] = m
        if down.any():
            r, m = rows[down], med[down]
            above[down] += self.medbin[r, m]
            used = ((self.medbin[r] > 0) & (bins_at < m[:, None]))[:, ::-1]
            m = self.levels - np.argmax(used, axis=1)  # the previous level used
            below[down] -= self.medbin[r, m]
            med[down] = m
        self.medlevel[rows], self.below_med[rows], self.above_med[rows] = med, below, above
        return med

    # -- detection -------------------------------------------------------------------------------
    def _start_detection(self, rows: np.ndarray) -> None:
        """The end of the trend window: vigilance from the probation's windows, then those windows
        replayed through the detection (scores unused), batched over the series ending together."""
        rho = self._initial_rho(rows)
        self.art.rho_lb[rows] = rho
        self.art.rho_ub[rows] = rho
        for k in range(1, int(self.trend[rows].max()) + 1):
            g = rows[self.trend[rows] >= k]
            self._detect(g, self.trend_features[g, k - 1], np.full(len(g), k))
        if (self.dsi >= self.trend).all():  # every series detects now: the trend windows are done with
            self.trend_features = np.zeros((self.n_series, 0, 2 * self.window))

    def _initial_rho(self, rows: np.ndarray) -> np.ndarray:
        """`ARTime._initial_rho` for each row: a fuzzy ART at vigilance 0.8 over the probation's
        windows, least typical first (each series' own order; the training steps batched)."""
        w = self.window
        n_win = self.trend[rows] - w + 1
        ordered = np.zeros((len(rows), int(n_win.max()), 2 * w))
        for a, r in enumerate(rows):
            windows = self.trend_features[r, w - 1 : self.trend[r]]
            ordered[a, : n_win[a]] = windows[np.argsort(_similarity(windows).sum(axis=0), kind="stable")]
        art = DvfaBank(len(rows), 2 * w)
        art.rho_lb[:] = art.rho_ub[:] = self.initial_rho
        matches = np.zeros(ordered.shape[:2])
        for j in range(ordered.shape[1]):
            g = np.flatnonzero(n_win > j)
            art.train(g, ordered[g, j], np.ones(len(g), dtype=bool))
            matches[g, j] = art.match[g]
        rho = np.full(len(rows), self.initial_rho)
        for a, r in enumerate(rows):
            half = int(self.trend[r]) // 2
            if n_win[a] >= half:
                rho[a] = float(np.mean(matches[a, half - 1 : n_win[a]]))
        return rho

    def _detect(self, rows: np.ndarray, f: np.ndarray, i: np.ndarray) -> np.ndarray:
        """`ARTime._detect` for every row: one DVFA step, the masking rules, reports, vigilance."""
        since = i - self.last_anomaly_i[rows]
        trend = self.trend[rows]
        update_after_anomaly = since == self.mask
        update_for_trend = i - self.last_rho_update_i[rows] >= trend // 2
        mask_after_anomaly = since <= self.mask
        mac = self.mask_after_cat[rows] & ~((i > trend + self.mask) & (self.no_new_cat[rows] >= self.mask))
        cat = self.art.train(rows, f, i >= self.window)
        cat[i < self.window] = -1
        new = cat == -1
        self.no_new_cat[rows] = np.where(new, 0, self.no_new_cat[rows] + 1)
        a = self.art.match[rows]
        self.match_sum[rows] += a
        self.match_n[rows] += 1
        self._push(rows, a, self.art.rho_ub[rows] - a)
        lower = (since < self.mask) & (self.n_sims[rows] > 0) & (a < self.last_sim[rows])
        self.last_sim[rows[lower]] = a[lower]
        masking = mac | mask_after_anomaly
        below_last = a < self.last_anomaly_sim[rows] * np.where(mask_after_anomaly, 0.90, 0.70)
        report = (i > trend) & new & (~masking | below_last)
        out = np.zeros(len(rows))
        for k in np.flatnonzero(report):  # rare: a new cluster that is news
            out[k] = self._report(int(rows[k]), float(a[k]), int(i[k]))
        self.mask_after_cat[rows] = new | mac
        vigilance = (i > trend) & (update_after_anomaly | update_for_trend)
        for k in np.flatnonzero(vigilance):  # every half trend window, or after a report's mask
            self._update_vigilance(int(rows[k]), int(i[k]))
        return out

    def _push(self, rows: np.ndarray, match: np.ndarray, shortfall: np.ndarray) -> None:
        self.sim_window[rows, self.sw_pos[rows]] = match
        self.sw_pos[rows] = (self.sw_pos[rows] + 1) % self.sw_len[rows]
        self.sim_diff[rows, self.sd_pos[rows]] = shortfall
        self.sd_pos[rows] = (self.sd_pos[rows] + 1) % self.sd_len[rows]

    def _report(self, r: int, match: float, i: int) -> float:
        art = self.art
        m = min(0.999, match)
        ub = ((1 - m) - (1 - float(art.rho_ub[r]))) / (1 - m)
        lb = ((1 - m) - (1 - float(art.rho_lb[r]))) / (1 - m)
        score = round(min(1.0, ub * 0.35 + lb * 0.65 + (1.0 - float(art.energy[r])) * 1.5), 6)
        sims = self.anomaly_sims[r]
        if sims:
            sims[-1] = float(self.last_sim[r])  # the previous report's match, as lowered since
        sims.append(match)
        self.last_sim[r], self.n_sims[r] = match, len(sims)
        self.last_anomaly_sim[r], self.last_anomaly_i[r] = match, i
        # an episode as ARTime sees it (it masks what follows), but reported only when far from
        # every learned category (`max_match`)
        return 0.0 if match > self.max_match else score

    def _update_vigilance(self, r: int, i: int) -> None:
        """`ARTime._update_vigilance` for one series (its means taken as the reference takes them)."""
        art = self.art
        low_recent = float(self.sim_window[r].min())
        ub = min(0.97, float(self.match_sum[r]) / int(self.match_n[r]))
        lb = float(art.rho_lb[r])
        if lb <= low_recent:
            lb += (low_recent - lb) * 0.19
        else:
            drop = 0.0
            if i > 2 * self.trend[r]:
                n, p = int(self.sd_len[r]), int(self.sd_pos[r])
                sim_diff = np.concatenate([self.sim_diff[r, p:n], self.sim_diff[r, :p]])  # time order
                short = sim_diff[sim_diff > 0.05]
                if len(short):
                    drop = float(np.minimum(short, 0.37).mean())
            lb -= max(0.01, drop) / 2
            sims = self.anomaly_sims[r]
            if sims:
                sims[-1] = float(self.last_sim[r])
                lb = max(float(np.mean(sims)), lb)
        art.rho_lb[r], art.rho_ub[r] = min(ub, lb), ub
        self.last_rho_update_i[r] = i
        self.mask_after_cat[r] = True
