"""`voxwatch bench contention` at a small size: the dashboard, the sink and the monitoring path's
fault-to-page are measured idle and beside heavy analyst queries, each saturated pool is paged over
real HTTP. (Ratios are the benchmark's
figures, not asserted here.)"""

from __future__ import annotations

import argparse

import pytest

from voxwatch.bench import contention


@pytest.mark.parametrize("engine", ["chdb", pytest.param("server", marks=pytest.mark.server)])
def test_small_contention_run_measures_every_path(engine, request):
    argv = ["--calls", "500", "--samples", "20000", "--repeat", "4", "--heavy", "2", "--heavy-rows", "2e6"]
    if engine == "server":
        server = request.getfixturevalue("clickhouse_server")
        argv += ["--store", f"clickhouse://default@127.0.0.1:{server.tcp_port}/voxwatch"]
    p = argparse.ArgumentParser()
    contention.add_arguments(p)
    r = contention.run(p.parse_args(argv))
    for phase in ("idle", "loaded"):
        assert all(v is not None and v > 0 for v in r[phase].values()), r[phase]
    assert set(r["ratios_loaded_over_idle"]) == {"overview", "call_search", "sink_flush", "page_delay", "page_path"}
    assert r["heavy_query_status"] == 200 and 200 in r["heavy_queries_status"]
    assert isinstance(r["target_met"], bool)
