"""Named reads of telemetry's sample tables for the rooms that replay stored data (the anomaly
service, its lead-time study, the alert rules' replay). The SQL of `metric_samples`, `metric_series`
and `anomaly_findings` lives here, in telemetry, so a schema change touches one module; callers get
DataFrames with the columns each function documents.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

# One row per series and step: gauges averaged over the step (less noise), cumulative series
# (counters, histogram buckets) at their last value, which is what a rate or an increment needs.
_STEPPED_SQL = (
    "SELECT b.bucket_ms AS ts_ms, b.fingerprint AS fingerprint, "
    "if(m.s_type = 'gauge', b.mean_value, b.last_value) AS value, b.last_ts AS last_ts, m.s_metric AS metric, "
    "m.s_name AS sample_name, m.s_type AS metric_type, m.s_keys AS label_keys, "
    "m.s_values AS label_values FROM ("
    "SELECT intDiv(ts_ms, {step:Int64}) * {step:Int64} AS bucket_ms, fingerprint, avg(value) AS mean_value, "
    "argMax(value, ts_ms) AS last_value, max(ts_ms) AS last_ts FROM metric_samples "
    "WHERE ts_ms >= {after:Int64} AND ts_ms < {until:Int64} {metric_filter}"
    "GROUP BY bucket_ms, fingerprint) AS b INNER JOIN ("
    # the inner aliases differ from the column names: ClickHouse resolves an alias before a column,
    # so `any(metric) AS metric` would put an aggregate into the series filter's WHERE
    "SELECT fingerprint, any(metric) AS s_metric, any(sample_name) AS s_name, any(metric_type) AS s_type, "
    "any(label_keys) AS s_keys, any(label_values) AS s_values FROM metric_series {series_filter}"
    "GROUP BY fingerprint) AS m USING (fingerprint) ORDER BY ts_ms, fingerprint"
)

_HISTOGRAM_STEPS_SQL = (
    "SELECT b.bucket_ms AS bucket_ms, m.le AS le, sum(b.last_value) AS cum FROM ("
    "SELECT intDiv(ts_ms, {step:Int64}) * {step:Int64} AS bucket_ms, fingerprint, argMax(value, ts_ms) AS last_value "
    "FROM metric_samples WHERE metric_id = {mid:UInt32} GROUP BY bucket_ms, fingerprint) AS b INNER JOIN ("
    "SELECT fingerprint, any(label_values[indexOf(label_keys, 'le')]) AS le FROM metric_series "
    "WHERE sample_name = {bucket_name:String} GROUP BY fingerprint) AS m USING (fingerprint) "
    "GROUP BY bucket_ms, le ORDER BY bucket_ms"
)

_GAUGE_STEPS_SQL = (
    "SELECT b.bucket_ms AS bucket_ms, b.fingerprint AS fingerprint, b.value AS value, m.label_keys AS label_keys, "
    "m.label_values AS label_values FROM ("
    "SELECT intDiv(ts_ms, {step:Int64}) * {step:Int64} AS bucket_ms, fingerprint, avg(value) AS value "
    "FROM metric_samples WHERE metric_id = {mid:UInt32} GROUP BY bucket_ms, fingerprint) AS b INNER JOIN ("
    "SELECT fingerprint, any(label_keys) AS label_keys, any(label_values) AS label_values FROM metric_series "
    "WHERE metric = {metric:String} GROUP BY fingerprint) AS m USING (fingerprint) ORDER BY fingerprint, bucket_ms"
)


def stepped_samples(store, after_ms: int, until_ms: int, step_ms: int, *, metrics: Sequence[str] | None = None,
                    metric_ids: Sequence[int] | None = None) -> pd.DataFrame:
    """Every series' value per step in [after_ms, until_ms): columns ts_ms (the step's start),
    fingerprint, value (gauges: the step's mean; cumulative series: the last value), last_ts (when
    that last sample was taken), metric, sample_name, metric_type, label_keys, label_values; ordered by
    ts_ms, fingerprint. `metrics` (names) and `metric_ids` narrow the read."""
    params: dict = {"after": int(after_ms), "until": int(until_ms), "step": int(step_ms)}
    metric_filter = series_filter = ""
    if metrics is not None:
        params["metrics"] = list(metrics)
        series_filter = "WHERE has({metrics:Array(String)}, metric) "
        if metric_ids:
            params["ids"] = list(metric_ids)
            metric_filter = "AND has({ids:Array(UInt32)}, metric_id) "
    sql = _STEPPED_SQL.replace("{metric_filter}", metric_filter).replace("{series_filter}", series_filter)
    return store.query(sql, params)


def histogram_bucket_steps(store, metric_id: int, metric: str, step_ms: int) -> pd.DataFrame:
    """A histogram's cumulative bucket counts per step, summed over its label sets: columns
    bucket_ms, le (the bound as stored text, '+Inf' included), cum."""
    return store.query(_HISTOGRAM_STEPS_SQL, {"step": int(step_ms), "mid": int(metric_id), "bucket_name": f"{metric}_bucket"})


def gauge_steps(store, metric_id: int, metric: str, step_ms: int) -> pd.DataFrame:
    """A gauge's step averages per series: columns bucket_ms, fingerprint, value, label_keys,
    label_values; ordered by fingerprint, bucket_ms."""
    return store.query(_GAUGE_STEPS_SQL, {"step": int(step_ms), "mid": int(metric_id), "metric": metric})


def samples_time_span(store) -> tuple[int, int]:
    """(first, last) sample time in ms over every series (the store's zeros when nothing is stored)."""
    span = store.query("SELECT min(ts_ms) AS t0, max(ts_ms) AS t1 FROM metric_samples")
    return int(span["t0"].iloc[0]), int(span["t1"].iloc[0])


def series_by_sample_names(store, sample_names: Sequence[str]) -> pd.DataFrame:
    """The stored series exposing these sample names: columns fingerprint, s_name, s_keys, s_values."""
    return store.query(
        "SELECT fingerprint, any(sample_name) AS s_name, any(label_keys) AS s_keys, any(label_values) AS s_values "
        "FROM metric_series WHERE has({names:Array(String)}, sample_name) GROUP BY fingerprint",
        {"names": list(sample_names)},
    )


def samples_of_series(store, fingerprints: Sequence[int], after_ms: int, until_ms: int) -> pd.DataFrame:
    """Raw samples of these series with after_ms < ts_ms <= until_ms: columns ts_ms, fingerprint, value."""
    return store.query(
        "SELECT ts_ms, fingerprint, value FROM metric_samples WHERE has({fps:Array(UInt64)}, fingerprint) "
        "AND ts_ms > {a:Int64} AND ts_ms <= {b:Int64} ORDER BY ts_ms",
        {"fps": list(fingerprints), "a": int(after_ms), "b": int(until_ms)},
    )


def findings_between(store, start_ms: int, end_ms: int) -> pd.DataFrame:
    """Stored anomaly findings with start_ms <= ts_ms < end_ms, oldest first (the anomaly_findings
    columns a rule reads)."""
    return store.query(
        "SELECT ts_ms, detector, kind, metric, label_keys, label_values, score, value, time_to_exhaustion_s, confidence, reason "
        "FROM anomaly_findings WHERE ts_ms >= {a:Int64} AND ts_ms < {b:Int64} ORDER BY ts_ms",
        {"a": int(start_ms), "b": int(end_ms)},
    )


__all__ = ["findings_between", "gauge_steps", "histogram_bucket_steps", "samples_of_series", "samples_time_span",
           "series_by_sample_names", "stepped_samples"]
