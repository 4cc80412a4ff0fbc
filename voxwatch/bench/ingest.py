"""Metric-sample ingest: rows/s through the sink vs the engine's fastest raw path, in the same run.

Embedded store: the raw path is chdb's `INSERT ... SELECT FROM Python(df)` on a pandas DataFrame.
Server store (`--store clickhouse://...`): the raw path is `clickhouse-client` reading the same rows
as TSV from stdin.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time

import numpy as np
import pandas as pd

from telemetry.sink import Sink
from telemetry.store import open_store


def add_arguments(p) -> None:
    p.add_argument("--rows", type=int, default=2_000_000, help="rows to write on each path")
    p.add_argument("--batch", type=int, default=100_000, help="rows per write_columns call")
    p.add_argument("--store", default=None, help="store URL (default: a temporary embedded store)")
    p.add_argument("--repeat", type=int, default=3, help="runs of each path; the best is reported")


def _rows(n: int, series: int = 5000, seed: int = 7) -> dict[str, np.ndarray]:
    """Rows shaped like the snapshotter's: every series sampled once per 1 s tick, each series
    belonging to one metric (the per-minute rollup view groups by series and minute)."""
    rng = np.random.default_rng(seed)
    now = int(time.time() * 1000) // 1000 * 1000
    idx = np.arange(n, dtype=np.int64)
    sid = idx % series
    return {
        "ts_ms": now + (idx // series) * 1000,
        "fingerprint": (sid.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)),
        "metric_id": (sid % 300 + 1).astype(np.uint32),
        "value": rng.random(n),
    }


def _through_sink(store, data: dict, batch: int, spool: str) -> float:
    n = len(data["ts_ms"])
    sink = Sink(store, spool_dir=spool, max_batch_rows=max(batch * 4, 200_000), flush_interval=0.5,
                max_buffer_rows=max(n, 2_000_000))
    t0 = time.perf_counter()
    for i in range(0, n, batch):
        sink.write_columns("metric_samples", {k: v[i : i + batch] for k, v in data.items()})
    sink.flush(timeout=600)
    elapsed = time.perf_counter() - t0
    sink.close()
    if sink.stats.total("spooled") or sink.stats.total("rejected"):
        raise RuntimeError(f"sink did not write everything directly: {sink.stats}")
    return elapsed


def _raw_chdb(store, data: dict) -> float:
    frame = pd.DataFrame(data)  # noqa: F841 - read by chdb's Python() table function
    t0 = time.perf_counter()
    with store._lock:
        store._session.query(f"USE {store.database}")
        store._session.query(
            "INSERT INTO metric_samples (ts_ms, fingerprint, metric_id, value) "
            "SELECT ts_ms, fingerprint, metric_id, value FROM Python(frame)"
        )
    return time.perf_counter() - t0


def _raw_client(store, data: dict) -> float:
    client = shutil.which("clickhouse-client")
    if client is None:
        raise RuntimeError("clickhouse-client is not installed (scripts/bootstrap.sh clickhouse-client)")
    tsv = pd.DataFrame(data).to_csv(sep="\t", header=False, index=False).encode()
    t0 = time.perf_counter()
    subprocess.run(
        [client, "--host", store.host, "--port", str(store.port), "--database", store.database,
         "--query", "INSERT INTO metric_samples (ts_ms, fingerprint, metric_id, value) FORMAT TabSeparated"],
        input=tsv, check=True,
    )
    return time.perf_counter() - t0


def run(args) -> dict:
    tmp = tempfile.mkdtemp(prefix="voxwatch-bench-ingest-")
    url = args.store or f"chdb://{tmp}/store?database=bench_ingest"
    store = open_store(url)
    data = _rows(args.rows)
    try:
        sink_times, raw_times = [], []
        for _ in range(args.repeat):
            store.truncate("metric_samples")
            sink_times.append(_through_sink(store, data, args.batch, os.path.join(tmp, "spool")))
            store.truncate("metric_samples")
            raw_times.append(_raw_chdb(store, data) if url.startswith("chdb") else _raw_client(store, data))
        stored = int(store.scalar("SELECT count() FROM metric_samples"))
        if stored != args.rows:
            raise RuntimeError(f"raw path stored {stored} rows, expected {args.rows}")
    finally:
        store.close()
        shutil.rmtree(tmp, ignore_errors=True)
    sink_rps = args.rows / min(sink_times)
    raw_rps = args.rows / min(raw_times)
    return {
        "store": url.split("?")[0] if url.startswith("clickhouse") else "chdb (embedded)",
        "rows": args.rows,
        "sink_rows_per_s": round(sink_rps),
        "raw_rows_per_s": round(raw_rps),
        "ratio": round(sink_rps / raw_rps, 3),
        "targets": {"sink_rows_per_s": 1_000_000, "ratio": 0.5},
    }
