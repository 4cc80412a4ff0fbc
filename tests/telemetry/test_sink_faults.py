"""The sink's writer never dies (issue 19): a bad spool file is quarantined with its reason and the
rest goes on; a spool folder that vanished is made again; a spool that cannot be written keeps the
batch in memory until the store answers; the spool belongs to its store."""

from __future__ import annotations

import logging
import shutil
import time

import pytest

from telemetry.sink import Sink, default_spool_dir
from telemetry.store import open_store
from tests.telemetry.test_sink import _batch, _count_and_checksum


def _spool_one_file(store, spool) -> None:
    """A spool file as a crashed process leaves it."""
    first = Sink(store, spool_dir=spool, flush_interval=60, max_buffer_rows=1)
    first.write_columns("metric_samples", _batch(0, 50))  # over the buffer: straight to disk
    first._stopping = True
    with first._cond:
        first._cond.notify_all()
    first._thread.join(5)


def test_a_truncated_spool_file_is_quarantined_and_ingestion_goes_on(store, tmp_path, caplog):
    from telemetry import Telemetry

    spool = tmp_path / "spool"
    _spool_one_file(store, spool)
    good = sorted(spool.glob("*.arrow"))[0]
    bad = spool / ("0" * 20 + good.name[20:])  # the same name with an earlier time: replayed first
    bad.write_bytes(good.read_bytes()[:40])  # a truncated file, older than the good one
    tel = Telemetry()
    with caplog.at_level(logging.ERROR, logger="telemetry.sink"):
        with Sink(store, spool_dir=spool, telemetry=tel, flush_interval=0.05) as sink:
            sink.drain(timeout=30)
            sink.write_columns("metric_samples", _batch(50, 1000))  # later rows still arrive
            sink.flush(timeout=30)
            assert sink._thread.is_alive()
            assert [p.name for p in sink.quarantined_files()] == [bad.name]
            reason = (sink.quarantine_dir / f"{bad.name}.reason.txt").read_text()
            assert "ArrowInvalid" in reason
    assert _count_and_checksum(store) == (1050, float(sum(range(1050))))
    assert tel.registry.get_sample_value("voxwatch_sink_spool_quarantined_total", {"reason": "unreadable"}) == 1
    assert any("quarantined" in r.message for r in caplog.records)


def test_a_spool_file_naming_no_table_is_quarantined(store, tmp_path):
    spool = tmp_path / "spool"
    _spool_one_file(store, spool)
    src = sorted(spool.glob("*.arrow"))[0]
    shutil.copy(src, spool / src.name.replace("metric_samples", "no_such_table"))
    with Sink(store, spool_dir=spool) as sink:
        sink.drain(timeout=30)
        assert len(sink.quarantined_files()) == 1
    assert _count_and_checksum(store) == (50, float(sum(range(50))))


def test_the_spool_belongs_to_its_store(store, tmp_path):
    d = default_spool_dir(store)
    assert str(d).startswith(store.path + ".spool")
    assert d.name == store.database
    other = open_store(f"chdb://{store.path}?database=other_{int(time.time())}")
    try:
        assert default_spool_dir(other) != d
    finally:
        other.drop_database()
        other.close()


@pytest.mark.server
def test_outage_with_the_spool_folder_removed_loses_nothing(clickhouse_server, tmp_path):
    db = f"spoolgone_{int(time.time())}"
    store = open_store(f"clickhouse://default@127.0.0.1:{clickhouse_server.tcp_port}/{db}?connect_timeout=1")
    spool = tmp_path / "spool"
    sink = Sink(store, spool_dir=spool, flush_interval=0.05, retry_initial=0.1, retry_max=0.5)
    try:
        clickhouse_server.stop()
        shutil.rmtree(spool)  # as a cleanup job, or a full disk, would
        sink.write_columns("metric_samples", _batch(0, 200))
        sink.flush(timeout=30)
        assert sink.stats.total("spooled") == 200
        clickhouse_server.start()
        sink.drain(timeout=60)
        assert sink._thread.is_alive()
        assert _count_and_checksum(store) == (200, float(sum(range(200))))
    finally:
        sink.close()
        store._execute(f"DROP DATABASE IF EXISTS {db}")
        store.close()


@pytest.mark.server
def test_a_spool_that_cannot_be_written_keeps_the_rows_in_memory(clickhouse_server, tmp_path):
    db = f"spoolro_{int(time.time())}"
    store = open_store(f"clickhouse://default@127.0.0.1:{clickhouse_server.tcp_port}/{db}?connect_timeout=1")
    spool = tmp_path / "spool"
    sink = Sink(store, spool_dir=spool, flush_interval=0.05, retry_initial=0.1, retry_max=0.5)
    try:
        clickhouse_server.stop()
        shutil.rmtree(spool)
        spool.write_text("not a folder")  # the spool path cannot become a folder: every spool write fails
        sink.write_columns("metric_samples", _batch(0, 300))
        time.sleep(1.0)
        assert sink._thread.is_alive()
        assert sink.pending_rows == 300  # held, not lost
        assert sink.stats.total("spooled") == 0
        clickhouse_server.start()
        sink.flush(timeout=60)
        assert _count_and_checksum(store) == (300, float(sum(range(300))))
    finally:
        sink.close()
        store._execute(f"DROP DATABASE IF EXISTS {db}")
        store.close()
