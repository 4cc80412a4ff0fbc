"""Admission control for analysts' SQL: how many run at once (in all, and per token), a bounded queue
in arrival order, and a refusal with a retry time past it.

A request waits for a turn at most until its own time limit runs out (the limit counts queue time);
a full queue is refused at once, so a burst of heavy queries costs the caller a 429 in milliseconds
rather than a long wait. The gate is thread-safe and serves every event loop of the process (a test
client runs its own).
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field


class Refused(Exception):
    """No turn for this query: the queue is full, or the time limit ran out while it waited."""

    def __init__(self, reason: str, retry_after_s: int) -> None:
        super().__init__(reason)
        self.retry_after_s = retry_after_s


@dataclass
class _Waiter:
    token: str
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    granted: bool = False


@dataclass
class GateStats:
    admitted: int = 0
    queued: int = 0
    refused_full: int = 0
    refused_timeout: int = 0
    running: dict[str, int] = field(default_factory=dict)


class AdmissionGate:
    """`async with gate.turn(token, wait_s)`: run when there is room, or raise `Refused`."""

    def __init__(self, max_total: int, max_per_token: int, max_queue: int) -> None:
        self.max_total, self.max_per_token, self.max_queue = max_total, max_per_token, max_queue
        self._lock = threading.Lock()
        self._queue: deque[_Waiter] = deque()
        self._running: dict[str, int] = {}
        self._mean_run_s = 1.0  # moving mean of run times: the basis of Retry-After
        self.stats = GateStats()

    # -- the caller's side ---------------------------------------------------------------------------
    def turn(self, token: str, wait_s: float) -> _Turn:
        return _Turn(self, token, wait_s)

    async def _enter(self, token: str, wait_s: float) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            # Arrival order among those who may run: a waiter held back only by its own token's
            # limit does not hold back another token.
            if self._has_room(token) and not any(self._has_room(w.token) for w in self._queue):
                self._start(token)
                return
            if len(self._queue) >= self.max_queue:
                self.stats.refused_full += 1
                raise Refused(f"{self._total_running()} analyst queries are running and {len(self._queue)} are "
                              f"waiting (the most this service queues): try again later", self._retry_after())
            waiter = _Waiter(token, loop, loop.create_future())
            self._queue.append(waiter)
            self.stats.queued += 1
        try:
            await asyncio.wait_for(asyncio.shield(waiter.future), timeout=max(0.0, wait_s))
        except (TimeoutError, asyncio.CancelledError) as exc:
            with self._lock:
                if waiter.granted:  # the turn came just as the wait ended: take it, then give it back
                    self._finish(token, 0.0)
                else:
                    self._queue.remove(waiter)
                if isinstance(exc, TimeoutError):
                    self.stats.refused_timeout += 1
                    raise Refused(f"waited {wait_s:.1f} s for a turn, the whole time limit: try again later",
                                  self._retry_after()) from None
            raise

    def _exit(self, token: str, run_s: float) -> None:
        with self._lock:
            self._finish(token, run_s)

    # -- under the lock ---------------------------------------------------------------------------------
    def _has_room(self, token: str) -> bool:
        return self._total_running() < self.max_total and self._running.get(token, 0) < self.max_per_token

    def _total_running(self) -> int:
        return sum(self._running.values())

    def _start(self, token: str) -> None:
        self._running[token] = self._running.get(token, 0) + 1
        self.stats.admitted += 1
        self.stats.running = dict(self._running)

    def _finish(self, token: str, run_s: float) -> None:
        n = self._running.get(token, 0) - 1
        if n > 0:
            self._running[token] = n
        else:
            self._running.pop(token, None)
        if run_s > 0:
            self._mean_run_s = 0.8 * self._mean_run_s + 0.2 * run_s
        # Wake waiters in arrival order; one whose token is at its own limit lets later ones pass.
        for waiter in list(self._queue):
            if self._total_running() >= self.max_total:
                break
            if self._running.get(waiter.token, 0) < self.max_per_token:
                self._queue.remove(waiter)
                waiter.granted = True
                self._start(waiter.token)
                waiter.loop.call_soon_threadsafe(_grant, waiter.future)
        self.stats.running = dict(self._running)

    def _retry_after(self) -> int:
        # The queue ahead drains max_total at a time, each taking about the mean run time.
        ahead = len(self._queue) + self._total_running()
        return max(1, math.ceil(self._mean_run_s * ahead / self.max_total))


def _grant(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(True)


class _Turn:
    def __init__(self, gate: AdmissionGate, token: str, wait_s: float) -> None:
        self.gate, self.token, self.wait_s = gate, token, wait_s
        self.t0 = 0.0

    async def __aenter__(self) -> _Turn:
        await self.gate._enter(self.token, self.wait_s)
        self.t0 = time.monotonic()
        return self

    async def __aexit__(self, *exc) -> None:
        self.gate._exit(self.token, time.monotonic() - self.t0)
