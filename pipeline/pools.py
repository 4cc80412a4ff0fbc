"""Connection pools in front of each downstream service (CRM, orders, ticketing, catalog, LLM).

A pool is bounded: at most `size` connections are in use, the rest wait in FIFO order and give up
after `acquire_timeout_s`. Saturation (in use / size, waiters) and acquire wait times are what the
article's October 3 incident was about, so every pool reports them.

Two ways to drive the same pool:
- `async with pool.connection():` for the real pipeline (asyncio, any injected clock);
- `pool.serve(arrivals, holds)` for the load simulator, which hands a batch of requests (arrival
  time, how long each holds its connection) and gets back each request's wait and whether it timed
  out. It runs the exact FIFO multi-server queue over the sorted free-times of the connections, so waits come
  from contention, not from a formula.

Pool-saturation response (decided here, documented in the README): when every connection has been
busy with callers waiting for `grow_after_s`, the pool grows by `grow_step` up to `max_size` (the
downstream's agreed connection limit). Beyond `max_size` nothing more is borrowed: the integration
stage sheds optional actions to the retry queue (`shed_waiters` threshold) and required lookups wait
or time out. A leak (connections never returned) shrinks the usable pool; `leaked` reports it.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_right, insort
from collections import deque
from contextlib import asynccontextmanager
from dataclasses import dataclass

import numpy as np


class PoolTimeout(Exception):
    """No connection became free within the pool's acquire timeout."""


@dataclass
class PoolConfig:
    size: int = 50
    max_size: int = 50
    acquire_timeout_s: float = 5.0
    grow_step: int = 10
    grow_after_s: float = 5.0
    shed_waiters: int = 0  # 0: never shed; else optional actions go to the queue past this many waiters


class ConnectionPool:
    def __init__(self, service: str, config: PoolConfig, clock, *, region: str = "", metrics=None) -> None:
        self.service = service
        self.region = region
        self.config = config
        self.clock = clock
        self.metrics = metrics
        self.size = int(config.size)
        self.leaked = 0
        self.resizes = 0
        self.acquired_total = 0
        self.timeouts_total = 0
        self.wait_sum_s = 0.0
        self._saturated_since: float | None = None
        self._busy_accum = 0.0  # connection-seconds handed out by the batch path since the last tick
        self._last_tick: float | None = None
        self.saturated = False  # every usable connection busy and callers waiting (as of the last tick)
        self.utilization = 0.0  # time-averaged share of the pool in use over the last tick
        # async path
        self._in_use = 0
        self._waiters: deque[asyncio.Future] = deque()
        # batch path: when each connection is next free (inf = leaked)
        self._free_at: list[float] = [0.0] * self.size
        self._pending_starts: deque[tuple[float, float]] = deque()  # (arrival, start) of waiting requests

    # ------------------------------------------------------------------ async path (real pipeline)
    @asynccontextmanager
    async def connection(self, timeout_s: float | None = None):
        wait = await self.acquire(timeout_s)
        try:
            yield wait
        finally:
            self.release()

    async def acquire(self, timeout_s: float | None = None) -> float:
        """Wait for a connection; returns the seconds waited. Raises PoolTimeout."""
        t0 = self.clock.now()
        if self._in_use < self.usable and not self._waiters:
            self._in_use += 1
            self._record_acquire(0.0, ok=True)
            return 0.0
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        timeout = self.config.acquire_timeout_s if timeout_s is None else timeout_s
        timer = asyncio.ensure_future(self._expire(fut, timeout))
        try:
            await fut
        except PoolTimeout:
            waited = self.clock.now() - t0
            self._record_acquire(waited, ok=False)
            raise
        finally:
            timer.cancel()
        waited = self.clock.now() - t0
        self._record_acquire(waited, ok=True)
        return waited

    async def _expire(self, fut: asyncio.Future, timeout: float) -> None:
        await self.clock.sleep(timeout)
        if not fut.done():
            try:
                self._waiters.remove(fut)
            except ValueError:
                pass
            fut.set_exception(PoolTimeout(f"{self.service}: no connection within {timeout:.1f}s"))

    def release(self) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)  # hand the connection straight to the next waiter
                return
        self._in_use -= 1

    @property
    def usable(self) -> int:
        return self.size - self.leaked

    def _record_acquire(self, waited: float, ok: bool) -> None:
        if ok:
            self.acquired_total += 1
            self.wait_sum_s += waited
        else:
            self.timeouts_total += 1
        if self.metrics is not None:
            self.metrics.pool_acquire(self, waited, ok)

    # ------------------------------------------------------------------ batch path (simulator)
    def serve(self, arrivals: np.ndarray, holds: np.ndarray, timeout_s: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """FIFO over a batch of requests sorted or not; returns (wait seconds, timed_out mask).

        A request that would wait longer than the timeout gives up at the timeout and takes no
        connection. Requests are served in arrival order within the batch.
        """
        n = len(arrivals)
        waits = np.zeros(n)
        timed_out = np.zeros(n, dtype=bool)
        if n == 0:
            return waits, timed_out
        timeout = self.config.acquire_timeout_s if timeout_s is None else timeout_s
        order = np.argsort(arrivals, kind="stable")
        arr = arrivals[order].tolist()
        hold = holds[order].tolist()
        free_at = self._free_at  # sorted ascending
        pending = self._pending_starts
        w_out = [0.0] * n
        t_out = [False] * n
        for i in range(n):
            a = arr[i]
            k = bisect_right(free_at, a)
            if k:
                # best fit: the connection that frees up last before this request arrives, so a
                # request booked ahead (it arrives later in the tick) leaves idle connections idle
                del free_at[k - 1]
                insort(free_at, a + hold[i])
            else:
                f = free_at[0]
                w = f - a
                if w > timeout:
                    w_out[i] = timeout
                    t_out[i] = True
                    pending.append((a, a + timeout))
                    continue
                del free_at[0]
                insort(free_at, f + hold[i])
                w_out[i] = w
                pending.append((a, f))
        waits[order] = w_out
        timed_out[order] = t_out
        ok = ~timed_out
        self._busy_accum += float(holds[ok].sum())
        self.acquired_total += int(ok.sum())
        self.timeouts_total += int(timed_out.sum())
        self.wait_sum_s += float(waits[ok].sum())
        if self.metrics is not None:
            self.metrics.pool_acquire_batch(self, waits[ok], int(timed_out.sum()))
        return waits, timed_out

    def busy_at(self, t: float) -> int:
        """Connections in use at time t (batch path), leaked ones included."""
        return len(self._free_at) - bisect_right(self._free_at, t)

    def waiting_at(self, t: float) -> int:
        pending = self._pending_starts
        while pending and pending[0][1] <= t and len(pending) > 0:
            pending.popleft()
        # entries are appended in arrival order; starts are not monotone, so count exactly
        return sum(1 for a, s in pending if a <= t < s)

    # ------------------------------------------------------------------ both paths
    def in_use(self, t: float | None = None) -> int:
        if self._waiters or self._in_use:
            return self._in_use + self.leaked
        return min(self.size, self.busy_at(self.clock.now() if t is None else t))

    def waiting(self, t: float | None = None) -> int:
        if self._waiters:
            return sum(1 for f in self._waiters if not f.done())
        return self.waiting_at(self.clock.now() if t is None else t)

    def saturation(self, t: float | None = None) -> float:
        return self.in_use(t) / self.size if self.size else 1.0

    def leak(self, n: int = 1) -> None:
        """Lose `n` connections for good (a code path that never returns them)."""
        n = min(n, self.usable)
        if n <= 0:
            return
        self.leaked += n
        # batch path: the n connections that free up first never come back
        for _ in range(n):
            del self._free_at[0]
            self._free_at.append(float("inf"))
        if self.metrics is not None:
            self.metrics.pool_leak(self, n)

    def reclaim(self) -> None:
        """Get leaked connections back (the leaking client was restarted)."""
        n = self.leaked
        if n <= 0:
            return
        self.leaked = 0
        now = self.clock.now()
        self._free_at = sorted(now if f == float("inf") else f for f in self._free_at)
        if self.metrics is not None:
            self.metrics.pool_leak(self, -n)

    def resize(self, new_size: int, now: float | None = None) -> None:
        now = self.clock.now() if now is None else now
        new_size = max(1, int(new_size))
        delta = new_size - self.size
        if delta == 0:
            return
        if delta > 0:
            for _ in range(delta):
                insort(self._free_at, now)
            for _ in range(delta):  # async path: wake waiters onto the new connections
                if not self._waiters:
                    break
                fut = self._waiters.popleft()
                if not fut.done():
                    self._in_use += 1
                    fut.set_result(None)
        else:
            # shrink: drop the connections that free up last (they finish their work first)
            del self._free_at[new_size:]
        self.size = new_size
        self.resizes += 1
        if self.metrics is not None:
            self.metrics.pool_resize(self, delta)

    def tick(self, now: float) -> None:
        """Once per second: apply the saturation response and publish the pool's gauges."""
        waiting = self.waiting(now)
        elapsed = 0.0 if self._last_tick is None else now - self._last_tick
        self._last_tick = now
        if self._busy_accum > 0 and elapsed > 0:
            # batch path: the integral of connections in use over the interval, not one instant
            # (requests of a batch are booked ahead of time, so an instant would count the future)
            self.utilization = min(1.0, (self._busy_accum + self.leaked * elapsed) / (self.size * elapsed))
            if waiting > 0:
                self.utilization = 1.0
            busy = round(self.utilization * self.size)
        else:
            busy = self.in_use(now)
            self.utilization = min(1.0, busy / self.size) if self.size else 1.0
        self._busy_accum = 0.0
        self.saturated = busy >= self.size and waiting > 0
        if self.saturated:
            if self._saturated_since is None:
                self._saturated_since = now
            elif now - self._saturated_since >= self.config.grow_after_s and self.size < self.config.max_size:
                self.resize(min(self.config.max_size, self.size + self.config.grow_step), now)
                self._saturated_since = now
        else:
            self._saturated_since = None
        if self.metrics is not None:
            self.metrics.pool_state(self, busy, waiting)

    def should_shed(self, now: float | None = None) -> bool:
        """True when optional work should go to the retry queue instead of waiting here."""
        limit = self.config.shed_waiters
        return bool(limit) and self.waiting(now) >= limit


class PoolSet:
    """All pools of one region, by service."""

    def __init__(self, pools: dict[str, ConnectionPool]) -> None:
        self.pools = pools

    def __getitem__(self, service: str) -> ConnectionPool:
        return self.pools[service]

    def get(self, service: str) -> ConnectionPool | None:
        return self.pools.get(service)

    def __iter__(self):
        return iter(self.pools.values())

    def tick(self, now: float) -> None:
        for p in self.pools.values():
            p.tick(now)
