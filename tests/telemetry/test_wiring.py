"""`open_runtime` wires telemetry, sink and store once: the sink's and the store's own metrics land in
the same Telemetry whose call records and spans the sink writes, so no command can forget a piece."""

from __future__ import annotations

from telemetry import open_runtime
from telemetry.clock import VirtualClock


def test_the_sink_and_the_store_report_into_the_runtimes_telemetry(store, tmp_path):
    clock = VirtualClock(1_700_000_000.0)
    rt = open_runtime(clock=clock, store=store, spool_dir=tmp_path / "spool", source="simulate")
    assert rt.sink.telemetry is rt.telemetry and rt.store.telemetry is rt.telemetry and rt.telemetry.sink is rt.sink
    call = rt.telemetry.traces.start_call("wired-1", region="eu-west", sampled=False)
    call.end("completed")
    rt.flush()
    assert store.query("SELECT count() AS n FROM calls WHERE call_id = 'wired-1'")["n"][0] == 1
    get = rt.telemetry.registry.get_sample_value
    assert get("voxwatch_sink_rows_written_total", {"table": "calls"}) == 1.0
    assert get("voxwatch_store_queries_total", {"source": "simulate"}) >= 1.0
    rt.close()
    rt.close()  # idempotent


def test_without_a_store_there_is_no_sink_and_metrics_still_record():
    rt = open_runtime(clock=VirtualClock(0.0), store="none")
    assert rt.sink is None and rt.store is None
    row = rt.telemetry.traces.start_call("alone").end("completed")
    assert row["call_id"] == "alone"  # the row is still built
    rt.close()


def test_a_store_url_is_opened_here_and_closed_with_the_runtime(store_url, tmp_path):
    rt = open_runtime(store=store_url, spool_dir=tmp_path / "spool")
    assert rt.owns_store and rt.store.query("SELECT 1 AS x")["x"][0] == 1
    rt.close()
