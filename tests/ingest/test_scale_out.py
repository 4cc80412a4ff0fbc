"""Ingest scales out: two `voxwatch serve` processes, each the OTLP receiver for part of the traffic (as
behind a load balancer or a Collector routing by trace id), write into the two-shard ClickHouse cluster
the tests start; every span and call sent is stored once, spread over both shards."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from tests.ingest.conftest import INGEST, ROOT

pytestmark = [pytest.mark.server, pytest.mark.slow]
CALLS = 40


def _serve(store_url: str, config, tmp_path, name: str):
    from voxwatch.commands.serve import free_port

    port = free_port()
    log = open(tmp_path / f"{name}.log", "w")
    env = dict(os.environ, PYTHONPATH=str(ROOT), VOXWATCH_SPOOL=str(tmp_path / f"spool-{name}"))
    proc = subprocess.Popen([sys.executable, "-m", "voxwatch.cli", "serve", "--config", str(config), "--store", store_url,
                             "--port", str(port)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while "API on" not in (tmp_path / f"{name}.log").read_text():
        assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / f"{name}.log").read_text()[-3000:]
        time.sleep(0.2)
    return proc, f"http://127.0.0.1:{port}"


def test_two_ingest_processes_write_one_cluster(cluster_store, clickhouse_cluster, tmp_path):
    config = tmp_path / "voxwatch.yaml"
    config.write_text(f'tokens:\n  - {{name: bot, token: "{INGEST}", scopes: [ingest]}}\n')
    db = cluster_store.database
    procs = []
    try:
        receivers = []
        for i, node in enumerate(clickhouse_cluster):  # each process talks to its own entry node
            store_url = f"clickhouse://default@127.0.0.1:{node.tcp_port}/{db}?cluster=voxwatch_two_shards"
            proc, api = _serve(store_url, config, tmp_path, f"ingest{i}")
            procs.append(proc)
            receivers.append(api)
        providers = []
        for i, api in enumerate(receivers):
            p = TracerProvider(resource=Resource.create({"service.name": "fleet-bot", "voxwatch.region": f"r{i}"}))
            p.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{api}/v1/traces",
                                                                     headers={"Authorization": f"Bearer {INGEST}"})))
            providers.append(p)
        for c in range(CALLS):  # a call's spans all go to one receiver, as routing by trace id does
            tracer = providers[c % 2].get_tracer("fleet")
            conv = tracer.start_span("conversation")
            ctx = trace.set_span_in_context(conv)
            turn = tracer.start_span("turn", context=ctx, attributes={"turn.number": 1, "turn.user_bot_latency_seconds": 0.4})
            tracer.start_span("llm", context=trace.set_span_in_context(turn)).end()
            turn.end()
            conv.end()
        for p in providers:
            p.shutdown()
        deadline = time.monotonic() + 60
        while True:  # the receivers' sinks flush on their own interval
            spans = cluster_store.scalar("SELECT count() FROM spans")
            calls = cluster_store.scalar("SELECT count() FROM calls")
            if (spans, calls) == (CALLS * 3, CALLS) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert (spans, calls) == (CALLS * 3, CALLS)
        assert sorted(r[0] for r in cluster_store.query_rows("SELECT region FROM calls GROUP BY region")) == ["r0", "r1"]
        from clickhouse_driver import Client

        per_shard = [Client("127.0.0.1", port=n.tcp_port).execute(f"SELECT count() FROM {db}.spans_local")[0][0]
                     for n in clickhouse_cluster]
        assert sum(per_shard) == CALLS * 3 and all(n > 0 for n in per_shard)
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
