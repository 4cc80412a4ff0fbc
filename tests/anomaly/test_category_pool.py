"""The ARTime bank's category pool (`anomaly.category_pool`): each series' categories keep their
values through growth, moves and rebuilds, and each series' room follows its own count."""

from __future__ import annotations

import doctest

import numpy as np

import anomaly.category_pool as pool_module
from anomaly.category_pool import CategoryPool


def test_categories_survive_growth_and_rebuilds_and_room_follows_each_series():
    rng = np.random.default_rng(3)
    n, d = 6, 8
    pool = CategoryPool(n, d, capacity=2)
    model: list[list[np.ndarray]] = [[] for _ in range(n)]
    counts = np.zeros(n, dtype=np.int64)
    rebuilds, size = 0, len(pool.size)
    for step in range(400):
        # series 0 grows every step, the others now and then: one outlier among small series
        series = np.array([0] + [s for s in range(1, n) if rng.random() < 0.05], dtype=np.int64)
        full = counts[series] >= pool.cap[series]
        if full.any():
            pool.grow(series[full], counts[series[full]] + 1)
        w = rng.random((len(series), d))
        if step == 7:  # newest weights both 0 once: that category is reported dead
            w[0, d // 2 - 1] = w[0, -1] = 0.0
        dead = pool.store(series, counts[series], w)
        assert dead.tolist() == [step == 7] + [False] * (len(series) - 1)
        pool.labels[pool.base[series] + counts[series]] = step
        for s, row in zip(series.tolist(), w, strict=True):
            model[s].append(row)
        counts[series] += 1
        if len(pool.size) != size:
            rebuilds, size = rebuilds + 1, len(pool.size)
    assert rebuilds >= 3
    for s in range(n):
        np.testing.assert_array_equal(pool.weights(s, int(counts[s])), np.array(model[s]))
        slots = pool.base[s] + np.arange(counts[s])
        np.testing.assert_array_equal(pool.size[slots], np.array(model[s]).sum(axis=1))
    # the outlier's 400 categories give the others no room: theirs follows their own counts
    assert counts[0] == 400 and (pool.cap[1:] <= np.maximum(2, 1.5 * counts[1:] + 1)).all()
    assert pool.nbytes < 2.5 * counts.sum() * (d + 3) * 8 + 1000


def test_gather_pads_past_each_count_with_categories_that_match_nothing():
    pool = CategoryPool(2, 4, capacity=3)
    pool.store(np.array([0, 1, 1]), np.array([0, 0, 1]), np.arange(12, dtype=float).reshape(3, 4) + 1)
    w, size, newest = pool.gather(np.array([0, 1]), np.array([1, 2]), 3)
    np.testing.assert_array_equal(w[0, :, 0], [1, 2, 3, 4])
    np.testing.assert_array_equal(w[1].T[:2], [[5, 6, 7, 8], [9, 10, 11, 12]])
    assert (w[0, :, 1:] == 0).all() and (w[1, :, 2] == 0).all()
    np.testing.assert_array_equal(size, [[10, 0.001, 0.001], [26, 42, 0.001]])
    np.testing.assert_array_equal(newest, [[2 + 4, 1, 1], [6 + 8, 10 + 12, 1]])


def test_docstring_example_runs():
    result = doctest.testmod(pool_module)
    assert result.attempted > 0 and result.failed == 0
