"""Soak: live calls on the wall clock for `--minutes`, the dashboard polling and an analyst's query every few seconds.

The simulator runs `--calls` concurrent calls (steady traffic) with metrics snapshotted every second
and call records and spans going through the sink into the store (an embedded one, or a server's with
`--store clickhouse://...`), served at the same time
by the query API as `voxwatch serve` serves it (lanes, admission gate) on a real uvicorn. A dashboard
client asks for the Overview and a call search every `--poll-s` seconds; an analyst runs a read-only
query every `--analyst-s` seconds. Figures: resident memory over time and its growth after the
warm-up (the first 5 minutes, or the first third of a shorter run; from a line fitted to the
samples, see `_memory_trend`), spool bytes, rows handed to the
sink vs rows found in the store, event-loop lag P99 (the idle loop's, measured first in the same run,
is the baseline), and the dashboard's and analyst's answers. Targets at 30 minutes: RSS growth < 5%
after the warm-up, 0 rows lost, loop lag P99 < 50 ms. The simulator's bounded caches start full, as
in a process that has run for hours (`_fill_caches`), so their filling is not read as growth.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from array import array
from pathlib import Path

import numpy as np


def add_arguments(p) -> None:
    p.add_argument("--minutes", type=float, default=30.0, help="wall minutes of live load")
    p.add_argument("--calls", type=int, default=15_000, help="concurrent calls")
    p.add_argument("--poll-s", type=float, default=2.0, help="dashboard refresh interval")
    p.add_argument("--analyst-s", type=float, default=5.0, help="seconds between an analyst's queries")
    p.add_argument("--trace-sample", type=float, default=0.02, help="share of calls whose spans are stored")
    p.add_argument("--store", help="an empty chdb:// store to fill, or a clickhouse://... server (the bench makes a "
                   "database of its own there and drops it afterwards); default: a temporary chdb folder, removed afterwards")


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _spool_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("*.arrow")) if folder.exists() else 0


def _p(xs: list[float], q: float) -> float | None:
    return round(float(np.percentile(xs, q)), 1) if xs else None


class _SoakLoad:
    """The load beside the calls: a dashboard polling the API, an analyst querying it, and a sampler of
    the process's memory, the spool and the engine's own memory; each runs on its own thread."""

    ANALYST_SQL = "SELECT region, count() AS calls, avg(latency_p95_ms) AS p95 FROM calls GROUP BY region ORDER BY calls DESC"

    def __init__(self, args, api_url: str, token: str, spool: Path, control, engine_in_process: bool = True) -> None:
        self.args, self.url, self.token, self.spool, self.control = args, api_url + "/api/v1", token, spool, control
        self.stop = threading.Event()
        self.dashboard_ms: list[float] = []
        self.dashboard_status: dict[int, int] = {}
        self.analyst_status: dict[int, int] = {}
        self.rss: list[tuple[float, int]] = []
        self.engine: list[tuple[float, int]] = []
        self.spool_max = 0
        # on a server, system.metrics' MemoryTracking is the server's queries in flight, not a part of this process
        self.engine_in_process = engine_in_process
        self.threads: list[threading.Thread] = []

    @staticmethod
    def _count(d: dict, code: int) -> None:
        d[code] = d.get(code, 0) + 1

    def _client(self):
        import httpx

        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=60)

    def dashboard(self) -> None:
        with self._client() as c:
            while not self.stop.wait(self.args.poll_s):
                for path in ("/overview", "/calls?limit=20"):
                    t0 = time.perf_counter()
                    r = c.get(path)
                    self.dashboard_ms.append((time.perf_counter() - t0) * 1000)
                    self._count(self.dashboard_status, r.status_code)

    def analyst(self) -> None:
        with self._client() as c:
            while not self.stop.wait(self.args.analyst_s):
                self._count(self.analyst_status, c.post("/sql", json={"sql": self.ANALYST_SQL}).status_code)

    def sampler(self, t0: float) -> None:
        while not self.stop.wait(1.0):
            self.rss.append((time.monotonic() - t0, _rss_bytes()))
            self.spool_max = max(self.spool_max, _spool_bytes(self.spool))
            if self.engine_in_process and len(self.rss) % 10 == 0:  # what the engine holds in this process (chdb)
                try:
                    self.engine.append((self.rss[-1][0], int(self.control.scalar(
                        "SELECT value FROM system.metrics WHERE metric = 'MemoryTracking'") or 0)))
                except Exception:  # noqa: BLE001 - a figure, not the run
                    pass

    def start(self, t0: float) -> None:
        self.threads = [threading.Thread(target=f, daemon=True) for f in (self.dashboard, self.analyst)]
        self.threads.append(threading.Thread(target=self.sampler, args=(t0,), daemon=True))
        for t in self.threads:
            t.start()

    def join(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(60)


def _fill_caches(sim) -> int:
    """Start the simulator's caches full, as a process that has served calls for hours has them.

    Each cache is bounded (its capacity), and its key space (callers, products, answers) is larger,
    so a long run holds every cache at its capacity; in the first 30 minutes they are still filling
    (customer history at ~1,000 entries a minute towards 200,000: ~0.5 MB/min of the RSS slope).
    The placeholders are keys no caller asks for (negative numbers), least recently used, so the
    callers' own entries replace them first; hits and misses are the callers' alone."""
    filled = 0
    for cache in sim.pipeline.caches:
        for i in range(cache.capacity - len(cache)):
            cache.put(-1 - i, {"placeholder": i}, 0.0)
            filled += 1
    return filled


def _memory_trend(rss: list[tuple[float, int]], warmup: float) -> dict:
    """Resident memory after the warm-up: its growth and slope from a straight line fitted to every
    sample (one a second), and, for comparison, from the first and last sample alone.

    The fitted growth is the target's figure: the process's RSS wobbles by about 2% from second to
    second (the allocator returning and taking pages, the sink's batches, the analyst's answers), so
    two single samples can differ by 4% on a flat line, and a slow leak is a trend, not an endpoint."""
    after = [(s, b) for s, b in rss if s >= warmup]
    if len(after) < 2:
        return {"rss_growth_after_warmup_pct": None, "rss_slope_after_warmup_mb_per_min": None,
                "rss_growth_first_last_sample_pct": None}
    minutes = np.array([s for s, _ in after]) / 60
    mb = np.array([b for _, b in after]) / 2**20
    slope, intercept = np.polyfit(minutes, mb, 1)
    start, end = intercept + slope * minutes[0], intercept + slope * minutes[-1]
    return {"rss_growth_after_warmup_pct": round(float((end - start) / start * 100), 2),
            "rss_slope_after_warmup_mb_per_min": round(float(slope), 2),
            "rss_growth_first_last_sample_pct": round(float((mb[-1] - mb[0]) / mb[0] * 100), 2)}


def _report(args, summary: dict, load: _SoakLoad, warmup: float, dropped: dict, lag: list[float], idle: list[float]) -> dict:
    from voxwatch.bench.simulate import _pcts

    memory = _memory_trend(load.rss, warmup)
    growth = memory["rss_growth_after_warmup_pct"]
    rss, engine = load.rss, load.engine
    result = {
        "minutes": args.minutes, "calls": args.calls, "turns": summary["turns"]["total"],
        "rss_mb": [[round(s), round(b / 2**20)] for s, b in rss[:: max(1, len(rss) // 30)]],
        **memory,
        "engine_memory_mb": [[round(s), round(b / 2**20)] for s, b in engine[:: max(1, len(engine) // 15)]] or None,
        "warmup_s": round(warmup), "spool_max_bytes": load.spool_max,
        **dropped,
        "loop_lag": _pcts(lag), "idle_loop_lag": _pcts(idle),
        "dashboard_p95_ms": _p(load.dashboard_ms, 95), "dashboard_requests": dict(load.dashboard_status),
        "analyst_queries": dict(load.analyst_status),
    }
    result["targets"] = {"rss_growth_pct": 5, "rows_lost": 0, "loop_lag_p99_ms": 50}
    result["target_met"] = bool(
        growth is not None and growth < 5 and dropped["dropped"] == 0
        and (result["loop_lag"]["p99_ms"] or 0) < 50
    )
    return result


def run(args) -> dict:
    from pipeline.simulation.simulator import Simulation
    from telemetry.clock import WallClock
    from telemetry.store import open_store
    from voxwatch.bench import bench_store_url, drop_bench_database
    from voxwatch.bench.simulate import (
        _dropped,
        _idle_lag,
        _run_probing_lag,
        _steady_scenario,
        _telemetry_path,
    )
    from voxwatch.commands.serve import start_api
    from voxwatch.config import ApiToken, Scope, Settings
    from voxwatch.context import AppContext

    seconds = args.minutes * 60
    warmup = min(300.0, seconds / 3)
    root = tempfile.mkdtemp(prefix="voxwatch-bench-soak-")
    spool = Path(root) / "spool"
    url, _ = bench_store_url(args.store or f"chdb://{root}/store", "soak")
    store = open_store(url)
    clock = WallClock()
    sink, tel, snap = _telemetry_path(store.with_lane("monitor"), clock, str(spool), 1)
    token = "soak-read-token-0123456789"
    ctx = AppContext(store=store.with_lane("dashboard"), sink=sink, clock=clock, telemetry=tel,
                     settings=Settings(tokens=[ApiToken(name="soak", token=token, scopes=[Scope.READ])]))
    api = start_api(ctx)
    load = _SoakLoad(args, api.url, token, spool, store.with_lane("control"), engine_in_process=url.startswith("chdb"))
    try:
        idle = _idle_lag(seconds)
        sim = Simulation(_steady_scenario(args.calls), clock=clock, telemetry=tel, sink=sink, seed=1,
                         trace_sample_rate=args.trace_sample, snapshot=lambda now: snap.snapshot_once(int(now * 1000)))
        filled = _fill_caches(sim)
        lag = array("d")  # 100 samples a second: floats in a list would add to the memory being measured
        load.start(time.monotonic())
        summary = _run_probing_lag(sim, seconds, lag)
        load.join()
        tel.flush()
        sink.flush()
        return {**_report(args, summary, load, warmup, _dropped(store, sink), lag, idle),
                "store": url.split("?")[0] if url.startswith("clickhouse") else "chdb", "cache_entries_filled_at_start": filled}
    finally:
        load.stop.set()
        api.stop()
        sink.close()
        drop_bench_database(store, url)
        store.close()
        shutil.rmtree(root, ignore_errors=True)
