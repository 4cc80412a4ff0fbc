"""The one quantile rule: histogram buckets (Prometheus' interpolation, +Inf answers with the largest
finite bound, empty is NaN) and nearest-rank percentiles of raw values (scalar and per row agree)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from telemetry.quantiles import histogram_quantile, histogram_quantiles, percentile, row_percentiles


def test_histogram_quantile_interpolates_inside_the_bucket_where_the_rank_falls():
    bounds = [0.1, 0.3, 0.5, math.inf]
    cum = [50.0, 90.0, 100.0, 100.0]
    assert histogram_quantile(0.5, bounds, cum) == pytest.approx(0.1)
    # rank 70: 50 below, 40 inside (0.1, 0.3]: 0.1 + 0.2 * 20/40
    assert histogram_quantile(0.7, bounds, cum) == pytest.approx(0.2)
    assert histogram_quantile(0.25, bounds, cum) == pytest.approx(0.05)  # first bucket starts at 0


def test_a_rank_in_the_inf_bucket_answers_with_the_largest_finite_bound():
    assert histogram_quantile(0.99, [0.1, math.inf], [1.0, 100.0]) == 0.1
    assert histogram_quantile(0.99, [0.1, 0.2, 0.3, math.inf], [10, 30, 60, 100]) == pytest.approx(0.3)
    assert math.isnan(histogram_quantile(0.5, [math.inf], [10.0]))  # nothing finite to answer with


def test_no_observations_is_nan_not_zero():
    assert math.isnan(histogram_quantile(0.9, [0.1, math.inf], [0.0, 0.0]))
    assert math.isnan(histogram_quantile(0.9, [], []))


def test_rows_are_answered_independently_and_like_the_scalar_form():
    bounds = np.array([0.1, 0.2, 0.3, np.inf])
    rng = np.random.default_rng(3)
    cum = np.cumsum(rng.integers(0, 20, (50, 4)), axis=1).astype(float)
    for q in (0.0, 0.5, 0.95, 0.99, 1.0):
        rows = histogram_quantiles(q, bounds, cum)
        for i in range(len(cum)):
            one = histogram_quantile(q, bounds, cum[i])
            assert (math.isnan(one) and math.isnan(rows[i])) or rows[i] == pytest.approx(one)


def test_percentile_is_the_nearest_rank_and_rows_agree_with_it():
    assert percentile([], 0.5) == 0.0
    assert percentile([7.0], 0.95) == 7.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 10.0], 0.5) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 10.0], 0.95) == 10.0  # a value a turn really had
    rng = np.random.default_rng(5)
    values = rng.lognormal(-1.5, 0.5, (40, 12))
    counts = rng.integers(0, 13, 40)
    p50, p95, mx = row_percentiles(values, counts)
    for i, n in enumerate(counts):
        s = sorted(values[i, :n].tolist())
        assert p50[i] == percentile(s, 0.5) and p95[i] == percentile(s, 0.95)
        assert mx[i] == (s[-1] if s else 0.0)
