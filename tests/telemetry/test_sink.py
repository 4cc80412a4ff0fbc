"""The sink: batches, bounded memory, rejected rows, spooling through an outage, exactly-once replay."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from telemetry.sink import Sink
from telemetry.store import StoreError, open_store

NOW_MS = int(time.time() * 1000)


def _batch(start: int, n: int) -> dict:
    idx = np.arange(start, start + n, dtype=np.int64)
    return {
        "ts_ms": NOW_MS + idx,
        "fingerprint": (idx % 97).astype(np.uint64),
        "metric_id": np.full(n, 3, dtype=np.uint32),
        "value": idx.astype(np.float64),
    }


def _count_and_checksum(store) -> tuple[int, float]:
    df = store.query("SELECT count() AS n, sum(value) AS s FROM metric_samples")
    return int(df["n"][0]), float(df["s"][0])


def test_rows_arrive_after_flush(store, tmp_path):
    with Sink(store, spool_dir=tmp_path / "spool", flush_interval=60) as sink:
        sink.write_columns("metric_samples", _batch(0, 1000))
        sink.write("calls", [{"call_id": "a", "started_ms": NOW_MS, "intents": ["billing"]}])
        sink.flush()
        assert _count_and_checksum(store) == (1000, float(sum(range(1000))))
        assert store.query("SELECT intents FROM calls")["intents"][0].tolist() == ["billing"]
        assert sink.stats.total("written") == 1001


def test_flushes_by_interval_without_being_asked(store, tmp_path):
    with Sink(store, spool_dir=tmp_path / "spool", flush_interval=0.1) as sink:
        sink.write_columns("metric_samples", _batch(0, 10))
        deadline = time.monotonic() + 10
        while _count_and_checksum(store)[0] < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _count_and_checksum(store)[0] == 10


def test_bad_rows_are_rejected_alone_with_a_reason(store, tmp_path):
    with Sink(store, spool_dir=tmp_path / "spool") as sink:
        batch = _batch(0, 6)
        batch["value"] = np.array([1.0, np.nan, 3.0, np.inf, 5.0, -np.inf])
        assert sink.write_columns("metric_samples", batch) == 3
        sink.write("calls", [{"call_id": "ok", "started_ms": NOW_MS, "turns": 2}, {"call_id": "bad", "started_ms": NOW_MS, "turns": "many"}])
        sink.flush()
    assert _count_and_checksum(store) == (3, 9.0)
    assert list(store.query("SELECT call_id FROM calls")["call_id"]) == ["ok"]
    assert sink.stats.rejected["metric_samples"] == 3
    assert sink.stats.rejected_reasons["metric_samples: value: non-finite value"] == 3
    assert sink.stats.rejected_reasons["calls: turns: not a number"] == 1


def test_unknown_table_or_column_is_a_clear_error(store, tmp_path):
    with Sink(store, spool_dir=tmp_path / "spool") as sink:
        with pytest.raises(StoreError, match="unknown table"):
            sink.write("nope", [{"a": 1}])
        with pytest.raises(StoreError, match="no column"):
            sink.write("calls", [{"call_idd": "x"}])


def test_memory_is_bounded_by_spooling_past_the_limit(store, tmp_path):
    sink = Sink(store, spool_dir=tmp_path / "spool", flush_interval=60, max_buffer_rows=500)
    try:
        for i in range(10):
            sink.write_columns("metric_samples", _batch(i * 200, 200))
            assert sink.pending_rows <= 500
        sink.drain()
        assert _count_and_checksum(store) == (2000, float(sum(range(2000))))
        assert sink.stats.total("spooled") > 0
        assert sink.stats.total("replayed") == sink.stats.total("spooled")
    finally:
        sink.close()


def test_spool_left_by_a_previous_process_is_replayed(store, tmp_path):
    spool = tmp_path / "spool"
    first = Sink(store, spool_dir=spool, flush_interval=60, max_buffer_rows=1)
    first.write_columns("metric_samples", _batch(0, 50))  # over the buffer: straight to disk
    first._stopping = True  # die without flushing or replaying (as a crash would)
    with first._cond:
        first._cond.notify_all()
    first._thread.join(5)
    assert list(spool.glob("*.arrow"))
    with Sink(store, spool_dir=spool) as second:
        second.drain()
    assert _count_and_checksum(store) == (50, float(sum(range(50))))


@pytest.mark.server
def test_server_outage_loses_nothing_and_duplicates_nothing(clickhouse_server, tmp_path):
    db = f"outage_{int(time.time())}"
    url = f"clickhouse://default@127.0.0.1:{clickhouse_server.tcp_port}/{db}?connect_timeout=1"
    store = open_store(url)
    sink = Sink(store, spool_dir=tmp_path / "spool", flush_interval=0.05, retry_initial=0.1, retry_max=0.5)
    total, n = 0, 500
    stop = threading.Event()

    def produce():
        nonlocal total
        i = 0
        while not stop.is_set():
            sink.write_columns("metric_samples", _batch(i * n, n))
            total += n
            i += 1
            time.sleep(0.01)

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        time.sleep(0.5)
        clickhouse_server.stop()  # the outage, while the sink is writing
        time.sleep(1.5)
        assert sink.stats.total("spooled") > 0
        clickhouse_server.start()
        time.sleep(0.5)
    finally:
        stop.set()
        producer.join()
    sink.drain(timeout=60)
    sink.close()
    expected = (total, float(sum(range(total))))
    assert _count_and_checksum(store) == expected
    assert sink.stats.total("replayed") == sink.stats.total("spooled")
    store._execute(f"DROP DATABASE IF EXISTS {db}")
    store.close()


def test_sink_and_store_report_through_the_catalog_metrics(store, tmp_path):
    from telemetry import Telemetry

    tel = Telemetry()
    store.telemetry, store.source = tel, "anomaly"
    with Sink(store, spool_dir=tmp_path / "spool", telemetry=tel) as sink:
        batch = _batch(0, 4)
        batch["value"] = np.array([1.0, np.nan, 3.0, 4.0])
        sink.write_columns("metric_samples", batch)
        sink.flush()
        store.query("SELECT count() FROM metric_samples")
        sink._gauges()

    def value(name, **labels):
        return tel.registry.get_sample_value(name, labels)

    assert value("voxwatch_sink_rows_written_total", table="metric_samples") == 3
    assert value("voxwatch_sink_rows_rejected_total", table="metric_samples", reason="non_finite") == 1
    assert value("voxwatch_sink_batch_rows_count", table="metric_samples") == 1
    assert value("voxwatch_sink_store_up") == 1
    assert value("voxwatch_sink_queue_capacity_rows") == sink.max_buffer_rows
    assert value("voxwatch_store_queries_total", source="anomaly") >= 1


def test_typed_batches_skip_the_value_checks_but_not_the_types(store, tmp_path):
    with Sink(store, spool_dir=tmp_path / "spool", flush_interval=60) as sink:
        batch = _batch(0, 100)
        assert sink.write_typed("metric_samples", batch) == 100
        with pytest.raises(StoreError):
            sink.write_typed("metric_samples", {**batch, "value": ["not a number"] * 100})
        with pytest.raises(StoreError, match="unknown table"):
            sink.write_typed("nope", batch)
        sink.flush()
        assert _count_and_checksum(store)[0] == 100
