"""Connections to the store, in lanes, so the on-call path never waits behind an analyst.

Each lane has connections of its own, created on first use up to the lane's size, and the engine's
own scheduler ranks the lanes (ClickHouse's `priority` setting, set once per connection: a lower
number runs first and a busier query of a higher number is paused while it runs). Measured on chdb
26.9 (telemetry notes in the README, "Store concurrency"): queries on different connections to one
folder run at once and release the GIL; queries on one connection run one after another.

- `monitor`: the sink's inserts, snapshots, the anomaly poll, alert state and the notification log.
- `dashboard`: the query API's reads (Overview, call search, series).
- `analyst`: analysts' read-only SQL (admission control in front of it is the API's).
- `control`: one connection for `KILL QUERY` and housekeeping, so a cancel never queues.

A lane that has all its connections busy makes its next caller wait for one of them, never for
another lane's.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

LANES = ("monitor", "dashboard", "analyst", "control")

# ClickHouse `priority`: 1 is the highest; 0 would mean "no priority" and is not used.
LANE_PRIORITY = {"monitor": 1, "control": 1, "dashboard": 2, "analyst": 10}

DEFAULT_LANE_SIZES = {"monitor": 2, "dashboard": 4, "analyst": 4, "control": 1}

# An analyst query uses at most half the cores, so the other half stays free for the dashboards, the
# monitoring loop and this process's Python: priority alone pauses an analyst query only while a
# higher lane's query runs, not between them (measured in the README). Memory, result size, rows and
# time are bounded per statement by the read-only settings (dialect.readonly_settings).
DEFAULT_ANALYST_SETTINGS = {"max_threads": max(1, (os.cpu_count() or 2) // 2)}


class PoolClosed(RuntimeError):
    """The store was closed while a caller waited for a connection."""


@dataclass
class LaneStats:
    created: int = 0
    busy: int = 0
    waits: int = 0  # callers that found every connection of the lane busy
    wait_seconds: float = 0.0


class LanePool:
    """Connections per lane. `connect(lane)` opens one, applying `settings[lane]` (what every query of
    that connection carries: the lane's priority, the analyst limits); `close_conn` closes one."""

    def __init__(self, connect: Callable[[str], object], close_conn: Callable[[object], None],
                 sizes: Mapping[str, int] | None = None) -> None:
        self._connect = connect
        self._close_conn = close_conn
        self.sizes = {**DEFAULT_LANE_SIZES, **(sizes or {})}
        self._idle: dict[str, list] = {lane: [] for lane in self.sizes}
        self.settings: dict[str, dict[str, object]] = {lane: {"priority": LANE_PRIORITY[lane]} for lane in self.sizes}
        self.settings["analyst"].update(DEFAULT_ANALYST_SETTINGS)
        self.stats: dict[str, LaneStats] = {lane: LaneStats() for lane in self.sizes}
        self._cond = threading.Condition()
        self._closed = False

    @contextmanager
    def connection(self, lane: str, timeout: float | None = None) -> Iterator[object]:
        """A connection of `lane` for the duration of the block. If the block raises an exception
        marked `discard_connection = True` (a broken connection), that connection is closed instead
        of going back to the lane."""
        conn = self._acquire(lane, timeout)
        broken = False
        try:
            yield conn
        except BaseException as exc:
            broken = getattr(exc, "discard_connection", False)
            raise
        finally:
            self._release(lane, conn, broken)

    def _acquire(self, lane: str, timeout: float | None):
        if lane not in self.sizes:
            raise ValueError(f"unknown store lane {lane!r}; lanes: {', '.join(self.sizes)}")
        st = self.stats[lane]
        deadline = None if timeout is None else time.monotonic() + timeout
        t0 = None
        with self._cond:
            while True:
                if self._closed:
                    raise PoolClosed("store is closed")
                if self._idle[lane]:
                    conn = self._idle[lane].pop()
                    break
                if st.created < self.sizes[lane]:
                    st.created += 1  # reserved; opened outside the lock (opening may take a while)
                    conn = None
                    break
                if t0 is None:
                    t0 = time.monotonic()
                    st.waits += 1
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"no free {lane} connection within {timeout:g} s")
                self._cond.wait(left)
            st.busy += 1
            if t0 is not None:
                st.wait_seconds += time.monotonic() - t0
        if conn is None:
            try:
                conn = self._connect(lane)
            except BaseException:
                with self._cond:
                    st.created -= 1
                    st.busy -= 1
                    self._cond.notify_all()
                raise
        return conn

    def _release(self, lane: str, conn, broken: bool) -> None:
        with self._cond:
            st = self.stats[lane]
            st.busy -= 1
            if broken or self._closed:
                st.created -= 1
                drop = True
            else:
                self._idle[lane].append(conn)
                drop = False
            self._cond.notify_all()
        if drop:
            self._safe_close(conn)

    def _safe_close(self, conn) -> None:
        try:
            self._close_conn(conn)
        except Exception:  # noqa: BLE001 - a connection that is already gone is closed
            pass

    def set_lane_settings(self, lane: str, settings: Mapping[str, object]) -> None:
        """Change what a lane's connections carry; idle ones are closed so the next opens with it.
        (A connection busy now keeps its old settings until it is next opened.)"""
        with self._cond:
            self.settings[lane] = {**self.settings[lane], **settings}
            idle, self._idle[lane] = self._idle[lane], []
            self.stats[lane].created -= len(idle)
        for conn in idle:
            self._safe_close(conn)

    def close(self, timeout: float = 5.0) -> None:
        """Close idle connections now and busy ones as they come back (waiting up to `timeout`)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            while any(s.busy for s in self.stats.values()) and time.monotonic() < deadline:
                self._cond.wait(max(0.0, deadline - time.monotonic()))
            idle = [c for conns in self._idle.values() for c in conns]
            for conns in self._idle.values():
                conns.clear()
        for conn in idle:
            self._safe_close(conn)

    @property
    def closed(self) -> bool:
        return self._closed
