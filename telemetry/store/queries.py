"""Metric primitives by catalog id (series over a range with a step, rollups, percentiles, top-N).

Call search, label matchers and the API's other reads are in `telemetry.store.reads`.

Each is one SQL text that runs on chdb and on Debian's 18.16 server: buckets by intDiv, no window
functions, parameters through `{name:Type}` placeholders only.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from telemetry.store.base import Store

AGGREGATES = {"avg": "avg(value)", "max": "max(value)", "min": "min(value)", "sum": "sum(value)",
              "last": "argMax(value, ts_ms)", "count": "toFloat64(count())"}
MAX_POINTS = 20_000  # per series; a step that would give more is refused by callers


def _levels(levels: Sequence[float]) -> str:
    out = []
    for q in levels:
        q = float(q)
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"percentile level {q} is outside [0, 1]")
        out.append(repr(q))
    return ", ".join(out)


def series(
    store: Store,
    metric_id: int,
    start_ms: int,
    end_ms: int,
    step_ms: int,
    agg: str = "avg",
    fingerprints: Sequence[int] | None = None,
) -> pd.DataFrame:
    """One row per (fingerprint, bucket): `bucket_ms`, `fingerprint`, `value`."""
    if agg not in AGGREGATES:
        raise ValueError(f"unknown aggregation {agg!r}; one of {', '.join(AGGREGATES)}")
    if step_ms <= 0:
        raise ValueError("step must be positive")
    fp_filter = "AND has({fps:Array(UInt64)}, fingerprint)" if fingerprints is not None else ""
    sql = (
        f"SELECT intDiv(ts_ms, {{step:Int64}}) * {{step:Int64}} AS bucket_ms, fingerprint, {AGGREGATES[agg]} AS value "
        "FROM metric_samples WHERE metric_id = {m:UInt32} AND ts_ms >= {t0:Int64} AND ts_ms < {t1:Int64} "
        f"{fp_filter} GROUP BY fingerprint, bucket_ms ORDER BY fingerprint, bucket_ms"
    )
    params = {"m": metric_id, "t0": start_ms, "t1": end_ms, "step": step_ms}
    if fingerprints is not None:
        params["fps"] = [int(f) for f in fingerprints]
    return store.query(sql, params)


def rollup_series(store: Store, metric_id: int, start_ms: int, end_ms: int) -> pd.DataFrame:
    """Per-minute rollups (min, max, avg, last, samples) for long ranges."""
    return store.query(
        "SELECT bucket_ms, fingerprint, minMerge(min_state) AS min_value, maxMerge(max_state) AS max_value, "
        "sumMerge(sum_state) / countMerge(count_state) AS avg_value, argMaxMerge(last_state) AS last_value, "
        "countMerge(count_state) AS samples FROM metric_rollups_1m "
        "WHERE metric_id = {m:UInt32} AND bucket_ms >= {t0:Int64} AND bucket_ms < {t1:Int64} "
        "GROUP BY fingerprint, bucket_ms ORDER BY fingerprint, bucket_ms",
        {"m": metric_id, "t0": start_ms, "t1": end_ms},
    )


def percentiles(
    store: Store, metric_id: int, start_ms: int, end_ms: int, levels: Sequence[float] = (0.5, 0.95, 0.99)
) -> dict[float, float]:
    """Percentiles of the raw sample values of a metric over a range (all its series)."""
    df = store.query(
        f"SELECT quantiles({_levels(levels)})(value) AS q FROM metric_samples "
        "WHERE metric_id = {m:UInt32} AND ts_ms >= {t0:Int64} AND ts_ms < {t1:Int64}",
        {"m": metric_id, "t0": start_ms, "t1": end_ms},
    )
    values = list(df["q"].iloc[0]) if len(df) else [float("nan")] * len(levels)
    return {float(q): float(v) for q, v in zip(levels, values, strict=True)}


def top_series(store: Store, metric_id: int, start_ms: int, end_ms: int, n: int = 10) -> pd.DataFrame:
    """The n series with the highest latest value (e.g. the most saturated pools), with their labels."""
    return store.query(
        "SELECT s.fingerprint AS fingerprint, s.last_value AS value, s.last_ms AS ts_ms, "
        "m.label_keys AS label_keys, m.label_values AS label_values FROM ("
        " SELECT fingerprint, argMax(value, ts_ms) AS last_value, max(ts_ms) AS last_ms FROM metric_samples"
        " WHERE metric_id = {m:UInt32} AND ts_ms >= {t0:Int64} AND ts_ms < {t1:Int64} GROUP BY fingerprint"
        ") AS s LEFT JOIN (SELECT fingerprint, any(label_keys) AS label_keys, any(label_values) AS label_values"
        " FROM metric_series GROUP BY fingerprint) AS m USING (fingerprint) "
        "ORDER BY value DESC, fingerprint LIMIT {n:UInt32}",
        {"m": metric_id, "t0": start_ms, "t1": end_ms, "n": n},
    )
