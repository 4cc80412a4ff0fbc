"""OTLP ingest: spans/s and metric points/s from HTTP request to rows stored, vs a raw store insert of the
same rows in the same run.

A sender process posts pre-encoded OTLP/HTTP protobuf requests (Pipecat-shaped traces: conversation,
turns, stt/llm/tts spans with their attributes; gauges, counters and histograms) to a real `voxwatch
serve` API (uvicorn) on a temporary embedded store, over `--connections` keep-alive connections; the
clock runs from the first request to the last row flushed into the store. The baseline inserts the very
rows the receiver produced into the same table of the same store, by the call the sink makes
(`store.insert` with a batch token), best of `--repeat`: as a ready Arrow batch (the ratio's baseline)
and from Python columns (printed beside it). Memory: the receiver's resident set before and after, with the sender offering as fast as
it can (429s are counted and retried by the sender, as an OTel exporter would); then an overloading
sender offers twice the measured span rate over `--overload-connections` for `--overload-seconds`
while the receiver's resident set is sampled: its peak in each tenth of the run says whether memory
levels off, and every span answered 200 must be in the store.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import tempfile
import time

import pyarrow as pa
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2

from telemetry.store import reads

TOKEN = "bench-ingest-token-0123456789"


def add_arguments(p) -> None:
    p.add_argument("--spans", type=int, default=400_000, help="spans to send")
    p.add_argument("--points", type=int, default=400_000, help="metric data points to send")
    p.add_argument("--batch", type=int, default=2000, help="spans (or points) per request")
    p.add_argument("--connections", type=int, default=2, help="concurrent connections of the sender")
    p.add_argument("--repeat", type=int, default=3, help="runs of the raw insert; the best is reported")
    p.add_argument("--overload-seconds", type=float, default=15.0,
                   help="then offer twice the measured span rate for this long (0: skip) and watch memory")
    p.add_argument("--overload-connections", type=int, default=16, help="connections of the overloading sender")
    p.add_argument("--map-workers", type=int, default=0,
                   help="also run the trace end to end with this many mapping worker processes (ingest.map_workers) "
                        "and print both figures side by side; the overload run then goes to that receiver")
    p.add_argument("--breakdown", action="store_true",
                   help="also report the receiver's CPU per span by stage in the trace run (decode, map, hand-off, "
                        "store insert, garbage collection, the rest: HTTP and the engine's threads)")


def _kv(k, v) -> KeyValue:
    if isinstance(v, bool):
        return KeyValue(key=k, value=AnyValue(bool_value=v))
    if isinstance(v, int):
        return KeyValue(key=k, value=AnyValue(int_value=v))
    if isinstance(v, float):
        return KeyValue(key=k, value=AnyValue(double_value=v))
    return KeyValue(key=k, value=AnyValue(string_value=v))


def make_trace_request(n_spans: int, seed: int, now_ns: int | None = None) -> bytes:
    """`n_spans` spans shaped like Pipecat's: per call a conversation, and per turn a turn, stt, llm, tts."""
    now = now_ns or time.time_ns()
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.extend([_kv("service.name", "bench-bot"), _kv("deployment.environment", "bench"),
                                   _kv("service.instance.id", "host-1")])
    spans = rs.scope_spans.add()
    spans.scope.name = "pipecat"
    ms = 1_000_000
    i = 0
    call = 0
    while i < n_spans:
        call += 1
        tid = (seed * 1_000_003 + call).to_bytes(16, "big")
        conv_id = (seed * 7919 + call).to_bytes(8, "big")
        t0 = now - 60_000 * ms
        for turn in range(1, 5):
            if i >= n_spans:
                break
            base = t0 + turn * 5000 * ms
            turn_id = (seed * 100_000_007 + call * 16 + turn).to_bytes(8, "big")
            # what varies in a real pipeline varies here too (measured times, token counts, what was said),
            # so the receiver's attribute cache only finds the values that really repeat
            order = seed * 100_000 + call  # unique over the whole run
            jitter = (order * 2_654_435_761 + turn * 40_503) % 2**32 / 2**32 / 10  # measured seconds never repeat
            stages = [("stt", 0, 300, [_kv("gen_ai.provider.name", "whisper"),
                                        _kv("transcript", f"I would like {order % 9 + 1} pizzas for order {order}, turn {turn}"),
                                        _kv("language", "en"), _kv("metrics.ttfb", 0.21 + jitter), _kv("is_final", True)]),
                      ("llm", 300, 900, [_kv("gen_ai.provider.name", "openai"), _kv("gen_ai.request.model", "gpt-4o-mini"),
                                         _kv("metrics.ttfb", 0.35 + jitter), _kv("gen_ai.usage.input_tokens", 700 + order % 300 + turn * 40),
                                         _kv("gen_ai.usage.output_tokens", 20 + (order + turn) % 40), _kv("stream", True)]),
                      ("tts", 900, 1400, [_kv("gen_ai.provider.name", "cartesia"), _kv("metrics.ttfb", 0.12 + jitter),
                                          _kv("metrics.character_count", 40 + (order + turn) % 50),
                                          _kv("text", f"Sure, {order % 9 + 1} pizzas for order {order}. Which size would you like?")])]
            for k, (name, a, b, attrs) in enumerate(stages):
                if i >= n_spans:
                    break
                s = spans.spans.add(trace_id=tid, span_id=(int.from_bytes(turn_id, "big") + 1 + k).to_bytes(8, "big"),
                                    parent_span_id=turn_id, name=name, start_time_unix_nano=base + a * ms,
                                    end_time_unix_nano=base + b * ms)
                s.attributes.extend(attrs)
                i += 1
            if i >= n_spans:
                break
            s = spans.spans.add(trace_id=tid, span_id=turn_id, parent_span_id=conv_id, name="turn",
                                start_time_unix_nano=base, end_time_unix_nano=base + 2000 * ms)
            s.attributes.extend([_kv("turn.number", turn), _kv("conversation.id", f"conv-{seed}-{call}"),
                                 _kv("turn.user_bot_latency_seconds", 0.7 + jitter * 2), _kv("turn.was_interrupted", False)])
            i += 1
        if i < n_spans:
            s = spans.spans.add(trace_id=tid, span_id=conv_id, name="conversation", start_time_unix_nano=t0,
                                end_time_unix_nano=t0 + 25_000 * ms)
            s.attributes.extend([_kv("conversation.id", f"conv-{seed}-{call}"), _kv("conversation.type", "voice")])
            i += 1
    return req.SerializeToString()


def make_metrics_request(n_points: int, seed: int, now_ns: int | None = None) -> bytes:
    """`n_points` points: gauges, cumulative counters and 10-bucket histograms over 50 label sets."""
    now = now_ns or time.time_ns()
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.extend([_kv("service.name", "bench-bot"), _kv("deployment.environment", "bench")])
    sm = rm.scope_metrics.add()
    i = 0
    k = 0
    while i < n_points:
        k += 1
        ts = now - (seed * 1000 + k) * 1_000_000
        g = sm.metrics.add(name="bench.queue.depth")
        c = sm.metrics.add(name="bench.calls")
        c.sum.is_monotonic = True
        c.sum.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
        h = sm.metrics.add(name="bench.turn.latency")
        h.histogram.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
        for series in range(50):
            if i >= n_points:
                break
            attrs = [_kv("region", f"r{series % 5}"), _kv("route", f"route-{series}")]
            g.gauge.data_points.add(time_unix_nano=ts, as_double=float(series), attributes=attrs)
            c.sum.data_points.add(time_unix_nano=ts, as_int=k * 10 + series, attributes=attrs)
            h.histogram.data_points.add(time_unix_nano=ts, count=100, sum=42.0, attributes=attrs,
                                        explicit_bounds=[0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0],
                                        bucket_counts=[5, 10, 20, 30, 20, 5, 4, 3, 2, 1])
            i += 3
    return req.SerializeToString()


def _post(conn, path: str, body: bytes) -> tuple[int, bytes, str | None]:
    """One OTLP/HTTP export over a kept-alive `http.client` connection: (status, body, Retry-After)."""
    conn.request("POST", path, body=body, headers={"Authorization": f"Bearer {TOKEN}",
                                                    "Content-Type": "application/x-protobuf"})
    r = conn.getresponse()
    return r.status, r.read(), r.getheader("retry-after")


def _send(url: str, path: str, bodies: list[bytes], connections: int, out) -> None:
    """The sender process: posts every body, retrying 429/503 after Retry-After, over N connections.

    A plain `http.client` connection per thread rather than httpx: the sender shares the 2 cores with
    the receiver it measures, and httpx's pure-Python request path cost ~3 us per span of the sender's
    CPU (~1.5 ms per 2,000-span request), a quarter of what the receiver spends; its own CPU is reported."""
    import http.client
    import threading
    from urllib.parse import urlsplit

    host = urlsplit(url)
    refused = [0]
    lock = threading.Lock()
    queue = list(reversed(bodies))

    def worker():
        conn = http.client.HTTPConnection(host.hostname, host.port, timeout=60)
        try:
            while True:
                with lock:
                    if not queue:
                        return
                    body = queue.pop()
                while True:
                    status, text, retry_after = _post(conn, path, body)
                    if status == 200:
                        break
                    if status in (429, 503):
                        with lock:
                            refused[0] += 1
                        time.sleep(min(float(retry_after or "1"), 0.05))
                        continue
                    raise RuntimeError(f"{path}: {status} {text[:200]!r}")
        finally:
            conn.close()

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put((t0, time.perf_counter(), refused[0], time.process_time() - cpu0))


def _offer(url: str, bodies: list[bytes], sizes: list[int], rate: float, connections: int, seconds: float,
           out) -> None:
    """The overloading sender: `connections` workers, each posting a body every `connections / (rate /
    spans_per_body)` s whatever the answer (an exporter with a full queue keeps offering), for `seconds`."""
    import http.client
    import threading
    from urllib.parse import urlsplit

    host = urlsplit(url)
    interval = connections * (sum(sizes) / len(sizes)) / rate
    counts = {"sent": 0, "accepted": 0, "refused": 0, "sent_spans": 0, "accepted_spans": 0}
    lock = threading.Lock()
    t_end = time.monotonic() + seconds

    def worker(k: int):
        conn = http.client.HTTPConnection(host.hostname, host.port, timeout=60)
        due = time.monotonic() + interval * k / connections
        i = k
        try:
            while due < t_end:
                time.sleep(max(0.0, due - time.monotonic()))
                status, text, _ = _post(conn, "/v1/traces", bodies[i % len(bodies)])
                with lock:
                    counts["sent"] += 1
                    counts["sent_spans"] += sizes[i % len(bodies)]
                    counts["accepted" if status == 200 else "refused"] += 1
                    counts["accepted_spans"] += sizes[i % len(bodies)] if status == 200 else 0
                if status not in (200, 429, 503):
                    raise RuntimeError(f"/v1/traces: {status} {text[:200]!r}")
                due += interval
                i += connections
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put(counts)


def _overload(ctx, url: str, bodies: list[bytes], sizes: list[int], capacity: float, connections: int,
              seconds: float) -> dict:
    """Offer twice `capacity` spans/s for `seconds`: the receiver's resident memory, sampled every 0.1 s,
    must level off (429s past its in-flight and queue limits) and every accepted span must be stored."""
    import threading

    ctx.sink.flush()
    before = reads.row_count(ctx.store, "spans")
    rss0 = _rss_bytes()
    samples: list[tuple[float, int]] = []
    stop = threading.Event()

    def watch():
        t0 = time.perf_counter()
        while not stop.wait(0.1):
            samples.append((time.perf_counter() - t0, _rss_bytes() - rss0))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    q = mp.get_context("spawn").Queue()
    proc = mp.get_context("spawn").Process(target=_offer, args=(url, bodies, sizes, 2 * capacity,
                                                                 connections, seconds, q))
    proc.start()
    counts = q.get(timeout=seconds + 600)
    proc.join(60)
    ctx.telemetry.flush()
    ctx.sink.flush(timeout=600)
    stop.set()
    watcher.join()
    stored = reads.row_count(ctx.store, "spans") - before
    if stored != counts["accepted_spans"]:
        raise RuntimeError(f"overload: {stored} spans stored, {counts['accepted_spans']} accepted")
    # the resident set's peak in each tenth of the run: a bounded receiver levels off
    tenths = [max((b for t, b in samples if k * seconds / 10 <= t < (k + 1) * seconds / 10), default=0)
              for k in range(10)]
    return {"offered_spans_per_s": round(counts["sent_spans"] / seconds),
            "offered_over_capacity": round(counts["sent_spans"] / seconds / capacity, 2),
            "accepted_spans_per_s": round(counts["accepted_spans"] / seconds),
            "refused_requests": counts["refused"], "accepted_requests": counts["accepted"],
            "peak_rss_growth_mb_by_tenth": [round(b / 2**20) for b in tenths],
            "stored_every_accepted_span": True}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of these processes so far (the mapping workers, from /proc)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))
    return total / os.sysconf("SC_CLK_TCK")


def _end_to_end(ctx, url: str, path: str, bodies: list[bytes], connections: int, table: str, expected: int,
                workers: list[int] = ()) -> dict:
    ctx.sink.flush()
    before = reads.row_count(ctx.store, table)
    rss0 = _rss_bytes()
    cpu0, wcpu0 = os.times(), _cpu_s(workers)
    q = mp.get_context("spawn").Queue()
    proc = mp.get_context("spawn").Process(target=_send, args=(url, path, bodies, connections, q))
    proc.start()
    # the clock starts at the sender's first request (perf_counter is the system's monotonic clock, the
    # same in both processes), not at the spawn: the child's start (imports, the bodies unpickled) is
    # not the receiver's time
    t_start, _, refused, sender_cpu = q.get(timeout=1200)
    ctx.telemetry.flush()
    ctx.sink.flush(timeout=600)
    elapsed = time.perf_counter() - t_start
    cpu1 = os.times()
    proc.join(60)
    stored = reads.row_count(ctx.store, table) - before
    if stored != expected:
        raise RuntimeError(f"{table}: {stored} rows stored, expected {expected}")
    return {"seconds": elapsed, "refused_and_retried": refused, "rss_growth_bytes": max(0, _rss_bytes() - rss0),
            "sender_cpu_s": sender_cpu, "receiver_cpu_s": cpu1.user - cpu0.user + cpu1.system - cpu0.system,
            "workers_cpu_s": _cpu_s(workers) - wcpu0}


def _mean_runs(a: dict, b: dict) -> dict:
    """Two end-to-end runs of the same bodies as one: mean time and CPU (spans/s over the mean time),
    and each run's spans/s kept apart as `runs_seconds`."""
    out = {k: (a[k] + b[k]) / 2 for k in ("seconds", "sender_cpu_s", "receiver_cpu_s", "workers_cpu_s")}
    out.update(refused_and_retried=a["refused_and_retried"] + b["refused_and_retried"],
               rss_growth_bytes=max(a["rss_growth_bytes"], b["rss_growth_bytes"]), runs_seconds=[a["seconds"], b["seconds"]])
    return out


def _raw(store, table: str, columns: dict, repeat: int) -> tuple[float, float]:
    """The best times to insert the receiver's own rows straight into the store, through the very call
    the sink makes (`store.insert` with a batch token): as a ready Arrow batch, and from the Python
    columns (the Arrow conversion included)."""
    batch = store.batch(table, columns)
    best = best_py = float("inf")
    for k in range(repeat):
        store.truncate(table)
        t0 = time.perf_counter()
        store.insert(table, batch, dedup_token=f"bench-raw-arrow-{k}")
        best = min(best, time.perf_counter() - t0)
        store.truncate(table)
        t0 = time.perf_counter()
        store.insert(table, store.batch(table, columns), dedup_token=f"bench-raw-python-{k}")
        best_py = min(best_py, time.perf_counter() - t0)
    if reads.row_count(store, table) != batch.num_rows:
        raise RuntimeError(f"raw {table}: {reads.row_count(store, table)} rows stored, expected {batch.num_rows}")
    return best, best_py


class _Breakdown:
    """`--breakdown`: where the receiver's CPU goes per span in the end-to-end trace run. Each stage's
    function is wrapped for the run (thread CPU time, so concurrent threads are not counted twice);
    the cyclic garbage collector's pauses are timed by its callbacks (they fall inside whichever stage
    allocated, and are shown apart as well); the rest of the process's CPU is HTTP (uvicorn, Starlette,
    asyncio, the thread-pool hop), the store engine's own threads and the sink's bookkeeping."""

    def __init__(self) -> None:
        import gc
        import threading

        from telemetry.ingest import otlp as otlp_mod
        from telemetry.ingest.spans import TraceIngest
        from telemetry.sink import Sink
        from telemetry.store.base import Store

        self.cpu: dict[str, float] = {}
        self._lock = threading.Lock()
        self._undo = []
        for owner, name, label in ((otlp_mod, "decode", "decode"), (TraceIngest, "ingest", "map"),
                                   (TraceIngest, "apply", "apply"), (Sink, "write_typed", "hand_off"),
                                   (Store, "insert", "store_insert")):
            self._wrap(owner, name, label)
        self._gc_started = 0.0
        gc.callbacks.append(self._gc)
        self._undo.append(lambda: gc.callbacks.remove(self._gc))
        self.start()

    def _wrap(self, owner, name: str, label: str) -> None:
        fn = getattr(owner, name)

        def timed(*a, **k):
            t0 = time.thread_time()
            try:
                return fn(*a, **k)
            finally:
                with self._lock:
                    self.cpu[label] = self.cpu.get(label, 0.0) + time.thread_time() - t0

        setattr(owner, name, timed)
        self._undo.append(lambda: setattr(owner, name, fn))

    def _gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            with self._lock:
                self.cpu["gc"] = self.cpu.get("gc", 0.0) + time.perf_counter() - self._gc_started

    def start(self) -> None:
        self.cpu.clear()
        self._t0 = os.times()

    def report(self, n: int, sender_cpu_s: float) -> dict:
        t1 = os.times()
        process = (t1.user - self._t0.user) + (t1.system - self._t0.system)
        us = {k: v / n * 1e6 for k, v in self.cpu.items()}
        # the mapper's own work (in this process: none with map workers), and the receiver's part of it
        # (apply: open traces, call records, instruments), the hand-off to the sink apart
        us["map"] = max(0.0, us.get("map", 0.0) - us.get("apply", 0.0))
        us["apply"] = us.get("apply", 0.0) - us.get("hand_off", 0.0)
        out = {"process_cpu": process / n * 1e6, **us}
        out["rest_http_engine_threads"] = out["process_cpu"] - sum(
            us.get(k, 0.0) for k in ("decode", "map", "apply", "hand_off", "store_insert"))
        out["sender_cpu"] = sender_cpu_s / n * 1e6
        for f in self._undo:
            f()
        return {k: round(v, 2) for k, v in out.items()}


class _Capture:
    """A sink that keeps the columns written, to replay the same rows on the raw path."""

    def __init__(self) -> None:
        self.tables: dict[str, dict] = {}

    def write_columns(self, table, columns):
        t = self.tables.setdefault(table, {k: [] for k in columns})
        for k, v in columns.items():
            t[k].extend(v.to_pylist() if isinstance(v, pa.Array) else list(v))
        return len(next(iter(columns.values())))

    write_typed = write_columns  # the receiver's typed batches, kept as Python columns too

    def write(self, table, rows):
        rows = list(rows)
        if rows:
            self.write_columns(table, {k: [r[k] for r in rows] for k in rows[0]})
        return len(rows)


def _trace_runs(ctx, args, api, api_workers, span_bodies):
    """The trace runs: in-process alone, or (with map workers) both receivers warmed alike and run in
    the order 0, N, N, 0. Returns (in-process run, workers' run or None, CPU breakdown or None)."""
    workers_run = None
    map_workers = getattr(args, "map_workers", 0)
    pool = ctx.extras["ingest_receiver"].pool if api_workers is not None else None
    if api_workers is not None:
        # both receivers warmed alike (attribute caches, the store's first parts, the workers' imports)
        # before the runs compared, with a tenth of the bodies
        warm = span_bodies[: max(1, len(span_bodies) // 10)]
        n_warm = min(args.spans, len(warm) * args.batch)
        for url in (api.url, api_workers.url):
            _end_to_end(ctx, url, "/v1/traces", warm, args.connections, "spans", n_warm)
    breakdown = _Breakdown() if getattr(args, "breakdown", False) else None
    spans_run = _end_to_end(ctx, api.url, "/v1/traces", span_bodies, args.connections, "spans", args.spans)
    if breakdown is not None:
        breakdown = breakdown.report(args.spans, spans_run["sender_cpu_s"])
    if api_workers is not None:
        workers_breakdown = _Breakdown() if getattr(args, "breakdown", False) else None
        workers_run = _end_to_end(ctx, api_workers.url, "/v1/traces", span_bodies, args.connections, "spans",
                                  args.spans, pool.pids())
        if workers_breakdown is not None:  # the receiver's CPU only; the workers' is workers_cpu_us_per_span
            breakdown = {"map_workers_0": breakdown,
                         f"map_workers_{map_workers}": workers_breakdown.report(args.spans, workers_run["sender_cpu_s"])}
        # then the other way round (N, then 0): the store's background merges after each run and the
        # other jobs on the machine weigh on whichever run comes later, so each figure is the mean of
        # one run in each position
        second = [_end_to_end(ctx, url, "/v1/traces", span_bodies, args.connections, "spans", args.spans, pids)
                  for url, pids in ((api_workers.url, pool.pids()), (api.url, []))]
        workers_run, spans_run = _mean_runs(workers_run, second[0]), _mean_runs(spans_run, second[1])
    return spans_run, workers_run, breakdown


def _side_by_side(args, spans_run, workers_run, raw_spans_ps, raw_spans_py_s) -> dict:
    """The in-process and the map workers' trace runs, figure beside figure."""
    map_workers = args.map_workers
    spans_ps = args.spans / spans_run["seconds"]
    spans_ratio = spans_ps / raw_spans_ps
    w_ps = args.spans / workers_run["seconds"]
    return {
        "map_workers": [0, map_workers],
        "spans_per_s": [round(spans_ps), round(w_ps)],
        "spans_per_s_each_run": [[round(args.spans / t) for t in r["runs_seconds"]] for r in (spans_run, workers_run)],
        "spans_ratio": [round(spans_ratio, 3), round(w_ps / raw_spans_ps, 3)],
        "spans_ratio_to_python_columns": [round(spans_ps * raw_spans_py_s / args.spans, 3),
                                          round(w_ps * raw_spans_py_s / args.spans, 3)],
        "receiver_cpu_us_per_span": [round(r["receiver_cpu_s"] / args.spans * 1e6, 2) for r in (spans_run, workers_run)],
        "workers_cpu_us_per_span": [0.0, round(workers_run["workers_cpu_s"] / args.spans * 1e6, 2)],
        "sender_cpu_us_per_span": [round(r["sender_cpu_s"] / args.spans * 1e6, 2) for r in (spans_run, workers_run)],
        "refused_and_retried": [spans_run["refused_and_retried"], workers_run["refused_and_retried"]],
        "cores": os.cpu_count(),
        "note": "the sender is a separate process on the same cores; trace runs in the order 0, N, N, 0 (each "
                "figure over the mean time of its two runs; each run's own spans/s beside), the same bodies, the "
                "same store, against the same raw baselines; the top-level spans_per_s is that mean too",
    }


def run(args) -> dict:
    from telemetry import Telemetry
    from telemetry.clock import WallClock
    from telemetry.ingest import MetricIngest, TraceIngest
    from telemetry.ingest.otlp import decode
    from telemetry.sink import Sink
    from telemetry.store import open_store
    from voxwatch.commands.serve import freeze_startup_heap, start_api
    from voxwatch.config import ApiToken, IngestConfig, Scope, Settings
    from voxwatch.context import AppContext

    tmp = tempfile.mkdtemp(prefix="voxwatch-bench-otlp-")
    store = open_store(f"chdb://{tmp}/store?database=bench_otlp")
    sink = Sink(store, spool_dir=os.path.join(tmp, "spool"), flush_interval=0.25)
    tel = Telemetry(clock=WallClock(), sink=sink)
    sink.telemetry = tel
    ctx = AppContext(store=store, sink=sink, clock=tel.clock, telemetry=tel,
                     settings=Settings(tokens=[ApiToken(name="bench", token=TOKEN, scopes=[Scope.INGEST])]))
    now = time.time_ns()
    span_bodies = [make_trace_request(min(args.batch, args.spans - i), seed=i // args.batch + 1, now_ns=now)
                   for i in range(0, args.spans, args.batch)]
    point_bodies = [make_metrics_request(min(args.batch, args.points - i), seed=i // args.batch + 1, now_ns=now)
                    for i in range(0, args.points, args.batch)]
    api = start_api(ctx)
    api_workers = None
    map_workers = getattr(args, "map_workers", 0)
    if map_workers:
        # a second receiver on the same sink and store, its traces decoded and mapped in worker processes
        ctx.settings = ctx.settings.model_copy(update={"ingest": IngestConfig(map_workers=map_workers)})
        api_workers = start_api(ctx)
        pool = ctx.extras["ingest_receiver"].pool
        pool.wait_ready(120)
    freeze_startup_heap()  # as `voxwatch serve` does once started
    try:
        spans_run, workers_run, breakdown = _trace_runs(ctx, args, api, api_workers, span_bodies)
        # the number of metric_samples rows the points become (a histogram point is 12 samples)
        cap = _Capture()
        cap_tel = Telemetry(clock=WallClock(), sink=cap)
        metric_ingest = MetricIngest(cap_tel)
        for b in point_bodies:
            metric_ingest.ingest(decode("metrics", b, "application/x-protobuf"))
        n_samples = len(cap.tables["metric_samples"]["ts_ms"])
        points_run = _end_to_end(ctx, api.url, "/v1/metrics", point_bodies, args.connections, "metric_samples", n_samples)
        overload = None
        if args.overload_seconds > 0:
            capacity = args.spans / spans_run["seconds"]
            sizes = [min(args.batch, args.spans - i) for i in range(0, args.spans, args.batch)]
            if workers_run is not None:
                capacity = max(capacity, args.spans / workers_run["seconds"])
            overload = _overload(ctx, (api_workers or api).url, span_bodies, sizes, capacity,
                                 args.overload_connections, args.overload_seconds)
    finally:
        api.stop()
        if api_workers is not None:
            api_workers.stop()
        sink.close()
    try:
        trace_cap = _Capture()
        trace_ingest = TraceIngest(Telemetry(clock=WallClock(), sink=trace_cap))
        for b in span_bodies:
            trace_ingest.ingest(decode("traces", b, "application/x-protobuf"))
        raw_spans_s, raw_spans_py_s = _raw(store, "spans", trace_cap.tables["spans"], args.repeat)
        raw_samples_s, raw_samples_py_s = _raw(store, "metric_samples", cap.tables["metric_samples"], args.repeat)
    finally:
        store.close()
        shutil.rmtree(tmp, ignore_errors=True)
    spans_ps = args.spans / spans_run["seconds"]
    raw_spans_ps = args.spans / raw_spans_s
    points_ps = args.points / points_run["seconds"]
    raw_points_ps = args.points / raw_samples_s  # the same points' rows, inserted raw
    spans_ratio = spans_ps / raw_spans_ps
    side_by_side = (_side_by_side(args, spans_run, workers_run, raw_spans_ps, raw_spans_py_s)
                    if workers_run is not None else None)
    return {
        "store": "chdb (embedded)",
        "spans": args.spans,
        "spans_per_s": round(spans_ps),
        "raw_spans_per_s": round(raw_spans_ps),
        "spans_ratio": round(spans_ratio, 3),
        "raw_spans_from_python_columns_per_s": round(args.spans / raw_spans_py_s),
        "spans_ratio_to_python_columns": round(spans_ps * raw_spans_py_s / args.spans, 3),
        "raw_baselines": "the receiver's own spans/metric_samples rows, re-mapped from the same bodies, "
                         "inserted into the same table of the same store in this run by the call the sink "
                         "makes (store.insert with a batch token), best of --repeat: as a ready Arrow batch "
                         "(raw_*_per_s, the ratio's baseline) and from Python columns, Arrow conversion included",
        "points": args.points,
        "metric_samples_rows": n_samples,
        "points_per_s": round(points_ps),
        "raw_points_per_s": round(raw_points_ps),
        "points_ratio": round(points_ps / raw_points_ps, 3),
        "raw_points_from_python_columns_per_s": round(args.points / raw_samples_py_s),
        # the sender shares the cores: its CPU in the send loop, per item sent
        "sender_cpu_us_per_item": {"traces": round(spans_run["sender_cpu_s"] / args.spans * 1e6, 2),
                                   "metrics": round(points_run["sender_cpu_s"] / args.points * 1e6, 2)},
        "refused_and_retried": {"traces": spans_run["refused_and_retried"], "metrics": points_run["refused_and_retried"]},
        "receiver_rss_growth_mb": {"traces": round(spans_run["rss_growth_bytes"] / 2**20, 1),
                                   "metrics": round(points_run["rss_growth_bytes"] / 2**20, 1)},
        "traces_by_map_workers": side_by_side,
        "overload_2x": overload,
        "overload_map_workers": map_workers if overload is not None else None,
        "cpu_us_per_span_by_stage": breakdown,
        "targets": {"spans_per_s": 50_000, "spans_ratio": 0.25},
        "met": {"spans_per_s": spans_ps >= 50_000, "spans_ratio": spans_ratio >= 0.25},
    }
