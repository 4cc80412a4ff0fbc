"""The embedded engine's replaced parts: removed within seconds and on one thread, so a long-running
process does not pile them up in memory and then start a thread per batch to delete them."""

from __future__ import annotations

import time


def _threads() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Threads:"))


def _replaced_parts(store) -> int:
    return int(store.scalar(
        "SELECT count() FROM system.parts WHERE database = currentDatabase() AND table = 'schema_version' AND NOT active"
    ))


def _wait_until_removed(store, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    while (left := _replaced_parts(store)) and time.monotonic() < deadline:
        time.sleep(0.25)
    return left


def test_replaced_parts_are_removed_within_seconds_without_a_thread_burst(store):
    threads_before = _threads()
    for round_ in range(2):
        # 150 one-row inserts, each a part, then merged into one: 150 replaced parts, more than the
        # engine's default threshold (100) for removing them on a pool of threads.
        for i in range(150):
            store.insert("schema_version", {"version": [1000 + round_ * 1000 + i], "applied_ms": [i], "release": ["t"]})
        store.optimize("schema_version")
        # MergeTree's default is a cleanup pass every 30-40 s (backing off to 300 s): twice within 15 s
        # would be luck; the store's settings make it a pass every 1-5 s.
        assert _wait_until_removed(store, 15.0) == 0
    assert store.scalar("SELECT count() FROM schema_version") == 301  # the migration's row and ours
    assert _threads() - threads_before < 50  # the default would start up to 128 removal threads
