"""Contention: the dashboards and the sink with no analyst query running, then with 4 heavy ones.

Fills a store (`voxwatch bench query`'s generator: `--calls` calls, `--samples` samples over a day),
serves it as `voxwatch serve` does (lanes, admission gate; analysts' limits: the service's default at
once (half the cores; `--sql-concurrent` to set it), 2 waiting) on
a real uvicorn, and measures over HTTP the Overview and a call search (P95 of `--repeat` requests each),
the sink's flush latency (a batch of calls rows written and flushed) and the monitoring path's delay
from a fault to its page (`_PagePath`: the alert engine on the service's sink and monitoring lane at
the live loop's 1 s cadence, a webhook over real HTTP; and the path's own time without the cadence),
first idle (the baseline,
same run), then while 4 threads keep a heavy analyst query (each several seconds: `--heavy-rows`
rows hashed: numbers on chdb, samples repeated on 18.16, which refuses table functions to
read-only SQL) running or queued. A fifth client's queries meanwhile find the queue full: their 429
latency is reported too. Ratios are loaded/idle P95; the target is <= 1.5 for the Overview and the
page delay, and a 429's P95 under 50 ms.
`--store clickhouse://...` measures the server backend instead of a temporary chdb folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time

import numpy as np


def add_arguments(p) -> None:
    p.add_argument("--calls", type=int, default=100_000, help="calls to generate (over one day)")
    p.add_argument("--samples", type=int, default=5_000_000, help="metric samples to generate (over one day)")
    p.add_argument("--repeat", type=int, default=30, help="requests of each kind per phase")
    p.add_argument("--heavy", type=int, default=4, help="concurrent heavy analyst queries in the loaded phase")
    p.add_argument("--heavy-rows", type=float, default=1e8, help="rows each heavy query hashes")
    p.add_argument("--store", help="clickhouse://... server to use (default: a temporary chdb folder)")
    p.add_argument("--sql-concurrent", type=int, default=None,
                   help="analysts' queries running at once (default: the service's, from the CPU count)")


def _p95(xs: list[float]) -> float | None:
    return round(float(np.percentile(xs, 95)), 1) if xs else None


PAGE_RULES = """
groups:
  - name: bench-contention
    interval: 50ms
    rules:
      - alert: BenchPoolSaturated
        type: threshold
        expr: {metric: voxwatch_pool_saturation_ratio}
        aggregation: last
        window: 5s
        by: [pool]
        threshold: 0.9
        severity: page
route:
  receiver: pager
  group_by: [pool]
  group_wait: 0s
  group_interval: 1s
receivers:
  - {name: pager, type: webhook, url: "%s", secret: "bench-contention-secret"}
"""


class _PagePath:
    """The monitoring path from a fault to its page, as `voxwatch serve` runs it: the alert engine with
    the service's sink as its writer and the store's monitoring lane for its state, ticked once a
    second on a loop of its own (`MonitoringLoop.run`'s cadence), a threshold rule, and a webhook over
    real HTTP to a local receiver. Each fault is a pool that saturates (a new series, so a new group
    that pages at once: group_wait 0s), arriving at a random moment between two ticks, as a fault
    does. Two figures: the delay from the fault's sample to its page at the live cadence (what the
    on-call engineer waits: the target), and the path's own time (the engine ticked at once on the
    sample, no cadence: its CPU and I/O, which the cadence would hide)."""

    TICK_S = 1.0

    def __init__(self, ctx, folder: str) -> None:
        import asyncio
        import random
        from types import SimpleNamespace

        from alerts import load_rules
        from alerts.engine import AlertEngine
        from voxwatch.bench.alerts import PageReceiver

        self.pages = PageReceiver(SimpleNamespace(now=time.perf_counter))
        rules = os.path.join(folder, "bench-contention-rules.yaml")
        with open(rules, "w") as f:
            f.write(PAGE_RULES % (self.pages.url + "/page"))
        self.engine = AlertEngine(load_rules([rules]), ctx.clock, writer=ctx.sink, store=ctx.store.with_lane("monitor"))
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="bench-page-path", daemon=True).start()
        self.ticker = asyncio.run_coroutine_threadsafe(self._tick_forever(), self.loop)
        self.faults = 0
        self.rng = random.Random(7)

    async def _tick_forever(self) -> None:
        import asyncio

        while True:
            await self.engine.tick()
            await asyncio.sleep(self.TICK_S)

    def _paged(self, pool: str, after: float) -> float | None:
        times = [t for _, t, doc in self.pages.got if t >= after and doc.get("status") == "firing"
                 and any(a.get("labels", {}).get("pool") == pool for a in doc.get("alerts", []))]
        return min(times) if times else None

    async def _fault(self, at_once: bool) -> tuple[str, float]:
        self.faults += 1
        pool = f"bench-{self.faults}"
        t0 = time.perf_counter()
        self.engine.ingest([("voxwatch_pool_saturation_ratio", {"pool": pool}, 0.97)])
        if at_once:
            await self.engine.tick()
        return pool, t0

    def _measure(self, at_once: bool, timeout: float = 30.0) -> float:
        import asyncio

        # a fault's moment is not the loop's; at once, the rule group must be due again (every 50 ms)
        time.sleep(0.06 if at_once else self.rng.uniform(0, self.TICK_S))
        pool, t0 = asyncio.run_coroutine_threadsafe(self._fault(at_once), self.loop).result(60)
        while time.perf_counter() - t0 < timeout:
            got = self._paged(pool, t0)
            if got is not None:
                return (got - t0) * 1000
            time.sleep(0.002)
        raise RuntimeError(f"a saturated pool was not paged within {timeout:.0f} s")

    def delay_ms(self) -> float:
        """A fault's delay to its page at the live loop's cadence (ms)."""
        return self._measure(at_once=False)

    def path_ms(self) -> float:
        """The same with the engine ticked at once: the path's own time (ms)."""
        return self._measure(at_once=True)

    def close(self) -> None:
        import asyncio

        self.ticker.cancel()
        asyncio.run_coroutine_threadsafe(self.engine.aclose(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.pages.close()


def _phase(http, sink, hour, repeat: int, pager: _PagePath) -> dict:
    overview, search, flush, page, path = [], [], [], [], []
    for i in range(repeat):
        t0 = time.perf_counter()
        http.get("/overview", params={"start_ms": hour[0], "end_ms": hour[1], "step_s": 60}).raise_for_status()
        overview.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        http.get("/calls", params={"start_ms": hour[1] - 86_400_000, "end_ms": hour[1], "region": "eu-west",
                                   "min_latency_ms": 300, "limit": 5}).raise_for_status()
        search.append((time.perf_counter() - t0) * 1000)
        ids = [f"bench-{time.time_ns()}-{i}-{k}" for k in range(500)]
        sink.write_columns("calls", {"call_id": ids, "started_ms": [hour[1]] * 500, "ended_ms": [hour[1]] * 500})
        t0 = time.perf_counter()
        sink.flush()
        flush.append((time.perf_counter() - t0) * 1000)
        page.append(pager.delay_ms())
        path.append(pager.path_ms())
    return {"overview_p95_ms": _p95(overview), "call_search_p95_ms": _p95(search), "sink_flush_p95_ms": _p95(flush),
            "page_delay_p95_ms": _p95(page), "page_path_p95_ms": _p95(path)}


def _heavy_sql(store, args, info: dict) -> str:
    """An analyst query that runs for seconds and that the SQL guard admits on this engine."""
    if store.dialect.modern:  # the query: a number generator
        return f"SELECT count() FROM numbers_mt({int(args.heavy_rows)}) WHERE NOT ignore(sipHash64(number))"
    # 18.16 refuses table functions under readonly=1: the store's own samples, each repeated
    # `rows / samples` times (ARRAY JOIN streams; a join would build its right side in memory)
    k = max(1, int(args.heavy_rows) // max(1, info["samples"]))
    return (f"SELECT count() FROM metric_samples ARRAY JOIN range({k}) AS r "
            "WHERE NOT ignore(sipHash64(value, fingerprint, r))")


def _loaded_phase(args, api_url: str, analyst: str, heavy_sql: str, ctx, http, hour, pager, result: dict) -> None:
    """`args.heavy` analysts loop on the heavy query while the dashboard phase is measured again; then
    the queries past the admission limit are timed (they must be refused quickly)."""
    import httpx

    stop = threading.Event()
    heavy_done: list[tuple[int, float]] = []

    def analyst_loop():
        with httpx.Client(headers={"Authorization": f"Bearer {analyst}"}, timeout=120) as c:
            while not stop.is_set():
                t = time.perf_counter()
                resp = c.post(api_url + "/api/v1/sql", json={"sql": heavy_sql})
                heavy_done.append((resp.status_code, time.perf_counter() - t))
                if resp.status_code == 429:
                    time.sleep(0.2)

    threads = [threading.Thread(target=analyst_loop, daemon=True) for _ in range(args.heavy)]
    for t in threads:
        t.start()
    gate = ctx.extras["analyst_runner"].gate  # made by the first analyst query
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and sum(gate.stats.running.values()) < gate.max_total:
        time.sleep(0.05)
    result["loaded"] = _phase(http, ctx.sink, hour, args.repeat, pager)
    refused = []
    with httpx.Client(headers={"Authorization": f"Bearer {analyst}"}, timeout=60) as c:
        for _ in range(args.repeat):
            t = time.perf_counter()
            resp = c.post(api_url + "/api/v1/sql", json={"sql": heavy_sql})
            if resp.status_code == 429:
                refused.append((time.perf_counter() - t) * 1000)
    result["rejected_429_p95_ms"] = _p95(refused)
    result["rejected_429_count"] = len(refused)
    stop.set()
    for t in threads:
        t.join(120)
    result["heavy_queries_completed"] = sum(1 for code, _ in heavy_done if code == 200)
    result["heavy_queries_status"] = sorted({code for code, _ in heavy_done})


def _verdict(result: dict, ctx) -> dict:
    idle, loaded = result["idle"], result["loaded"]
    result["ratios_loaded_over_idle"] = {
        k.replace("_p95_ms", ""): round(loaded[k] / idle[k], 2) if idle[k] else None for k in idle
    }
    result["lanes"] = ctx.store.lane_stats()
    result["target_overview_ratio"] = 1.5
    result["target_page_delay_ratio"] = 1.5
    result["target_429_p95_ms"] = 50
    result["target_met"] = bool(
        (result["ratios_loaded_over_idle"]["overview"] or 99) <= 1.5
        and (result["ratios_loaded_over_idle"]["page_delay"] or 99) <= 1.5
        and result["rejected_429_p95_ms"] is not None and result["rejected_429_p95_ms"] < 50
    )
    result["load_avg_1m_after"] = round(os.getloadavg()[0], 2)
    return result


def run(args) -> dict:
    import httpx

    from telemetry.store import open_store
    from voxwatch.bench import bench_store_url, drop_bench_database
    from voxwatch.bench.query import generate
    from voxwatch.commands.serve import build_context, start_api
    from voxwatch.config import ApiToken, QueryLimits, Scope, Settings

    url, folder = bench_store_url(args.store, "contention")
    spool = tempfile.mkdtemp(prefix="voxwatch-bench-contention-spool-")
    os.environ.setdefault("VOXWATCH_SPOOL", spool)
    store = open_store(url)
    concurrent = {} if args.sql_concurrent is None else {"sql_max_concurrent": args.sql_concurrent}
    token, analyst = "bench-read-token-0123456789", "bench-analyst-token-0123456789"
    settings = Settings(store=url, tokens=[ApiToken(name="dashboard", token=token, scopes=[Scope.READ]),
                                           ApiToken(name="analyst", token=analyst, scopes=[Scope.READ])],
                        limits=QueryLimits(**concurrent, sql_max_per_token=args.heavy, sql_max_queue=2,
                                           sql_max_seconds=60))
    ctx = None
    try:
        end_ms = int(time.time() // 60 * 60 * 1000)
        info = generate(store, args.calls, args.samples, end_ms)
        ctx = build_context(settings, store=store)
        api = start_api(ctx)
        pager = None
        hour = (end_ms - 3_600_000, end_ms)
        result: dict = {"store": url.split("?")[0] if args.store else "chdb (temporary folder)",
                        "calls": info["calls"], "samples": info["samples"], "heavy_queries": args.heavy}
        try:
            heavy_sql = _heavy_sql(store, args, info)
            pager = _PagePath(ctx, spool)
            with httpx.Client(base_url=api.url + "/api/v1", headers={"Authorization": f"Bearer {token}"},
                              timeout=120) as http:
                _phase(http, ctx.sink, hour, 3, pager)  # warm: first-touch costs are not what a dashboard pays
                result["idle"] = _phase(http, ctx.sink, hour, args.repeat, pager)
                t0 = time.perf_counter()
                r = httpx.post(api.url + "/api/v1/sql", json={"sql": heavy_sql},
                               headers={"Authorization": f"Bearer {analyst}"}, timeout=120)
                result["heavy_query_alone_s"] = round(time.perf_counter() - t0, 2)
                result["heavy_query_status"] = r.status_code
                if r.status_code != 200:
                    raise RuntimeError(f"the heavy analyst query was refused: {r.text[:300]}")
                _loaded_phase(args, api.url, analyst, heavy_sql, ctx, http, hour, pager, result)
        finally:
            api.stop()
            if pager is not None:
                pager.close()
        return _verdict(result, ctx)
    finally:
        if ctx is not None and ctx.sink is not None:
            ctx.sink.close()
        drop_bench_database(store, url)
        store.close()
        shutil.rmtree(spool, ignore_errors=True)
        if folder:
            shutil.rmtree(folder, ignore_errors=True)
            shutil.rmtree(folder + ".spool", ignore_errors=True)  # the sink's spool beside the store
