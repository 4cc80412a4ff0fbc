"""Runtime metrics: the process's own memory, CPU, GC, threads, fds and event-loop lag."""

from __future__ import annotations

import asyncio
import gc
import time
from concurrent.futures import ThreadPoolExecutor

from telemetry import Telemetry
from telemetry.runtime import RuntimeMonitor


def get(tel, name, **labels):
    return tel.registry.get_sample_value(name, labels)


def test_sample_publishes_memory_cpu_threads_and_fds():
    tel = Telemetry()
    monitor = RuntimeMonitor(tel, process="test")
    try:
        sum(i * i for i in range(200_000))  # some CPU to account for
        monitor.sample()
        p = {"process": "test"}
        assert get(tel, "voxwatch_runtime_resident_memory_bytes", **p) > 10e6
        assert get(tel, "voxwatch_runtime_memory_limit_bytes", **p) >= get(tel, "voxwatch_runtime_resident_memory_bytes", **p)
        assert get(tel, "voxwatch_runtime_cpu_seconds_total", **p) > 0
        assert 0 <= get(tel, "voxwatch_runtime_cpu_utilization_ratio", **p) <= 1
        assert get(tel, "voxwatch_runtime_threads", **p) >= 1
        assert 0 < get(tel, "voxwatch_runtime_open_fds", **p) <= get(tel, "voxwatch_runtime_max_fds", **p)
        assert abs(get(tel, "voxwatch_runtime_start_time_seconds", **p) - time.time()) < 24 * 3600
    finally:
        monitor.close()


def test_garbage_collections_are_counted_and_timed():
    tel = Telemetry()
    monitor = RuntimeMonitor(tel, process="test")
    try:
        gc.collect(2)
    finally:
        monitor.close()
    assert get(tel, "voxwatch_runtime_gc_collections_total", process="test", generation="2") >= 1
    assert get(tel, "voxwatch_runtime_gc_pause_seconds_count", process="test") >= 1


def test_executor_backlog_is_published():
    tel = Telemetry()
    with ThreadPoolExecutor(max_workers=1) as pool:
        monitor = RuntimeMonitor(tel, process="test", executors={"stt": pool})
        blocker = pool.submit(time.sleep, 0.3)
        waiting = [pool.submit(lambda: None) for _ in range(3)]
        monitor.sample()
        monitor.close()
        blocker.result()
        for w in waiting:
            w.result()
    assert get(tel, "voxwatch_runtime_executor_queue_depth", executor="stt") == 3


def test_a_blocked_event_loop_shows_as_lag_and_a_slow_callback():
    tel = Telemetry()
    monitor = RuntimeMonitor(tel, process="test")

    async def main():
        watcher = asyncio.create_task(monitor.watch(interval_s=0.02, sample_every_s=0.01))
        await asyncio.sleep(0.05)
        time.sleep(0.15)  # a callback that blocks the loop
        await asyncio.sleep(0.05)
        monitor.close()
        await asyncio.wait_for(watcher, 1)

    asyncio.run(main())
    assert get(tel, "voxwatch_runtime_slow_callbacks_total", process="test") >= 1
    assert get(tel, "voxwatch_runtime_event_loop_lag_seconds_bucket", process="test", le="0.1") < \
        get(tel, "voxwatch_runtime_event_loop_lag_seconds_count", process="test")
    assert get(tel, "voxwatch_runtime_event_loop_tasks", process="test") >= 1
