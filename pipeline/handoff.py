"""The human handoff queue: a call that asks for a person, is misunderstood repeatedly, or arrives
while the pipeline hands everything off, waits here for an agent with its context preserved
(transcript, intents, facts found), so the agent does not ask the caller to start over.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from dataclasses import dataclass, field
from typing import Any


@dataclass
class HandoffRequest:
    call_id: str
    reason: str  # caller_request | misunderstanding | degradation | failure
    region: str
    language: str
    transcript: list[dict[str, Any]]  # [{turn, caller, agent, intent}]
    intents: list[str]
    context: dict[str, Any] = field(default_factory=dict)
    enqueued_at: float = 0.0
    assigned_at: float | None = None


class HandoffQueue:
    """FIFO of callers waiting for `agents` humans; `tick` assigns free agents (handle time given)."""

    def __init__(self, clock, *, agents: int = 200, handle_time_s: float = 240.0, metrics=None, capacity: int = 1_000_000, patience_s: float = 120.0) -> None:
        self.clock = clock
        self.patience_s = patience_s  # callers waiting longer than this hang up
        self.agents = agents
        self.handle_time_s = handle_time_s
        self.metrics = metrics
        self.capacity = capacity
        self._waiting: deque[HandoffRequest] = deque()
        self._busy_until: list[tuple[float, int]] = []  # heap of (free at, seq)
        self._seq = itertools.count()
        self.enqueued = 0
        self.assigned = 0
        self.abandoned = 0
        self.recent: deque[HandoffRequest] = deque(maxlen=1000)  # for operators and tests

    def __len__(self) -> int:
        return len(self._waiting)

    def enqueue(self, request: HandoffRequest) -> bool:
        if len(self._waiting) >= self.capacity:
            self.abandoned += 1
            return False
        request.enqueued_at = request.enqueued_at or self.clock.now()
        self._waiting.append(request)
        self.recent.append(request)
        self.enqueued += 1
        if self.metrics is not None:
            self.metrics.handoff(request)
        return True

    def take(self, now: float | None = None) -> HandoffRequest | None:
        """An agent takes the next caller (real path)."""
        if not self._waiting:
            return None
        req = self._waiting.popleft()
        req.assigned_at = self.clock.now() if now is None else now
        self.assigned += 1
        if self.metrics is not None:
            self.metrics.handoff_assigned(req)
        return req

    def tick(self, now: float) -> None:
        waiting = self._waiting
        while waiting and now - waiting[0].enqueued_at > self.patience_s:
            gone = waiting.popleft()
            self.abandoned += 1
            if self.metrics is not None:
                self.metrics.handoff_abandoned(gone)
        busy = self._busy_until
        while busy and busy[0][0] <= now:
            heapq.heappop(busy)
        while self._waiting and len(busy) < self.agents:
            self.take(now)
            heapq.heappush(busy, (now + self.handle_time_s, next(self._seq)))
        if self.metrics is not None:
            self.metrics.handoff_state(self, now)

    def occupy(self, n: int, now: float, remaining_s) -> None:
        """Mark `n` agents busy with callers taken before `now` (a replay that starts mid-day);
        `remaining_s[i]` is how much of each one's handle time is left."""
        for r in list(remaining_s)[: max(0, min(n, self.agents - len(self._busy_until)))]:
            heapq.heappush(self._busy_until, (now + float(r), next(self._seq)))

    @property
    def agents_busy(self) -> int:
        return len(self._busy_until)

    def oldest_wait(self, now: float) -> float:
        return now - self._waiting[0].enqueued_at if self._waiting else 0.0
