"""The ClickHouse schema, declared once and rendered through a dialect.

Every table every room writes lives here. Columns carry a logical type; the dialect turns it into
what the engine accepts: chdb / modern servers get LowCardinality, codecs and TTL; Debian's 18.16
server gets plain types. Times are stored as Int64 epoch milliseconds (`*_ms`) in both, so every
query is the same text on both engines; an ALIAS column `ts` gives analysts a DateTime.
"""

from __future__ import annotations

from dataclasses import dataclass

SCHEMA_VERSION = 4


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # ClickHouse type as the modern dialect writes it, without LowCardinality
    low_cardinality: bool = False  # String columns with few distinct values
    codec: str | None = None  # modern-only compression codec
    finite: bool = False  # Float64 columns that must never hold NaN/inf (the sink rejects such rows)
    alias: str | None = None  # ALIAS expression (modern form); None for stored columns
    legacy_alias: str | None = None  # ALIAS expression on the legacy dialect
    legacy_type: str | None = None  # type override on the legacy dialect


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    order_by: str
    engine: str = "MergeTree"
    partition_by: str | None = None
    ttl_days: int | None = None  # retention on modern engines, counted from when rows were stored
    shard_key: str = "rand()"  # how the Distributed table spreads rows in cluster mode
    description: str = ""

    def stored_columns(self) -> list[Column]:
        return [c for c in self.columns if c.alias is None]


@dataclass(frozen=True)
class View:
    """A materialized view `TO` a table (both dialects accept this form)."""

    name: str
    target: str
    select: str


def _ts_alias(col: str = "ts_ms") -> Column:
    return Column(
        "ts",
        "DateTime64(3, 'UTC')",
        alias=f"fromUnixTimestamp64Milli({col}, 'UTC')",
        legacy_type="DateTime",
        legacy_alias=f"toDateTime(intDiv({col}, 1000))",
    )


S = "String"
LC = dict(low_cardinality=True)
DAY_PARTITION = "toYYYYMMDD(toDateTime(intDiv(ts_ms, 1000)))"

TABLES: tuple[Table, ...] = (
    Table(
        "schema_version",
        (Column("version", "UInt32"), Column("applied_ms", "Int64"), Column("release", S)),
        order_by="version",
        description="one row per applied schema version",
    ),
    Table(
        "metric_series",
        (
            Column("fingerprint", "UInt64"),
            Column("metric_id", "UInt32"),
            Column("metric", S, **LC),  # the catalog name
            Column("sample_name", S, **LC),  # name as exposed: e.g. *_bucket, *_sum, *_count
            Column("metric_type", S, **LC),
            Column("label_keys", "Array(String)"),
            Column("label_values", "Array(String)"),
            Column("first_seen_ms", "Int64"),
        ),
        engine="ReplacingMergeTree",
        order_by="fingerprint",
        shard_key="fingerprint",
        description="one row per series (fingerprint of metric + labels); label sets stored once",
    ),
    Table(
        "metric_samples",
        (
            Column("ts_ms", "Int64", codec="DoubleDelta, ZSTD(1)"),
            Column("fingerprint", "UInt64"),
            Column("metric_id", "UInt32"),
            Column("value", "Float64", codec="Gorilla, ZSTD(1)", finite=True),
            _ts_alias(),
        ),
        order_by="(metric_id, fingerprint, ts_ms)",
        partition_by=DAY_PARTITION,
        ttl_days=30,
        shard_key="fingerprint",
        description="one row per sample of a series",
    ),
    Table(
        "metric_rollups_1m",
        (
            Column("bucket_ms", "Int64"),
            Column("fingerprint", "UInt64"),
            Column("metric_id", "UInt32"),
            Column("min_state", "AggregateFunction(min, Float64)"),
            Column("max_state", "AggregateFunction(max, Float64)"),
            Column("sum_state", "AggregateFunction(sum, Float64)"),
            Column("count_state", "AggregateFunction(count, Float64)"),
            Column("last_state", "AggregateFunction(argMax, Float64, Int64)"),
        ),
        engine="AggregatingMergeTree",
        order_by="(metric_id, fingerprint, bucket_ms)",
        partition_by="toYYYYMM(toDateTime(intDiv(bucket_ms, 1000)))",
        ttl_days=400,
        shard_key="fingerprint",
        description="per-minute rollups of metric_samples for long ranges (filled by a view)",
    ),
    Table(
        "calls",
        (
            Column("call_id", S),
            Column("started_ms", "Int64"),
            Column("ended_ms", "Int64"),
            Column("region", S, **LC),
            Column("language", S, **LC),
            Column("scenario", S, **LC),
            Column("channel", S, **LC),  # webrtc | simulated
            Column("intents", "Array(String)"),
            Column("outcome", S, **LC),  # completed | handoff | abandoned | failed | silence | ...
            Column("handoff", "UInt8"),
            Column("handoff_reason", S, **LC),
            Column("turns", "UInt16"),
            Column("latency_p50_ms", "Float64"),
            Column("latency_p95_ms", "Float64"),
            Column("latency_max_ms", "Float64"),
            Column("degradation_level", S, **LC),
            Column("transcript", S),
            Column("trace_id", S),
            _ts_alias("started_ms"),
        ),
        order_by="(started_ms, call_id)",
        partition_by="toYYYYMMDD(toDateTime(intDiv(started_ms, 1000)))",
        ttl_days=90,
        shard_key="cityHash64(call_id)",
        description="one row per call, written when it ends",
    ),
    Table(
        "spans",
        (
            Column("trace_id", S),
            Column("span_id", S),
            Column("parent_span_id", S),
            Column("call_id", S),
            Column("turn", "UInt16"),
            Column("name", S, **LC),  # conversation | turn | stt | nlu | llm | tts | tool | ...
            Column("start_us", "Int64"),
            Column("duration_ms", "Float64"),
            Column("status", S, **LC),  # ok | error
            Column("attr_keys", "Array(String)"),
            Column("attr_values", "Array(String)"),
        ),
        order_by="(call_id, start_us)",
        partition_by="toYYYYMMDD(toDateTime(intDiv(start_us, 1000000)))",
        ttl_days=90,
        shard_key="cityHash64(call_id)",
        description="per-call spans: conversation -> turn -> stage",
    ),
    Table(
        "anomaly_findings",
        (
            Column("ts_ms", "Int64"),
            Column("finding_id", S),
            Column("detector", S, **LC),
            Column("kind", S, **LC),  # saturation_trend | level_shift | spike | multivariate | ...
            Column("metric", S, **LC),
            Column("fingerprint", "UInt64"),
            Column("label_keys", "Array(String)"),
            Column("label_values", "Array(String)"),
            Column("score", "Float64"),
            Column("value", "Float64"),
            Column("expected_low", "Float64"),
            Column("expected_high", "Float64"),
            Column("time_to_exhaustion_s", "Float64"),  # NaN when not a saturation forecast
            Column("confidence", "Float64"),
            Column("reason", S),
            _ts_alias(),
        ),
        order_by="(ts_ms, metric)",
        partition_by=DAY_PARTITION,
        ttl_days=180,
        description="anomaly detector findings",
    ),
    Table(
        "alert_events",
        (
            Column("ts_ms", "Int64"),
            Column("rule", S, **LC),
            Column("alert_fingerprint", S),
            Column("state", S, **LC),  # pending | firing | resolved | inactive
            Column("previous_state", S, **LC),
            Column("severity", S, **LC),
            Column("label_keys", "Array(String)"),
            Column("label_values", "Array(String)"),
            Column("annotation_keys", "Array(String)"),
            Column("annotation_values", "Array(String)"),
            Column("value", "Float64"),
            Column("active_since_ms", "Int64"),
            _ts_alias(),
        ),
        order_by="(ts_ms, rule, alert_fingerprint)",
        partition_by=DAY_PARTITION,
        ttl_days=400,
        description="alert state transitions",
    ),
    Table(
        "silences",
        (
            Column("silence_id", S),
            Column("updated_ms", "Int64"),
            Column("created_ms", "Int64"),
            Column("starts_ms", "Int64"),
            Column("ends_ms", "Int64"),
            Column("created_by", S),
            Column("comment", S),
            Column("matchers_json", S),  # [{name, value, isRegex, isEqual}]
            Column("state", S, **LC),  # active | expired | pending
        ),
        engine="ReplacingMergeTree(updated_ms)",
        order_by="silence_id",
        shard_key="cityHash64(silence_id)",
        description="silences; the newest row per id wins",
    ),
    Table(
        "notifications",
        (
            Column("ts_ms", "Int64"),
            Column("notification_id", S),
            Column("receiver", S, **LC),
            Column("integration", S, **LC),  # webhook | pagerduty | alertmanager | action
            Column("group_key", S),
            Column("status", S, **LC),  # firing | resolved
            Column("attempt", "UInt16"),
            Column("result", S, **LC),  # delivered | retrying | failed | deduplicated | suppressed
            Column("http_status", "Int32"),
            Column("error", S),
            Column("alert_fingerprints", "Array(String)"),
            Column("payload", S),
            _ts_alias(),
        ),
        order_by="(ts_ms, receiver)",
        partition_by=DAY_PARTITION,
        ttl_days=400,
        description="every delivery attempt of every notification",
    ),
    Table(
        "degradation_actions",
        (
            Column("ts_ms", "Int64"),
            Column("action_id", S),
            Column("phase", S, **LC),  # requested | applied | reverted | refused
            Column("level", S, **LC),
            Column("previous_level", S, **LC),
            Column("region", S, **LC),
            Column("rule", S, **LC),
            Column("reason", S),
            Column("effect_metric", S),
            Column("effect_value", "Float64"),
            _ts_alias(),
        ),
        order_by="(ts_ms, action_id)",
        partition_by=DAY_PARTITION,
        ttl_days=400,
        description="degradation actions asked for, applied and reverted, with their effect",
    ),
    Table(
        "alert_state",
        (
            Column("rule", S),
            Column("alert_fingerprint", S),
            Column("updated_ms", "Int64"),
            Column("state", S, **LC),
            Column("active_since_ms", "Int64"),
            Column("fired_ms", "Int64"),
            Column("resolved_ms", "Int64"),
            Column("last_notified_ms", "Int64"),
            Column("payload_json", S),
        ),
        engine="ReplacingMergeTree(updated_ms)",
        order_by="(rule, alert_fingerprint)",
        shard_key="cityHash64(rule)",
        description="current state of each alert, so a restart neither loses nor repeats alerts",
    ),
    # -- incidents (alerts/incidents): the state of each incident, newest row per id wins, and its timeline
    Table(
        "incidents",
        (
            Column("incident_id", S),
            Column("updated_ms", "Int64"),
            Column("opened_ms", "Int64"),
            Column("state", S, **LC),  # open | acknowledged | resolved
            Column("severity", S, **LC),
            Column("title", S),
            Column("scope", "Array(String)"),  # resource label values that group its alerts: orders, us-east, ...
            Column("rules", "Array(String)"),
            Column("alert_fingerprints", "Array(String)"),
            Column("paged", "Array(String)"),  # receivers a page was delivered to
            Column("acknowledged_ms", "Int64"),  # 0: not yet
            Column("acknowledged_by", S),
            Column("resolved_ms", "Int64"),
            Column("resolved_by", S),
            Column("payload_json", S),  # the whole incident, for a restart and the API
        ),
        engine="ReplacingMergeTree(updated_ms)",
        order_by="incident_id",
        shard_key="cityHash64(incident_id)",
        description="incidents: related findings, alerts, pages and actions grouped; the newest row per id wins",
    ),
    Table(
        "incident_events",
        (
            Column("ts_ms", "Int64"),
            Column("incident_id", S),
            Column("seq", "UInt32"),  # order of events at the same millisecond
            Column("kind", S, **LC),  # finding | alert | page | action | acknowledged | resolved | note | opened
            Column("title", S),
            Column("actor", S),
            Column("detail_json", S),
            _ts_alias(),
        ),
        order_by="(incident_id, ts_ms, seq)",
        partition_by=DAY_PARTITION,
        ttl_days=400,
        shard_key="cityHash64(incident_id)",
        description="each incident's timeline: first finding, alert transitions, pages, actions and effects, notes",
    ),
    # -- OTLP logs of pipelines Voxwatch does not run (telemetry/ingest/logs.py, docs/ingest.md)
    Table(
        "logs",
        (
            Column("ts_ms", "Int64"),  # the record's time, else the time its SDK observed it
            Column("source", S, **LC),  # the sender's service.name
            Column("severity_number", "UInt8"),  # OTLP SeverityNumber: 1-4 trace ... 17-20 error, 21-24 fatal; 0 unset
            Column("severity_text", S, **LC),
            Column("body", S),
            Column("trace_id", S),  # hex; empty for a record outside a trace
            Column("span_id", S),
            Column("call_id", S),  # the trace id, as an ingested call's calls.call_id and spans.call_id
            Column("attr_keys", "Array(String)"),
            Column("attr_values", "Array(String)"),
            _ts_alias(),
        ),
        order_by="(source, ts_ms)",
        partition_by=DAY_PARTITION,
        ttl_days=30,
        shard_key="cityHash64(call_id)",
        description="log records received over OTLP (/v1/logs), with their resource's and their own attributes",
    ),
)

VIEWS: tuple[View, ...] = (
    View(
        "metric_rollups_1m_mv",
        "metric_rollups_1m",
        "SELECT intDiv(ts_ms, 60000) * 60000 AS bucket_ms, fingerprint, metric_id, "
        "minState(value) AS min_state, maxState(value) AS max_state, sumState(value) AS sum_state, "
        "countState(value) AS count_state, argMaxState(value, ts_ms) AS last_state "
        "FROM {metric_samples} GROUP BY bucket_ms, fingerprint, metric_id",
    ),
)

TABLES_BY_NAME = {t.name: t for t in TABLES}


@dataclass(frozen=True)
class PlainView:
    """A plain (not materialized) view for analysts: a query with a name. `legacy` is the closest the
    old server (18.16: no Map, no DateTime64) can do; both read the tables through their plain names."""

    name: str
    modern: str
    legacy: str
    description: str = ""


_SERIES = ("(SELECT fingerprint, any(metric) AS metric, any(sample_name) AS sample_name, any(metric_type) AS metric_type, "
           "any(label_keys) AS label_keys, any(label_values) AS label_values FROM metric_series GROUP BY fingerprint)")

ANALYST_VIEWS: tuple[PlainView, ...] = (
    PlainView(
        "samples",
        # one row per sample, no join to write: SELECT ts, metric, labels['pool'], value FROM samples WHERE metric = '...'
        "SELECT fromUnixTimestamp64Milli(s.ts_ms, 'UTC') AS ts, m.metric AS metric, "
        "mapFromArrays(m.label_keys, m.label_values) AS labels, s.value AS value, m.sample_name AS sample_name, "
        "m.metric_type AS metric_type, s.ts_ms AS ts_ms, s.fingerprint AS fingerprint, s.metric_id AS metric_id "
        f"FROM metric_samples AS s INNER JOIN {_SERIES} AS m ON s.fingerprint = m.fingerprint",
        "SELECT toDateTime(intDiv(ts_ms, 1000)) AS ts, metric, label_keys, label_values, value, sample_name, metric_type, "
        f"ts_ms, fingerprint, metric_id FROM metric_samples ALL INNER JOIN {_SERIES} USING fingerprint",
        description="every metric sample with its metric name, labels (a Map) and a millisecond UTC time",
    ),
)


def table(name: str) -> Table:
    try:
        return TABLES_BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown table {name!r}; known: {', '.join(TABLES_BY_NAME)}") from None
