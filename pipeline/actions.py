"""The integration action queue: actions that must happen (update the CRM, open a ticket, start a
return) but must never fail or stall the call. Failed attempts are retried with exponential backoff
and jitter; after `max_attempts` the action is dead-lettered (counted, kept for an operator).

Two drivers over the same queue:
- `await queue.run_worker(execute)` in the real pipeline: an asyncio worker loop on the injected clock;
- `queue.step(now, execute_batch)` in the simulator: hands every due action to a batch executor.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from pipeline.engines import IntegrationAction, IntegrationResult

log = logging.getLogger(__name__)


@dataclass
class RetryPolicy:
    max_attempts: int = 6
    base_delay_s: float = 1.0
    max_delay_s: float = 60.0
    jitter: float = 0.2

    def delay(self, attempt: int, rng: random.Random) -> float:
        d = min(self.max_delay_s, self.base_delay_s * (2 ** max(0, attempt - 1)))
        return d * (1.0 + self.jitter * (2 * rng.random() - 1))


@dataclass(order=True)
class QueuedAction:
    due_at: float
    seq: int
    action: IntegrationAction = field(compare=False)
    enqueued_at: float = field(compare=False, default=0.0)
    attempts: int = field(compare=False, default=0)
    last_error: str = field(compare=False, default="")


class IntegrationQueue:
    def __init__(self, clock, *, retry: RetryPolicy | None = None, metrics=None, seed: int = 0, capacity: int = 1_000_000) -> None:
        self.clock = clock
        self.retry = retry or RetryPolicy()
        self.metrics = metrics
        self.capacity = capacity
        self._heap: list[QueuedAction] = []
        self._seq = itertools.count()
        self._rng = random.Random(seed)
        self._wakeup: asyncio.Event | None = None
        self.enqueued = 0
        self.succeeded = 0
        self.retried = 0
        self.dead_lettered = 0
        self.rejected = 0
        self.dead_letters: list[QueuedAction] = []

    def __len__(self) -> int:
        return len(self._heap)

    def enqueue(self, action: IntegrationAction, now: float | None = None) -> bool:
        """Queue an action; False only when the queue is full (counted as rejected)."""
        now = self.clock.now() if now is None else now
        if len(self._heap) >= self.capacity:
            self.rejected += 1
            if self.metrics is not None:
                self.metrics.queue_event(action.system, "rejected")
            return False
        heapq.heappush(self._heap, QueuedAction(now, next(self._seq), action, now))
        self.enqueued += 1
        if self.metrics is not None:
            self.metrics.queue_event(action.system, "enqueued")
        if self._wakeup is not None:
            self._wakeup.set()
        return True

    def oldest_age(self, now: float) -> float:
        return max((now - q.enqueued_at for q in self._heap), default=0.0) if len(self._heap) < 50_000 else now - min(q.enqueued_at for q in self._heap[:1000])

    def _settle(self, item: QueuedAction, result_ok: bool, error: str, now: float) -> None:
        system = item.action.system
        if result_ok:
            self.succeeded += 1
            if self.metrics is not None:
                self.metrics.queue_event(system, "succeeded", age_s=now - item.enqueued_at, attempts=item.attempts)
            return
        item.last_error = error
        if item.attempts >= self.retry.max_attempts:
            self.dead_lettered += 1
            if len(self.dead_letters) < 10_000:
                self.dead_letters.append(item)
            if self.metrics is not None:
                self.metrics.queue_event(system, "dead_lettered")
            return
        self.retried += 1
        item.due_at = now + self.retry.delay(item.attempts, self._rng)
        item.seq = next(self._seq)
        heapq.heappush(self._heap, item)
        if self.metrics is not None:
            self.metrics.queue_event(system, "retried")

    # ------------------------------------------------------------------ simulator driver
    def step(self, now: float, execute_batch: Callable[[list[QueuedAction], float], list[tuple[bool, str]]], limit: int = 100_000) -> int:
        """Hand every action due by `now` to `execute_batch` (returns (ok, error) per action)."""
        due: list[QueuedAction] = []
        while self._heap and self._heap[0].due_at <= now and len(due) < limit:
            due.append(heapq.heappop(self._heap))
        if not due:
            return 0
        for item in due:
            item.attempts += 1
        results = execute_batch(due, now)
        for item, (ok, err) in zip(due, results, strict=True):
            self._settle(item, ok, err, now)
        return len(due)

    # ------------------------------------------------------------------ real driver
    async def run_worker(self, execute: Callable[[IntegrationAction], Awaitable[IntegrationResult]], poll_s: float = 0.5) -> None:
        """Process actions as they fall due until cancelled. `execute` goes through the pools."""
        self._wakeup = asyncio.Event()
        while True:
            now = self.clock.now()
            if self._heap and self._heap[0].due_at <= now:
                item = heapq.heappop(self._heap)
                item.attempts += 1
                try:
                    result = await execute(item.action)
                    ok, err = result.ok, result.error
                except Exception as exc:  # an integration failure never escapes the queue
                    ok, err = False, f"{type(exc).__name__}: {exc}"
                self._settle(item, ok, err, self.clock.now())
                continue
            wait = poll_s if not self._heap else max(0.0, min(poll_s, self._heap[0].due_at - now))
            self._wakeup.clear()
            await self.clock.sleep(wait if wait > 0 else 0.01)

    def publish(self, now: float) -> None:
        if self.metrics is not None:
            self.metrics.queue_state(self, now)
