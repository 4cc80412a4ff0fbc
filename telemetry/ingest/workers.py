"""Trace mapping in worker processes: a small pool that decodes OTLP trace requests with the official
opentelemetry-proto messages and maps them (`TraceIngest.map`), so the receiver process only answers
HTTP, keeps the open traces, counts and hands the batches to its sink.

Why processes: the receiver spends most of its CPU per span reading the decoded protobuf into columns
in Python (docs/ingest.md, Throughput), which one interpreter cannot spread over cores. A worker gets
a request body already admitted, size-checked and decompressed, and returns a `MappedTraces` (the
`spans` batch as Arrow/numpy columns, the reject counts, what the open traces and the instruments
learn); a broken body comes back as the OtlpError the receiver answers with.

Workers start from a fork server (multiprocessing's 'forkserver' context: a clean process that
imported this module, never a fork of the receiver, which runs threads and the embedded store). A
worker that dies breaks the whole concurrent.futures pool: the requests it held fail with
`WorkerLost` (the receiver answers 503 with Retry-After and the sender retries, so nothing accepted
is lost) and the next request gets a fresh pool; a worker stuck past the pool's timeout is killed and
replaced the same way. Only traces go through the pool: the metrics mapper
keeps per-series state (delta sums turned into running totals) that a pool would split between
processes, and logs are a small share of any sender's volume.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import threading
import time
from concurrent.futures import ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from telemetry.ingest import otlp
from telemetry.ingest.spans import IngestLimits, MappedTraces, TraceIngest

_mapper: TraceIngest | None = None  # one per worker process: its attribute cache lives across requests


class WorkerLost(Exception):
    """The worker mapping a request died (or the pool was shut down) before it answered."""


def _init_worker(limits: IngestLimits) -> None:
    import gc

    global _mapper
    _mapper = TraceIngest(None, limits=limits)
    # what is loaded now lives as long as the worker: full collections need not trace it again (as
    # `voxwatch serve` freezes its own startup heap)
    gc.collect()
    gc.freeze()


def _warm() -> int:
    import os

    return os.getpid()


def map_traces(body: bytes, mt: str, now_ns: int) -> MappedTraces | otlp.OtlpError:
    """In a worker: one decompressed ExportTraceServiceRequest body, decoded and mapped. A broken body
    is returned (not raised) as its OtlpError, so it crosses the process boundary as plain data."""
    try:
        return _mapper.map(otlp.decode("traces", body, mt), now_ns)
    except otlp.OtlpError as err:
        return err


class MapPool:
    """`workers` mapping processes behind one submit call, replaced whole when one of them dies.

    The caller bounds what is queued (the receiver submits only from a request holding one of its
    in-flight slots), so the pool never holds more than `max_inflight` bodies."""

    def __init__(self, workers: int, limits: IngestLimits | None = None, timeout_s: float = 60.0) -> None:
        if workers < 1:
            raise ValueError(f"map workers must be at least 1, not {workers}")
        self.workers = workers
        self.timeout_s = timeout_s  # a worker stuck this long on one request (an 8 MiB body maps in ~1 s) is replaced
        self.limits = limits or IngestLimits()
        self.restarts = 0
        self._lock = threading.Lock()
        self._closed = False
        self._pool = self._start()

    def _start(self) -> ProcessPoolExecutor:
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload([__name__])  # each worker forks with the protobuf and Arrow modules loaded
        pool = ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_init_worker, initargs=(self.limits,))
        self._warming = [pool.submit(_warm) for _ in range(self.workers)]  # start them now, not on the first request
        for f in self._warming:
            f.add_done_callback(lambda f: f.exception())  # a pool broken while warming shows on the next submit
        return pool

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until the workers have started (a benchmark's clock should not count their start)."""
        wait(self._warming, timeout)

    async def map(self, body: bytes, mt: str, now_ns: int) -> MappedTraces:
        """`map_traces(body, mt, now_ns)` in a worker: the mapped request, or its OtlpError raised here;
        WorkerLost when the worker died (or the pool could not take it), and then the pool is replaced
        for the next request."""
        with self._lock:
            if self._closed:
                raise WorkerLost("the mapping pool is shut down")
            pool = self._pool
        try:
            out = await asyncio.wait_for(asyncio.wrap_future(pool.submit(map_traces, body, mt, now_ns)), self.timeout_s)
        except (BrokenProcessPool, RuntimeError) as exc:  # RuntimeError: submitted to a pool shut down
            self.replace(pool)
            raise WorkerLost(f"a mapping worker stopped: {exc}") from None
        except TimeoutError:
            self.replace(pool, kill=True)
            raise WorkerLost(f"a mapping worker took over {self.timeout_s:g} s") from None
        if isinstance(out, otlp.OtlpError):
            raise out
        return out

    def replace(self, broken: ProcessPoolExecutor | None = None, kill: bool = False) -> None:
        """A fresh pool in place of `broken` (once, however many requests saw it break); `kill`: its
        workers are stuck, end them (the requests they hold get WorkerLost)."""
        with self._lock:
            if self._closed or (broken is not None and broken is not self._pool):
                return
            old, self._pool = self._pool, self._start()
            self.restarts += 1
        stuck = _processes(old) if kill else []
        old.shutdown(wait=False, cancel_futures=True)
        for p in stuck:
            p.kill()

    def pids(self) -> list[int]:
        """The worker processes' ids (for an operator, and the test that kills one)."""
        return [p.pid for p in _processes(self._pool)]

    def shutdown(self, timeout_s: float = 10.0) -> None:
        """Stop the workers (SIGTERM of `voxwatch serve`, once the server answers no more): queued requests
        are cancelled, a request being mapped gets `timeout_s` to finish, then its worker is killed."""
        with self._lock:
            if self._closed:  # idempotent: every server sharing a context stops it
                return
            self._closed = True
            pool = self._pool
        procs = _processes(pool)
        pool.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + timeout_s
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()
                p.join(5)


def _processes(pool) -> list:
    """A pool's worker processes (the executor's private map, None once it has shut down)."""
    return list((getattr(pool, "_processes", None) or {}).values())


__all__ = ["BrokenProcessPool", "MapPool", "WorkerLost", "map_traces"]
