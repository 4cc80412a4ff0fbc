"""Quantiles, written once: from histogram buckets (Prometheus' rule) and from raw latencies (a call's
P50/P95). Anomaly detection, alert rules, the store reads and the call records all use these.

Histogram quantile (`histogram_quantile`, `histogram_quantiles`), the one rule:
- `upper_bounds` ascending (the last one normally +Inf) and `cumulative` counts in the same order;
- the rank is `q * total`; the answer lies in the first bucket whose cumulative count reaches the
  rank, linearly interpolated between that bucket's lower bound (0 for the first bucket) and its
  upper bound, as Prometheus' `histogram_quantile` does;
- **+Inf rule**: a rank that falls in the +Inf bucket answers with the largest finite bound (the
  histogram cannot say more); with no finite bound at all the answer is NaN;
- no observations (total 0 or not finite): NaN, never 0, so "no data" is not read as "fast";
- a bucket that holds none of the rank (only q = 0 can land there) answers with its lower bound.

Percentile of raw values (`percentile`, `row_percentiles`): **nearest rank**, the value at index
`round(q * (n - 1))` of the sorted values (numpy's `method="nearest"`), so a call's P95 is always a
latency one of its turns really had; 0.0 for no values (a call without turns).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def histogram_quantiles(q: float, upper_bounds, cumulative) -> np.ndarray:
    """The q-quantile of each row of `cumulative` (shape (rows, bounds)) under the rule above."""
    bounds = np.asarray(upper_bounds, dtype=np.float64)
    cum = np.atleast_2d(np.asarray(cumulative, dtype=np.float64))
    rows = np.arange(cum.shape[0])
    total = cum[:, -1]
    rank = q * total
    # first bucket whose cumulative count reaches the rank (searchsorted per row, vectorised)
    idx = np.minimum((cum < rank[:, None]).sum(axis=1), len(bounds) - 1)
    upper = bounds[idx]
    has_lower = idx > 0
    lower = np.where(has_lower, bounds[np.maximum(idx - 1, 0)], 0.0)
    below = np.where(has_lower, cum[rows, np.maximum(idx - 1, 0)], 0.0)
    inside = cum[rows, idx] - below
    frac = np.divide(rank - below, inside, out=np.zeros_like(rank), where=inside > 0)
    finite = bounds[np.isfinite(bounds)]
    top = float(finite.max()) if len(finite) else math.nan
    with np.errstate(invalid="ignore"):
        out = np.where(np.isinf(upper), top, lower + (upper - lower) * frac)
    return np.where((total > 0) & np.isfinite(total), out, math.nan)


def histogram_quantile(q: float, upper_bounds, cumulative) -> float:
    """The q-quantile of one histogram (`cumulative` counts per upper bound); NaN when empty."""
    if len(upper_bounds) == 0:
        return math.nan
    return float(histogram_quantiles(q, upper_bounds, cumulative)[0])


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values; 0.0 when there are none."""
    n = len(sorted_values)
    if not n:
        return 0.0
    return float(sorted_values[min(n - 1, max(0, int(round(q * (n - 1)))))])


def row_percentiles(values: np.ndarray, counts: np.ndarray, qs: Sequence[float] = (0.5, 0.95)) -> list[np.ndarray]:
    """For each row of `values`, the nearest-rank percentiles `qs` of its first `counts[i]` values,
    then their maximum: [p(q) for q in qs] + [max]. Rows with no values give 0.0. Same rule as
    `percentile`, vectorised for the simulator's thousands of calls a second."""
    k = len(counts)
    if not k:
        return [np.zeros(0) for _ in range(len(qs) + 1)]
    cols = np.arange(values.shape[1])[None, :]
    ordered = np.sort(np.where(cols < counts[:, None], values.astype(np.float64), np.inf), axis=1)
    n = np.maximum(counts, 1)
    rows = np.arange(k)
    out = []
    for q in qs:
        idx = np.minimum(n - 1, np.round(q * (n - 1)).astype(np.int64))
        out.append(np.where(counts > 0, ordered[rows, idx], 0.0))
    out.append(np.where(counts > 0, ordered[rows, n - 1], 0.0))
    return out


__all__ = ["histogram_quantile", "histogram_quantiles", "percentile", "row_percentiles"]
