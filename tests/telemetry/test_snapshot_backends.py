"""Samples, series, spans and call records written through the sink read back the same from the
embedded store and from a real ClickHouse server (Debian's 18.16)."""

from __future__ import annotations

import pytest

from telemetry import Snapshotter, Telemetry, VirtualClock, series_fingerprint
from telemetry.sink import Sink
from telemetry.traces import llm_attributes

T0 = 1_696_323_600.0


@pytest.fixture(params=["chdb", pytest.param("server", marks=pytest.mark.server)])
def backend_store(request):
    return request.getfixturevalue({"chdb": "store", "server": "server_store"}[request.param])


def test_a_simulated_minute_reads_back_from_the_store(backend_store, tmp_path):
    store = backend_store
    clock = VirtualClock(T0)
    with Sink(store, spool_dir=tmp_path / "spool", flush_interval=60) as sink:
        tel = Telemetry(clock=clock, sink=sink, trace_sample_ratio=1.0, seed=5)
        snap = Snapshotter(tel)
        in_use = tel["voxwatch_pool_connections_in_use"].labels(pool="crm")
        latency = tel["voxwatch_turn_latency_seconds"].labels(region="us-east")
        for second in range(60):
            in_use.set(second % 50)
            latency.observe(0.15 + second / 100)
            if second % 20 == 0:
                call = tel.traces.start_call(f"call-{second}", region="us-east", language="en")
                turn = call.start_turn()
                turn.record_stage("llm", clock.now(), clock.now() + 0.2, llm_attributes("local", "m", 100, 10))
                turn.end(end=clock.now() + 0.3)
                call.end("completed", end=clock.now() + 0.5)
            snap.snapshot_once(clock.now_ms())
            clock.advance(1.0)
        sink.flush()

    fp = series_fingerprint("voxwatch_pool_connections_in_use", {"pool": "crm"})
    values = store.query("SELECT value FROM metric_samples WHERE fingerprint = {fp:UInt64} ORDER BY ts_ms",
                         {"fp": fp})["value"].tolist()
    assert values == [float(s % 50) for s in range(60)]

    count_fp = series_fingerprint("voxwatch_turn_latency_seconds_count", {"region": "us-east"})
    last = store.query("SELECT max(value) AS v FROM metric_samples WHERE fingerprint = {fp:UInt64}",
                       {"fp": count_fp})["v"][0]
    assert last == 60.0

    series = store.query("SELECT count() AS n, uniqExact(fingerprint) AS u FROM metric_series")
    assert series["n"][0] == series["u"][0] == snap.series

    assert store.query("SELECT count() AS n FROM calls")["n"][0] == 3
    spans = store.query("SELECT name, count() AS n FROM spans GROUP BY name ORDER BY name")
    assert dict(zip(spans["name"], spans["n"], strict=True)) == {"conversation": 3, "llm": 3, "turn": 3}


def test_the_sql_that_metrics_show_suggests_runs_on_the_store(backend_store, tmp_path):
    from telemetry.catalog.reference import sql_hint

    clock = VirtualClock(T0)
    with Sink(backend_store, spool_dir=tmp_path / "spool", flush_interval=60) as sink:
        tel = Telemetry(clock=clock, sink=sink)
        tel["voxwatch_pool_saturation_ratio"].labels(pool="orders").set(0.97)
        Snapshotter(tel).snapshot_once(clock.now_ms())
        sink.flush()
    rows = backend_store.query(sql_hint(tel.catalog["voxwatch_pool_saturation_ratio"]))
    assert rows["value"].tolist() == [0.97]
