"""Runtime metrics of the process itself: event-loop lag, memory, CPU, garbage collection, threads,
file descriptors, executor backlogs (the catalog's `runtime` component).

    monitor = RuntimeMonitor(tel, process="pipeline", executors={"stt": stt_pool})
    monitor.sample()                          # once per snapshot tick (or let watch() do it)
    task = asyncio.create_task(monitor.watch())   # event-loop lag, on the loop that serves calls

Event-loop lag is measured on the wall clock whatever clock the rest of the process uses: it is a
property of the machine (a blocked loop delays every call on it), not of simulated time.
"""

from __future__ import annotations

import asyncio
import gc
import os
import platform
import resource
import threading
import time
from collections.abc import Mapping
from typing import Any

SLOW_CALLBACK_S = 0.1


def _rss_bytes() -> float:
    try:
        with open("/proc/self/statm") as f:
            return float(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: peak RSS is the best portable figure
        return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _memory_limit_bytes() -> float:
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = open(path).read().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**60:
            return float(text)
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError):
        return 0.0


def _open_fds() -> float:
    try:
        return float(len(os.listdir("/proc/self/fd")))
    except OSError:
        return 0.0


class RuntimeMonitor:
    """Publishes the process's runtime metrics into a Telemetry, labelled by `process`."""

    def __init__(self, telemetry, process: str = "voxwatch", executors: Mapping[str, Any] | None = None,
                 version: str = "") -> None:
        self.process = process
        self.executors = dict(executors or {})
        t = telemetry
        p = (process,)
        self._lag = t["voxwatch_runtime_event_loop_lag_seconds"].labels(*p)
        self._tasks = t["voxwatch_runtime_event_loop_tasks"].labels(*p)
        self._slow = t["voxwatch_runtime_slow_callbacks_total"].labels(*p)
        self._rss = t["voxwatch_runtime_resident_memory_bytes"].labels(*p)
        self._mem_limit = t["voxwatch_runtime_memory_limit_bytes"].labels(*p)
        self._cpu = t["voxwatch_runtime_cpu_seconds_total"].labels(*p)
        self._cpu_util = t["voxwatch_runtime_cpu_utilization_ratio"].labels(*p)
        self._gc_collections = t["voxwatch_runtime_gc_collections_total"]
        self._gc_pause = t["voxwatch_runtime_gc_pause_seconds"].labels(*p)
        self._threads = t["voxwatch_runtime_threads"].labels(*p)
        self._fds = t["voxwatch_runtime_open_fds"].labels(*p)
        self._max_fds = t["voxwatch_runtime_max_fds"].labels(*p)
        self._executor_depth = t["voxwatch_runtime_executor_queue_depth"]
        t["voxwatch_runtime_start_time_seconds"].labels(*p).set(_process_start_epoch())
        t["voxwatch_runtime_build_info"].labels(version or _version(), platform.python_version()).set(1)
        self._cpu_total = 0.0
        self._last_cpu = time.process_time()
        self._last_wall = time.monotonic()
        self._cpus = float(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
        self._gc_started: float | None = None
        self._gc_lock = threading.Lock()
        gc.callbacks.append(self._on_gc)
        self._stopped = False

    # ---- garbage collection: counted and timed as it happens
    def _on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        elif self._gc_started is not None:
            self._gc_pause.observe(time.perf_counter() - self._gc_started)
            self._gc_started = None
            self._gc_collections.labels(self.process, str(info.get("generation", ""))).inc()

    def close(self) -> None:
        self._stopped = True
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)

    # ---- gauges sampled on demand
    def sample(self) -> None:
        cpu = time.process_time()
        wall = time.monotonic()
        used = max(0.0, cpu - self._last_cpu)
        self._cpu.inc(used)
        if wall > self._last_wall:
            self._cpu_util.set(min(1.0, used / ((wall - self._last_wall) * self._cpus)))
        self._last_cpu, self._last_wall = cpu, wall
        self._rss.set(_rss_bytes())
        self._mem_limit.set(_memory_limit_bytes())
        self._threads.set(threading.active_count())
        self._fds.set(_open_fds())
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        self._max_fds.set(float(soft) if soft != resource.RLIM_INFINITY else 0.0)
        for name, executor in self.executors.items():
            queue = getattr(executor, "_work_queue", None)  # ThreadPoolExecutor's backlog
            if queue is not None:
                self._executor_depth.labels(name).set(queue.qsize())
        try:
            self._tasks.set(len(asyncio.all_tasks()))
        except RuntimeError:  # no running loop in this thread
            pass

    async def watch(self, interval_s: float = 0.25, sample_every_s: float = 1.0) -> None:
        """Measure event-loop lag every `interval_s` (and sample the gauges every `sample_every_s`)
        until `close()` or cancellation."""
        last_sample = 0.0
        while not self._stopped:
            due = time.monotonic() + interval_s
            await asyncio.sleep(interval_s)
            lag = max(0.0, time.monotonic() - due)
            self._lag.observe(lag)
            if lag >= SLOW_CALLBACK_S:
                self._slow.inc()
            if time.monotonic() - last_sample >= sample_every_s:
                self.sample()
                last_sample = time.monotonic()


def _process_start_epoch() -> float:
    """When this process started, epoch seconds (Linux: from /proc; elsewhere: now)."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = float(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return time.time() - (uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return time.time()


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("voxwatch")
    except Exception:
        return "unknown"
