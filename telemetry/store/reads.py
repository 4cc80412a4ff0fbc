"""The read queries behind the query API and the dashboards: series over a range with a step,
percentiles, the most saturated resources, call search and call detail, findings.

Every statement is written once for both engines (chdb's 26.x and Debian's 18.16 server): times are
Int64 epoch ms bucketed with intDiv, no window functions, `{name:Type}` placeholders only. Functions
take a store and plain Python values and return pandas frames or dicts; validation of what a caller
may ask for (ranges, filters) happens here too and raises `BadQuery` with a reason a person can act on.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from telemetry import quantiles as _quantiles
from telemetry.store.schema import table as schema_table

TURN_LATENCY_BUDGET_MS = 300.0
SATURATION_SUFFIX = "_saturation_ratio"


class BadQuery(ValueError):
    """The request cannot be answered as asked (reason in the message): an API 400."""


class UnknownMetric(BadQuery):
    """No metric with that id or name in the catalog or the store."""


# --------------------------------------------------------------------------------------------------
# time ranges


@dataclass(frozen=True)
class TimeRange:
    start_ms: int
    end_ms: int
    step_ms: int

    @property
    def points(self) -> int:
        return max(1, math.ceil((self.end_ms - self.start_ms) / self.step_ms))

    def bucket_starts(self) -> np.ndarray:
        first = (self.start_ms // self.step_ms) * self.step_ms
        return np.arange(first, self.end_ms, self.step_ms, dtype=np.int64)


def time_range(start_ms: int | None, end_ms: int | None, step_s: float | None, *, now_ms: int,
               default_span_ms: int = 3_600_000, max_range_days: float = 31.0, max_points: int = 5000,
               target_points: int = 240) -> TimeRange:
    """Validate and complete a requested range: end defaults to now, start to one span before end,
    the step to about `target_points` buckets rounded to a whole second (whole minutes past 10 min)."""
    end = int(now_ms if end_ms is None else end_ms)
    start = int(end - default_span_ms if start_ms is None else start_ms)
    if start < 0 or end < 0:
        raise BadQuery("times are epoch milliseconds and cannot be negative")
    if end <= start:
        raise BadQuery(f"time range is backwards or empty: start_ms={start} is not before end_ms={end}")
    span = end - start
    limit_ms = int(max_range_days * 86_400_000)
    if span > limit_ms:
        raise BadQuery(f"time range of {span / 86_400_000:.1f} days is longer than the limit of {max_range_days:g} days")
    if step_s is None:
        step = max(1000, span // target_points)
        step = (step // 1000) * 1000
        if step >= 600_000:
            step = (step // 60_000) * 60_000
    else:
        if not math.isfinite(step_s) or step_s <= 0:
            raise BadQuery(f"step_s must be a positive number of seconds, got {step_s}")
        step = int(round(step_s * 1000))
        if step < 1000:
            raise BadQuery("step_s must be at least 1 second")
    tr = TimeRange(start, end, step)
    if tr.points > max_points:
        raise BadQuery(f"{tr.points} points requested (range / step); the limit is {max_points}: use a larger step_s")
    return tr


# --------------------------------------------------------------------------------------------------
# label filters


@dataclass(frozen=True)
class LabelMatcher:
    name: str
    op: str  # '=', '!=', '=~', '!~' (Prometheus' matcher operators)
    value: str


_MATCHER = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$")


def parse_matchers(items: list[str] | None) -> list[LabelMatcher]:
    """Parse `name=value`, `name!=value`, `name=~regex`, `name!~regex` (quotes around values optional)."""
    out = []
    for raw in items or []:
        m = _MATCHER.match(raw)
        if not m:
            raise BadQuery(f"malformed label filter {raw!r}: expected name=value, name!=value, name=~regex or name!~regex")
        name, op, value = m.groups()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        if op in ("=~", "!~"):
            try:
                re.compile(value)
            except re.error as exc:
                raise BadQuery(f"label filter {raw!r}: invalid regular expression ({exc})") from None
        out.append(LabelMatcher(name, op, value))
    return out


def _matcher_sql(matchers: list[LabelMatcher], params: dict) -> str:
    clauses = []
    for i, m in enumerate(matchers):
        params[f"lk{i}"] = m.name
        params[f"lv{i}"] = m.value if m.op in ("=", "!=") else f"^(?:{m.value})$"
        value = f"label_values[indexOf(label_keys, {{lk{i}:String}})]"
        clauses.append({
            "=": f"{value} = {{lv{i}:String}}",
            "!=": f"{value} != {{lv{i}:String}}",
            "=~": f"match({value}, {{lv{i}:String}})",
            "!~": f"NOT match({value}, {{lv{i}:String}})",
        }[m.op])
    return "".join(f" AND {c}" for c in clauses)


# --------------------------------------------------------------------------------------------------
# metrics


@dataclass(frozen=True)
class MetricRef:
    metric_id: int
    name: str
    metric_type: str  # counter | gauge | histogram (or what the store recorded)
    unit: str = ""
    description: str = ""
    capacity: str | None = None


def resolve_metric(store, ref: str | int, catalog: dict[str, MetricRef] | None = None) -> MetricRef:
    """A metric by catalog id (digits) or name; the catalog first, then what the store has seen."""
    text = str(ref).strip()
    if not text:
        raise BadQuery("metric is required (a catalog id or name)")
    if catalog:
        if text.isdigit():
            for m in catalog.values():
                if m.metric_id == int(text):
                    return m
        elif text in catalog:
            return catalog[text]
    if text.isdigit():
        df = store.query(
            "SELECT metric_id, any(metric) AS m_name, any(metric_type) AS m_type FROM metric_series "
            "WHERE metric_id = {id:UInt32} GROUP BY metric_id", {"id": int(text)})
    elif re.fullmatch(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        df = store.query(
            "SELECT metric_id, any(metric) AS m_name, any(metric_type) AS m_type FROM metric_series "
            "WHERE metric = {n:String} GROUP BY metric_id", {"n": text})
    else:
        raise BadQuery(f"{text!r} is neither a metric id nor a valid metric name")
    if not len(df):
        raise UnknownMetric(f"unknown metric {text!r}: not in the catalog and no samples stored")
    r = df.iloc[0]
    return MetricRef(int(r["metric_id"]), str(r["m_name"]), str(r["m_type"]))


def stored_metrics(store) -> list[MetricRef]:
    """Every metric the store holds series of, by id (what the catalog browser marks as stored)."""
    df = store.query("SELECT metric_id, any(metric) AS m_name, any(metric_type) AS m_type "
                     "FROM metric_series GROUP BY metric_id ORDER BY metric_id")
    return [MetricRef(int(i), str(n), str(t)) for i, n, t in zip(df["metric_id"], df["m_name"], df["m_type"], strict=False)]


def stored_metric_ids(store, *, name_suffix: str) -> list[int]:
    """Ids of the stored metrics whose name ends with `name_suffix` (e.g. SATURATION_SUFFIX)."""
    df = store.query("SELECT DISTINCT metric_id FROM metric_series WHERE endsWith(metric, {s:String})", {"s": name_suffix})
    return sorted(int(i) for i in df["metric_id"])


def row_count(store, table: str, *, distinct: str | None = None) -> int:
    """Rows in one of the store's tables (or distinct values of one column): what a bench or a check counts."""
    t = schema_table(table)  # the name is checked against the schema, never trusted
    if distinct is not None and distinct not in {c.name for c in t.columns}:
        raise BadQuery(f"{table} has no column {distinct!r}")
    return int(store.scalar(f"SELECT {'count()' if distinct is None else f'uniqExact({distinct})'} FROM {t.name}"))


def series_labels(store, metric: MetricRef, matchers: list[LabelMatcher], *, sample_suffix: str | None = None,
                  limit: int = 10_000) -> pd.DataFrame:
    """The series of a metric that match the filters: fingerprint, sample_name, labels (dict)."""
    params: dict = {"id": metric.metric_id, "lim": limit}
    where = "metric_id = {id:UInt32}" + _matcher_sql(matchers, params)
    if sample_suffix is not None:
        params["sn"] = metric.name + sample_suffix
        where += " AND sample_name = {sn:String}"
    df = store.query(
        "SELECT fingerprint, any(sample_name) AS s_name, any(label_keys) AS l_keys, "
        f"any(label_values) AS l_values FROM metric_series WHERE {where} "
        "GROUP BY fingerprint ORDER BY fingerprint LIMIT {lim:UInt64}", params)
    df["labels"] = [dict(zip(k, v, strict=False)) for k, v in zip(df["l_keys"], df["l_values"], strict=False)]
    return df.drop(columns=["l_keys", "l_values"]).rename(columns={"s_name": "sample_name"})


def metric_labels(store, metric: MetricRef, limit_values: int = 200) -> dict[str, list[str]]:
    """Label names of a metric and their values seen so far (for the dashboard's filter pickers)."""
    df = store.query(
        "SELECT k, arraySlice(groupUniqArray(v), 1, {lim:UInt64}) AS vals FROM "
        "(SELECT label_keys, label_values FROM metric_series WHERE metric_id = {id:UInt32}) "
        "ARRAY JOIN label_keys AS k, label_values AS v GROUP BY k ORDER BY k",
        {"id": metric.metric_id, "lim": limit_values})
    return {str(k): sorted(str(x) for x in v) for k, v in zip(df["k"], df["vals"], strict=False)}


def _bucketed(store, metric: MetricRef, fps_where: str, params: dict, tr: TimeRange, source: str) -> pd.DataFrame:
    """Per series per bucket: min, max, sum, count, last (from raw samples or the 1-minute rollups)."""
    params = dict(params, id=metric.metric_id, s=tr.start_ms, e=tr.end_ms, step=tr.step_ms)
    fps = f"(SELECT fingerprint FROM metric_series WHERE {fps_where})"
    if source == "rollup":
        sql = (
            "SELECT fingerprint, intDiv(bucket_ms, {step:Int64}) * {step:Int64} AS t, minMerge(min_state) AS min_v, "
            "maxMerge(max_state) AS max_v, sumMerge(sum_state) AS sum_v, countMerge(count_state) AS n, "
            "argMaxMerge(last_state) AS last_v FROM metric_rollups_1m "
            f"WHERE metric_id = {{id:UInt32}} AND fingerprint IN {fps} "
            "AND bucket_ms >= {s:Int64} AND bucket_ms < {e:Int64} GROUP BY fingerprint, t ORDER BY fingerprint, t")
    else:
        sql = (
            "SELECT fingerprint, intDiv(ts_ms, {step:Int64}) * {step:Int64} AS t, min(value) AS min_v, "
            "max(value) AS max_v, sum(value) AS sum_v, count() AS n, argMax(value, ts_ms) AS last_v "
            f"FROM metric_samples WHERE metric_id = {{id:UInt32}} AND fingerprint IN {fps} "
            "AND ts_ms >= {s:Int64} AND ts_ms < {e:Int64} GROUP BY fingerprint, t ORDER BY fingerprint, t")
    return store.query(sql, params)


def choose_source(tr: TimeRange, source: str) -> str:
    if source not in ("auto", "raw", "rollup"):
        raise BadQuery(f"source must be auto, raw or rollup, not {source!r}")
    if source == "rollup" and tr.step_ms % 60_000:
        raise BadQuery("rollups are per minute: step_s must be a multiple of 60 for source=rollup")
    if source == "auto":
        # whole-minute steps read the rollups (far fewer rows); finer steps need the raw samples
        return "rollup" if tr.step_ms % 60_000 == 0 else "raw"
    return source


AGGREGATIONS = ("avg", "min", "max", "sum", "last", "count", "rate")


def metric_series(store, metric: MetricRef, matchers: list[LabelMatcher], tr: TimeRange, *, agg: str = "avg",
                  group_by: list[str] | None = None, source: str = "auto", max_series: int = 100) -> dict:
    """One line per matching series (or per `group_by` label combination) over the range.

    `agg` says how samples within a bucket become one value (`rate`: per-second increase of a counter);
    series grouped together are summed (counts, rates) or averaged (gauges)."""
    if agg not in AGGREGATIONS:
        raise BadQuery(f"agg must be one of {', '.join(AGGREGATIONS)}, not {agg!r}")
    src = choose_source(tr, source)
    suffix = None
    if metric.metric_type == "histogram":
        suffix = "_count" if agg in ("rate", "count", "sum", "last") else "_sum"
    labels = series_labels(store, metric, matchers, sample_suffix=suffix)
    if group_by is None and len(labels) > max_series:
        raise BadQuery(f"{len(labels)} series match; the limit is {max_series}: add label filters or group_by")
    params: dict = {"id": metric.metric_id}
    fps_where = "metric_id = {id:UInt32}" + _matcher_sql(matchers, params)
    if suffix:
        params["sn"] = metric.name + suffix
        fps_where += " AND sample_name = {sn:String}"
    df = _bucketed(store, metric, fps_where, params, tr, src)
    value = _bucket_values(df, agg, tr.step_ms)
    label_of = dict(zip(labels["fingerprint"].astype("uint64"), labels["labels"], strict=False))
    value["labels"] = [label_of.get(np.uint64(f), {}) for f in value["fingerprint"]]
    if group_by is not None:
        keys = list(group_by)
        value["labels"] = [{k: lab.get(k, "") for k in keys} for lab in value["labels"]]
        value["key"] = [json.dumps(lab, sort_keys=True) for lab in value["labels"]]
        how = "mean" if agg in ("avg", "min", "max", "last") and metric.metric_type == "gauge" else "sum"
        grouped = value.groupby(["key", "t"], sort=True)["v"].agg(how).reset_index()
        lines = []
        for key, part in grouped.groupby("key", sort=True):
            lines.append({"labels": json.loads(key), "points": _points(part)})
        if len(lines) > max_series:
            raise BadQuery(f"{len(lines)} groups; the limit is {max_series}: group by fewer labels or filter")
    else:
        lines = []
        for fp, part in value.groupby("fingerprint", sort=True):
            lines.append({"fingerprint": int(fp), "labels": label_of.get(np.uint64(fp), {}), "points": _points(part)})
    return {"metric": metric.name, "metric_id": metric.metric_id, "metric_type": metric.metric_type, "agg": agg,
            "source": src, "start_ms": tr.start_ms, "end_ms": tr.end_ms, "step_ms": tr.step_ms, "series": lines}


def _points(part: pd.DataFrame) -> list[list[float]]:
    v = part["v"].to_numpy(dtype=float)
    t = part["t"].to_numpy(dtype=np.int64)
    keep = np.isfinite(v)
    return [[int(a), float(b)] for a, b in zip(t[keep], v[keep], strict=False)]


def _bucket_values(df: pd.DataFrame, agg: str, step_ms: int) -> pd.DataFrame:
    out = df[["fingerprint", "t"]].copy()
    if agg == "avg":
        out["v"] = df["sum_v"] / df["n"].where(df["n"] > 0)
    elif agg == "min":
        out["v"] = df["min_v"]
    elif agg == "max":
        out["v"] = df["max_v"]
    elif agg == "sum":
        out["v"] = df["sum_v"]
    elif agg == "count":
        out["v"] = df["n"].astype(float)
    elif agg == "last":
        out["v"] = df["last_v"]
    elif agg == "rate":
        out["v"] = _increase(df) / (step_ms / 1000.0)
    return out


def _increase(df: pd.DataFrame) -> np.ndarray:
    """Counter increase per bucket: last value minus the previous bucket's last value of the same
    series (within the first bucket: last minus min); a drop means a restart, counted from zero."""
    fp = df["fingerprint"].to_numpy()
    last = df["last_v"].to_numpy(dtype=float)
    prev = np.roll(last, 1)
    first = np.ones(len(df), dtype=bool)
    if len(df):
        first[1:] = fp[1:] != fp[:-1]
    inc = np.where(first, last - df["min_v"].to_numpy(dtype=float), last - prev)
    return np.where(inc < 0, last, inc)


def histogram_quantiles(store, metric: MetricRef, matchers: list[LabelMatcher], tr: TimeRange,
                        quantiles: list[float], *, source: str = "auto") -> dict:
    """Quantiles per bucket from a histogram's cumulative `_bucket` counters (Prometheus'
    histogram_quantile over the increase in each step, summed across the matching series)."""
    src = choose_source(tr, source)
    params: dict = {"id": metric.metric_id, "sn": metric.name + "_bucket"}
    fps_where = "metric_id = {id:UInt32} AND sample_name = {sn:String}" + _matcher_sql(matchers, params)
    labels = series_labels(store, metric, matchers, sample_suffix="_bucket")
    df = _bucketed(store, metric, fps_where, params, tr, src)
    result = {"metric": metric.name, "metric_id": metric.metric_id, "metric_type": metric.metric_type,
              "source": src, "start_ms": tr.start_ms, "end_ms": tr.end_ms, "step_ms": tr.step_ms, "series": []}
    if not len(df):
        return result
    le_of = {np.uint64(f): _le(lab.get("le")) for f, lab in zip(labels["fingerprint"], labels["labels"], strict=False)}
    df = df.assign(inc=_increase(df), le=[le_of.get(np.uint64(f), np.nan) for f in df["fingerprint"]])
    df = df[np.isfinite(df["le"]) | np.isinf(df["le"])]
    table = df.groupby(["t", "le"])["inc"].sum().unstack("le").sort_index(axis=1).fillna(0.0)
    bounds = table.columns.to_numpy(dtype=float)
    counts = np.maximum.accumulate(table.to_numpy(dtype=float), axis=1)  # cumulative buckets never shrink
    ts = table.index.to_numpy(dtype=np.int64)
    for q in quantiles:
        vals = _quantiles.histogram_quantiles(q, bounds, counts)  # the one +Inf rule
        keep = np.isfinite(vals)
        result["series"].append({"labels": {"quantile": f"{q:g}"},
                                 "points": [[int(a), float(b)] for a, b in zip(ts[keep], vals[keep], strict=False)]})
    return result


def _le(text) -> float:
    if text is None:
        return np.nan
    try:
        return float(text)  # '+Inf' parses to inf
    except ValueError:
        return np.nan


def sample_quantiles(store, metric: MetricRef, matchers: list[LabelMatcher], tr: TimeRange,
                     quantiles: list[float]) -> dict:
    """Quantiles of the raw sample values in each bucket across every matching series (gauges)."""
    params: dict = {"id": metric.metric_id, "s": tr.start_ms, "e": tr.end_ms, "step": tr.step_ms}
    fps_where = "metric_id = {id:UInt32}" + _matcher_sql(matchers, params)
    qs = ", ".join(repr(float(q)) for q in quantiles)
    df = store.query(
        f"SELECT intDiv(ts_ms, {{step:Int64}}) * {{step:Int64}} AS t, quantiles({qs})(value) AS qs "
        f"FROM metric_samples WHERE metric_id = {{id:UInt32}} AND fingerprint IN "
        f"(SELECT fingerprint FROM metric_series WHERE {fps_where}) "
        "AND ts_ms >= {s:Int64} AND ts_ms < {e:Int64} GROUP BY t ORDER BY t", params)
    series = []
    for i, q in enumerate(quantiles):
        series.append({"labels": {"quantile": f"{q:g}"},
                       "points": [[int(t), float(v[i])] for t, v in zip(df["t"], df["qs"], strict=False)]})
    return {"metric": metric.name, "metric_id": metric.metric_id, "metric_type": metric.metric_type,
            "source": "raw", "start_ms": tr.start_ms, "end_ms": tr.end_ms, "step_ms": tr.step_ms, "series": series}


def parse_quantiles(text: str | None) -> list[float]:
    if not text:
        return []
    out = []
    for part in text.split(","):
        try:
            q = float(part)
        except ValueError:
            raise BadQuery(f"percentiles must be numbers between 0 and 1 (or 0-100), got {part!r}") from None
        if 1 < q <= 100:
            q = q / 100.0  # accept 95 as well as 0.95
        if not 0 <= q <= 1:
            raise BadQuery(f"percentile {part!r} is outside 0-1 (or 0-100)")
        out.append(q)
    if len(out) > 10:
        raise BadQuery("at most 10 percentiles at once")
    return out


# --------------------------------------------------------------------------------------------------
# calls


CALL_COLUMNS = ("call_id", "started_ms", "ended_ms", "region", "language", "scenario", "channel", "intents",
                "outcome", "handoff", "handoff_reason", "turns", "latency_p50_ms", "latency_p95_ms",
                "latency_max_ms", "degradation_level", "trace_id")


@dataclass
class CallFilter:
    start_ms: int
    end_ms: int
    regions: list[str] | None = None
    languages: list[str] | None = None
    intents: list[str] | None = None
    outcomes: list[str] | None = None
    handoff: bool | None = None
    min_latency_ms: float | None = None  # compared with the call's P95 turn latency
    words: list[str] | None = None  # every word must appear in the transcript (case-insensitive)
    traced: bool | None = None  # calls whose spans were kept (the simulator samples traces)


def _call_where(f: CallFilter, params: dict) -> str:
    params.update(s=f.start_ms, e=f.end_ms)
    where = ["started_ms >= {s:Int64}", "started_ms < {e:Int64}"]
    for col, values, key in (("region", f.regions, "rg"), ("language", f.languages, "lg"), ("outcome", f.outcomes, "oc")):
        if values:
            params[key] = list(values)
            where.append(f"has({{{key}:Array(String)}}, {col})")
    if f.intents:
        params["it"] = list(f.intents)
        where.append("hasAny(intents, {it:Array(String)})")
    if f.handoff is not None:
        params["ho"] = 1 if f.handoff else 0
        where.append("handoff = {ho:UInt8}")
    if f.min_latency_ms is not None:
        if not math.isfinite(f.min_latency_ms) or f.min_latency_ms < 0:
            raise BadQuery("min_latency_ms must be a non-negative number")
        params["lat"] = float(f.min_latency_ms)
        where.append("latency_p95_ms > {lat:Float64}")
    if f.traced is not None:
        where.append("trace_id != ''" if f.traced else "trace_id = ''")
    for i, w in enumerate(f.words or []):
        params[f"w{i}"] = w
        # case-insensitive search without lowering the whole column first (18.16 has it too)
        where.append(f"positionCaseInsensitiveUTF8(transcript, {{w{i}:String}}) > 0")
    return " AND ".join(where)


def search_calls(store, f: CallFilter, *, limit: int = 100, offset: int = 0, with_total: bool = True) -> tuple[pd.DataFrame, int | None]:
    """Calls matching the filter, newest first, and how many match in all."""
    params: dict = {"lim": int(limit), "off": int(offset)}
    where = _call_where(f, params)
    cols = ", ".join(CALL_COLUMNS)
    # both keys descending = the table's sort key read backwards: the engine can stop after `limit` rows
    df = store.query(f"SELECT {cols} FROM calls WHERE {where} ORDER BY started_ms DESC, call_id DESC "
                     "LIMIT {lim:UInt64} OFFSET {off:UInt64}", params)
    total = None
    if with_total:
        params.pop("lim"), params.pop("off")
        total = int(store.query(f"SELECT count() AS n FROM calls WHERE {where}", params)["n"].iloc[0])
    return df, total


def call_detail(store, call_id: str, *, margin_ms: int = 60_000) -> dict | None:
    """A call, its spans by turn, its transcript, and the alerts and degradation actions around it."""
    calls = store.query(f"SELECT {', '.join(CALL_COLUMNS)}, transcript FROM calls WHERE call_id = {{c:String}} LIMIT 1",
                        {"c": call_id})
    if not len(calls):
        return None
    call = calls.iloc[0].to_dict()
    spans = store.query(
        "SELECT trace_id, span_id, parent_span_id, turn, name, start_us, duration_ms, status, attr_keys, attr_values "
        "FROM spans WHERE call_id = {c:String} ORDER BY start_us, span_id", {"c": call_id})
    lo = int(call["started_ms"]) - margin_ms
    hi = int(call["ended_ms"] or call["started_ms"]) + margin_ms
    region = str(call["region"])
    # Alerts that touched the call: transitions while it ran, and alerts already firing when it
    # started, limited to its region or to alerts that name no region.
    alerts = store.query(
        "SELECT ts_ms, rule, alert_fingerprint, state, severity, label_keys, label_values, annotation_keys, "
        "annotation_values, value FROM alert_events WHERE ts_ms >= {lo:Int64} AND ts_ms <= {hi:Int64} "
        "AND (indexOf(label_keys, 'region') = 0 OR label_values[indexOf(label_keys, 'region')] = {rg:String}) "
        "ORDER BY ts_ms", {"lo": lo, "hi": hi, "rg": region})
    actions = store.query(
        "SELECT ts_ms, action_id, phase, level, previous_level, region, rule, reason FROM degradation_actions "
        "WHERE ts_ms >= {lo:Int64} AND ts_ms <= {hi:Int64} AND (region = '' OR region = {rg:String}) ORDER BY ts_ms",
        {"lo": lo, "hi": hi, "rg": region})
    return {"call": call, "spans": spans, "alerts": alerts, "actions": actions}


# --------------------------------------------------------------------------------------------------
# overview


OWN_SOURCE = "voxwatch"  # the source name of Voxwatch's own pipeline's calls (every channel but OTLP ingest)


def call_sources(store, tr: TimeRange) -> pd.DataFrame:
    """The pipelines whose calls started in the range, most calls first: each pipeline sending OTLP (its
    `service.name`, kept in `calls.scenario` of its `otlp`-channel calls) and Voxwatch's own, with the
    regions their calls are filed under (the `region` label of their stage and turn metrics)."""
    from telemetry.ingest.conventions import CHANNEL  # the channel every ingested call carries

    return store.query(
        "SELECT if(channel = {ch:String}, scenario, {own:String}) AS source, max(channel = {ch:String}) AS ingested, "
        "groupUniqArray(region) AS regions, count() AS calls FROM calls "
        "WHERE started_ms >= {s:Int64} AND started_ms < {e:Int64} GROUP BY source ORDER BY calls DESC, source",
        {"ch": CHANNEL, "own": OWN_SOURCE, "s": tr.start_ms, "e": tr.end_ms})


def call_traffic(store, tr: TimeRange, regions: list[str] | None = None) -> pd.DataFrame:
    """Calls started per bucket and how they ended: the Overview's traffic and errors panels."""
    params: dict = {"s": tr.start_ms, "e": tr.end_ms, "step": tr.step_ms}
    extra = ""
    if regions:
        params["rg"] = list(regions)
        extra = " AND has({rg:Array(String)}, region)"
    return store.query(
        "SELECT intDiv(started_ms, {step:Int64}) * {step:Int64} AS t, count() AS calls, "
        "countIf(outcome = 'failed') AS failed, countIf(outcome = 'abandoned') AS abandoned, "
        "countIf(handoff = 1) AS handoffs, avg(latency_p95_ms) AS mean_p95_ms "
        "FROM calls WHERE started_ms >= {s:Int64} AND started_ms < {e:Int64}" + extra +
        " GROUP BY t ORDER BY t", params)


def span_latency_quantiles(store, tr: TimeRange, quantiles: list[float], span_name: str = "turn") -> pd.DataFrame:
    """Quantiles of span durations per bucket (turn latency from traces, when no histogram is stored)."""
    qs = ", ".join(repr(float(q)) for q in quantiles)
    return store.query(
        f"SELECT intDiv(start_us, {{stepu:Int64}}) * {{stepu:Int64}} / 1000 AS t, quantiles({qs})(duration_ms) AS qs, "
        "count() AS n, countIf(status = 'error') AS errors FROM spans WHERE name = {nm:String} "
        "AND start_us >= {su:Int64} AND start_us < {eu:Int64} GROUP BY t ORDER BY t",
        {"stepu": tr.step_ms * 1000, "su": tr.start_ms * 1000, "eu": tr.end_ms * 1000, "nm": span_name})


def saturated_resources(store, metric_ids: list[int], tr: TimeRange, *, top: int = 10,
                        lookback_ms: int = 3_600_000) -> pd.DataFrame:
    """The most saturated resources at the end of the range: the latest value (within the last
    `lookback_ms` of the range) of every saturation-ratio series, highest first, with the latest
    forecast time to exhaustion from the anomaly findings.

    Reads the 1-minute rollups: their `last` state is the latest sample of each minute, and a day of
    one series is 1,440 rows there instead of 8,640 raw samples at 10 s."""
    empty = pd.DataFrame(columns=["fingerprint", "metric", "labels", "value", "ts_ms", "time_to_exhaustion_s"])
    if not metric_ids:
        return empty
    s = max(tr.start_ms, tr.end_ms - lookback_ms)
    params = {"s": (s // 60_000) * 60_000, "e": tr.end_ms, "top": int(top)}
    # metric_id IN (literal list) keeps the primary-key range scan on (metric_id, fingerprint, bucket_ms)
    ids = ", ".join(str(int(i)) for i in metric_ids)
    latest = store.query(
        "SELECT fingerprint, argMaxMerge(last_state) AS latest, max(bucket_ms) AS latest_ms FROM metric_rollups_1m "
        f"WHERE metric_id IN ({ids}) AND bucket_ms >= {{s:Int64}} AND bucket_ms < {{e:Int64}} "
        "GROUP BY fingerprint ORDER BY latest DESC LIMIT {top:UInt64}", params)
    latest = latest.rename(columns={"latest": "value", "latest_ms": "ts_ms"})
    if not len(latest):
        return empty
    fps = [int(f) for f in latest["fingerprint"]]
    names = store.query(
        "SELECT fingerprint, any(metric) AS m_name, any(label_keys) AS l_keys, any(label_values) AS l_values "
        "FROM metric_series WHERE has({fps:Array(UInt64)}, fingerprint) GROUP BY fingerprint", {"fps": fps})
    names = names.rename(columns={"m_name": "metric", "l_keys": "label_keys", "l_values": "label_values"})
    forecasts = store.query(
        "SELECT fingerprint, argMax(time_to_exhaustion_s, ts_ms) AS tte FROM anomaly_findings "
        "WHERE kind = 'saturation_trend' AND has({fps:Array(UInt64)}, fingerprint) "
        "AND ts_ms >= {s:Int64} AND ts_ms <= {e:Int64} GROUP BY fingerprint",
        {"fps": fps, "s": tr.start_ms, "e": tr.end_ms}).rename(columns={"tte": "time_to_exhaustion_s"})
    out = latest.merge(names, on="fingerprint", how="left").merge(forecasts, on="fingerprint", how="left")
    out["labels"] = [dict(zip(k, v, strict=False)) if isinstance(k, (list, np.ndarray)) else {}
                     for k, v in zip(out["label_keys"], out["label_values"], strict=False)]
    return out.drop(columns=["label_keys", "label_values"]).sort_values("value", ascending=False)


# --------------------------------------------------------------------------------------------------
# findings (alerts' own tables are read through alerts.tables)


def findings(store, start_ms: int, end_ms: int, *, kind: str | None = None, metric: str | None = None,
             min_score: float | None = None, limit: int = 1000) -> pd.DataFrame:
    params: dict = {"s": start_ms, "e": end_ms, "lim": limit}
    extra = ""
    if kind:
        params["k"] = kind
        extra += " AND kind = {k:String}"
    if metric:
        params["m"] = metric
        extra += " AND metric = {m:String}"
    if min_score is not None:
        params["ms"] = float(min_score)
        extra += " AND score >= {ms:Float64}"
    return store.query(
        "SELECT ts_ms, finding_id, detector, kind, metric, fingerprint, label_keys, label_values, score, value, "
        "expected_low, expected_high, time_to_exhaustion_s, confidence, reason FROM anomaly_findings "
        "WHERE ts_ms >= {s:Int64} AND ts_ms < {e:Int64}" + extra + " ORDER BY ts_ms DESC LIMIT {lim:UInt64}", params)
