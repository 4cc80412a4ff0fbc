"""The store suite: the same behaviours on chdb, a single 18.16 server, and a two-shard cluster."""

from __future__ import annotations

import time

import numpy as np
import pytest

from telemetry.store import (
    SCHEMA_VERSION,
    TABLES,
    InvalidStoreURL,
    QueryParameterError,
    ReadOnlyViolation,
    StoreError,
    StoreUnavailable,
    open_store,
    queries,
    reads,
)

NOW_MS = int(time.time() * 1000) // 60000 * 60000  # recent (TTL keeps it), minute-aligned


def _samples(n_series=4, n_points=120, step_ms=1000):
    ts = NOW_MS + np.arange(n_points, dtype=np.int64) * step_ms
    rows = {"ts_ms": [], "fingerprint": [], "metric_id": [], "value": []}
    for f in range(n_series):
        rows["ts_ms"].append(ts)
        rows["fingerprint"].append(np.full(n_points, 1000 + f, dtype=np.uint64))
        rows["metric_id"].append(np.full(n_points, 7, dtype=np.uint32))
        rows["value"].append(np.arange(n_points, dtype=np.float64) * (f + 1))
    return {k: np.concatenate(v) for k, v in rows.items()}


def test_schema_creates_every_table_and_records_its_version(any_store):
    tables = set(any_store.query("SELECT name FROM system.tables WHERE database = currentDatabase()")["name"])
    assert {t.name for t in TABLES} <= tables
    assert any_store.schema_version() == SCHEMA_VERSION


def test_migrate_is_idempotent(any_store):
    assert any_store.migrate() == SCHEMA_VERSION
    assert int(any_store.scalar("SELECT count() AS n FROM schema_version")) == 1


def test_migration_adds_columns_a_newer_release_declares(store):
    # Simulate an older store: drop a column, then migrate as the newer release would.
    store._execute("ALTER TABLE calls DROP COLUMN handoff_reason")
    assert "handoff_reason" not in store._existing_columns("calls")
    store.migrate()
    assert "handoff_reason" in store._existing_columns("calls")


def test_samples_round_trip_with_parameters(any_store):
    data = _samples()
    assert any_store.insert("metric_samples", data) == len(data["ts_ms"])
    df = any_store.query(
        "SELECT fingerprint, count() AS n, sum(value) AS s FROM metric_samples "
        "WHERE metric_id = {m:UInt32} AND ts_ms >= {t0:Int64} GROUP BY fingerprint ORDER BY fingerprint",
        {"m": 7, "t0": NOW_MS},
    )
    assert list(df["n"]) == [120] * 4
    assert list(df["s"]) == [sum(range(120)) * k for k in (1, 2, 3, 4)]


def test_series_over_a_range_with_a_step(any_store):
    any_store.insert("metric_samples", _samples())
    df = queries.series(any_store, metric_id=7, start_ms=NOW_MS, end_ms=NOW_MS + 120_000, step_ms=60_000, agg="max")
    first = df[df["fingerprint"] == 1000].sort_values("bucket_ms")
    assert list(first["value"]) == [59.0, 119.0]


def test_rollups_fill_from_samples(any_store):
    any_store.insert("metric_samples", _samples())
    df = queries.rollup_series(any_store, metric_id=7, start_ms=NOW_MS, end_ms=NOW_MS + 120_000)
    one = df[df["fingerprint"] == 1001].sort_values("bucket_ms")
    assert list(one["samples"]) == [60, 60]
    assert list(one["max_value"]) == [118.0, 238.0]
    assert list(one["last_value"]) == [118.0, 238.0]


def test_percentiles_and_top_n(any_store):
    any_store.insert("metric_samples", _samples())
    q = queries.percentiles(any_store, metric_id=7, start_ms=NOW_MS, end_ms=NOW_MS + 120_000, levels=(0.5, 0.99))
    assert 100 < q[0.5] < 200 and q[0.99] > 400
    top = queries.top_series(any_store, metric_id=7, start_ms=NOW_MS, end_ms=NOW_MS + 120_000, n=2)
    assert list(top["fingerprint"]) == [1003, 1002]


def test_call_search_filters(any_store):
    any_store.insert(
        "calls",
        {
            "call_id": ["c1", "c2", "c3"],
            "started_ms": [NOW_MS, NOW_MS + 1000, NOW_MS + 2000],
            "ended_ms": [NOW_MS + 60_000] * 3,
            "region": ["us-east", "eu-west", "us-east"],
            "language": ["en", "en", "es"],
            "intents": [["order_status"], ["billing", "talk_to_human"], ["store_hours"]],
            "outcome": ["completed", "handoff", "completed"],
            "handoff": [0, 1, 0],
            "latency_p95_ms": [180.0, 2400.0, 150.0],
            "transcript": ["where is my order", "I want a person it's urgent", "hours please"],
        },
    )
    def ids(**kw):
        df, total = reads.search_calls(any_store, reads.CallFilter(start_ms=NOW_MS, end_ms=NOW_MS + 10_000, **kw))
        assert total == len(df)
        return sorted(df["call_id"])

    assert ids(regions=["us-east"]) == ["c1", "c3"]
    assert ids(intents=["talk_to_human"]) == ["c2"]
    assert ids(min_latency_ms=1000) == ["c2"]
    assert ids(words=["it's", "URGENT"]) == ["c2"]
    assert ids(handoff=False, languages=["en"]) == ["c1"]


def test_parameters_are_escaped_not_spliced(any_store):
    any_store.insert("calls", {"call_id": ["x'); DROP TABLE calls; --"], "started_ms": [NOW_MS]})
    df = any_store.query("SELECT count() AS n FROM calls WHERE call_id = {c:String}", {"c": "x'); DROP TABLE calls; --"})
    assert int(df["n"][0]) == 1
    with pytest.raises(QueryParameterError, match="not given: c"):
        any_store.query("SELECT {c:String}", {})


def test_readonly_sql_refuses_writes_and_ddl(any_store):
    for sql in (
        "INSERT INTO calls (call_id) VALUES ('x')",
        "DROP TABLE calls",
        "ALTER TABLE calls DELETE WHERE 1",
        "SELECT 1; DROP TABLE calls",
        "SELECT 1 SETTINGS readonly = 0",
        "SELECT * FROM file('/etc/passwd')",
    ):
        with pytest.raises(ReadOnlyViolation):
            any_store.readonly_query(sql)
    assert "calls" in set(any_store.query("SELECT name FROM system.tables WHERE database = currentDatabase()")["name"])


def test_readonly_sql_bounds_rows_and_time(any_store):
    any_store.insert("calls", {"call_id": [f"c{i}" for i in range(100)], "started_ms": [NOW_MS] * 100})
    df = any_store.readonly_query("SELECT call_id FROM calls", max_rows=25)
    assert len(df) == 25
    # 18.16 forbids every table function in readonly mode, even numbers(): a heavy read of a store table
    heavy = ("SELECT count() FROM numbers(100000000000000)" if any_store.dialect.modern
             else "SELECT sum(cityHash64(x)) FROM calls ARRAY JOIN range(100000000) AS x")
    with pytest.raises(StoreError):
        any_store.readonly_query(heavy, max_seconds=1)


def test_invalid_store_urls_name_the_problem():
    with pytest.raises(InvalidStoreURL, match="scheme must be chdb"):
        open_store("postgres://x")
    with pytest.raises(InvalidStoreURL, match="port is not a number"):
        open_store("clickhouse://h:abc/db")
    with pytest.raises(InvalidStoreURL, match="not a valid database"):
        open_store("clickhouse://h:9000/bad-name")


def test_unreachable_server_is_one_clear_error():
    from tests.clickhouse_server import free_port

    with pytest.raises(StoreUnavailable, match=r"unreachable"):
        open_store(f"clickhouse://default@127.0.0.1:{free_port()}/voxwatch?connect_timeout=1")


def test_cluster_spreads_rows_over_both_shards(cluster_store, clickhouse_cluster):
    from clickhouse_driver import Client

    data = _samples(n_series=16)
    cluster_store.insert("metric_samples", data)
    per_shard = [
        Client("127.0.0.1", port=node.tcp_port).execute(f"SELECT count() FROM {cluster_store.database}.metric_samples_local")[0][0]
        for node in clickhouse_cluster
    ]
    assert sum(per_shard) == len(data["ts_ms"])
    assert all(n > 0 for n in per_shard), per_shard
    # rows of one series stay on one shard (sharded by fingerprint)
    for node in clickhouse_cluster:
        c = Client("127.0.0.1", port=node.tcp_port)
        counts = c.execute(f"SELECT fingerprint, count() FROM {cluster_store.database}.metric_samples_local GROUP BY fingerprint")
        assert all(n == 120 for _, n in counts)


def test_retention_counts_from_storage_not_event_time(store):
    # A replay of an incident from 2023 must survive the 30-day TTL on metric_samples.
    store.insert("metric_samples", {"ts_ms": [1_696_323_600_000], "fingerprint": [1], "metric_id": [1], "value": [0.5]})
    store.optimize("metric_samples")
    assert int(store.scalar("SELECT count() FROM metric_samples")) == 1


def test_a_schema_3_store_moves_its_retention_to_storage_time(store):
    store._execute("DROP TABLE calls")
    store._execute(
        "CREATE TABLE calls (call_id String, started_ms Int64) ENGINE = MergeTree ORDER BY started_ms "
        "TTL toDateTime(intDiv(started_ms, 1000)) + INTERVAL 90 DAY"
    )
    store.migrate()
    ddl = store.scalar("SELECT create_table_query FROM system.tables WHERE database = currentDatabase() AND name = 'calls'")
    assert "stored_at + toIntervalDay(90)" in ddl
    assert "transcript" in store._existing_columns("calls")


def test_nan_stays_nan_where_the_schema_allows_it(any_store):
    any_store.insert(
        "anomaly_findings",
        {"ts_ms": [NOW_MS], "finding_id": ["f"], "score": [0.9], "time_to_exhaustion_s": [float("nan")]},
    )
    assert bool(any_store.scalar("SELECT isNaN(time_to_exhaustion_s) FROM anomaly_findings"))
