"""The category store of the vectorised ARTime bank (`anomaly.artime_bank.DvfaBank`): every series'
fuzzy-ART categories in one pooled layout, each series with its own capacity.

ARTime's categories grow without bound (a mean of 48 after 2,000 points of noise, 70 after 8,000;
NAB files reach 831). A padded array (series x 2 dim x the largest count) makes every series hold
room for the worst one's categories; here each series holds a segment of the pool sized to its own
count: `cap[s]` categories starting at slot `base[s]`, its weights at `w[base * d : (base + cap) *
d]` laid out 2 dim x cap (the search reads along the categories, weight by weight, as before).
A series that fills its segment moves to a larger one (half as large again) at the pool's free
end; when the free end runs out the pool is rebuilt with only the live segments (in the order the
search reads them) and a quarter to spare. Growth copies, but each category is copied a bounded
number of times on average (a geometric series), and the pool stays within about 1.25x to 2x
of the categories' own room.

Slots past a series' count are all-zero weights, sums 0.001 and newest weights 1: the padding the
search may read (`gather`) and that matches 0.

>>> pool = CategoryPool(2, 4, capacity=2)
>>> pool.grow(np.array([1]), np.array([5]))
>>> pool.cap.tolist(), pool.base.tolist()
([2, 5], [0, 4])
"""

from __future__ import annotations

import numpy as np


class CategoryPool:
    """Weights (`d` each), weight sums, newest-value weights and cluster labels of the categories
    of `n` series."""

    spare = 0.25  # room kept past the live segments when the pool is rebuilt

    def __init__(self, n: int, d: int, capacity: int = 16) -> None:
        self.d = d
        self.cap = np.full(n, capacity, dtype=np.int64)
        self.base = np.arange(n, dtype=np.int64) * capacity
        self._alloc(n * capacity)
        self.top = n * capacity  # the first free slot: everything past it is free

    def _alloc(self, slots: int) -> None:
        self.w = np.zeros(slots * self.d)
        # per category, kept as the reference computes them from the weights: the weight sum (0
        # read as 0.001) and the newest value's weights (0 read as 1: the energy's numerator is 0
        # there too, the reference's 0)
        self.size = np.full(slots, 0.001)
        self.newest = np.ones(slots)
        self.labels = np.zeros(slots, dtype=np.int64)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.w, self.size, self.newest, self.labels, self.cap, self.base))

    def weight_index(self, series: np.ndarray, at: np.ndarray) -> np.ndarray:
        """Positions in `w` of the `d` weights of category `at` of each series (one row each)."""
        s = np.asarray(series)
        return (self.base[s] * self.d)[:, None] + np.arange(self.d)[None, :] * self.cap[s][:, None] + np.asarray(at)[:, None]

    def weights(self, s: int, count: int) -> np.ndarray:
        """One series' first `count` categories, one per row (the reference's layout)."""
        b, k = int(self.base[s]), int(self.cap[s])
        return self.w[b * self.d : (b + k) * self.d].reshape(self.d, k)[:, :count].T

    def store(self, series: np.ndarray, at: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Category weights `w` (one row per series, `d` each) at category `at` of each series, with
        their sums; True where a category's newest weights (at `d / 2 - 1` and `d - 1`) are both 0."""
        self.w[self.weight_index(series, at)] = w
        slot = self.base[series] + at
        total = w.sum(axis=1)
        self.size[slot] = np.where(total == 0, 0.001, total)
        newest = w[:, self.d // 2 - 1] + w[:, -1]
        self.newest[slot] = np.where(newest > 0, newest, 1.0)
        return newest <= 0

    def gather(self, series: np.ndarray, counts: np.ndarray, n_cat: int):
        """The weights (series x d x n_cat), sums and newest weights of the given series' first
        `n_cat` categories, padding past each count (the numpy search's input)."""
        c = np.arange(n_cat)
        valid = c[None, :] < counts[:, None]
        at = np.where(valid, c[None, :], 0)
        d, w = self.d, np.zeros((len(series), self.d, n_cat))
        # a copy per series (its segment is one block): cheaper than one index per weight
        for a, (b, k, n) in enumerate(zip(self.base[series].tolist(), self.cap[series].tolist(), counts.tolist(),
                                          strict=True)):
            w[a, :, :n] = self.w[b * d : (b + k) * d].reshape(d, k)[:, :n]
        slot = self.base[series][:, None] + at
        return (w, np.where(valid, self.size[slot], 0.001), np.where(valid, self.newest[slot], 1.0))

    def grow(self, series: np.ndarray, need: np.ndarray, order: np.ndarray | None = None) -> None:
        """Give each series room for `need` categories at least (half as many again as it has, or
        `need`): a new segment at the free end, its categories copied; `order`: the series in the
        order the search reads them, for a rebuild."""
        new_cap = np.maximum(np.asarray(need, dtype=np.int64), self.cap[series] + self.cap[series] // 2)
        if self.top + int(new_cap.sum()) > len(self.size):
            self._rebuild(int(new_cap.sum()), np.arange(len(self.cap)) if order is None else order)
        for s, k in zip(series.tolist(), new_cap.tolist(), strict=True):
            self._move(s, self.top, k)
            self.top += k

    def _move(self, s: int, to: int, k: int, src=None) -> None:
        """Series `s`'s segment to slots `to .. to + k` (of this pool, from `src`: another pool's
        arrays, default this one); slots past the old capacity are padding."""
        w, size, newest, labels = src if src is not None else (self.w, self.size, self.newest, self.labels)
        b, old, d = int(self.base[s]), int(self.cap[s]), self.d
        seg = np.zeros((d, k))
        seg[:, :old] = w[b * d : (b + old) * d].reshape(d, old)
        self.w[to * d : (to + k) * d] = seg.ravel()
        for mine, theirs, pad in ((self.size, size, 0.001), (self.newest, newest, 1.0), (self.labels, labels, 0)):
            mine[to : to + old] = theirs[b : b + old]
            mine[to + old : to + k] = pad
        self.base[s], self.cap[s] = to, k

    def _rebuild(self, extra: int, order: np.ndarray) -> None:
        """A new pool of the live segments, packed in `order`, with room for `extra` more slots and
        a quarter to spare: the segments left behind by moves are dropped here."""
        live = int(self.cap.sum())
        src = (self.w, self.size, self.newest, self.labels)
        self._alloc(int((live + extra) * (1 + self.spare)) + 1)
        at = 0
        for s in order.tolist():
            k = int(self.cap[s])
            self._move(s, at, k, src)
            at += k
        self.top = at
