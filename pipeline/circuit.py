"""Circuit breakers per downstream dependency: when most recent requests fail, stop sending for a
while (open), then let a few through (half-open) and close again if they succeed. A short-circuited
request fails at once instead of holding a pooled connection until it times out, so a dead CRM costs
the caller nothing and its actions go to the retry queue.
"""

from __future__ import annotations

from dataclasses import dataclass

CLOSED, HALF_OPEN, OPEN = 0, 1, 2
STATE_NAMES = {CLOSED: "closed", HALF_OPEN: "half_open", OPEN: "open"}


@dataclass
class CircuitConfig:
    window_s: float = 10.0  # failure ratio is judged over this many seconds
    min_requests: int = 20
    failure_ratio: float = 0.5
    open_s: float = 15.0
    half_open_probes: int = 5


class CircuitBreaker:
    def __init__(self, dependency: str, clock, config: CircuitConfig | None = None, metrics=None) -> None:
        self.dependency = dependency
        self.clock = clock
        self.config = config or CircuitConfig()
        self.metrics = metrics
        self.state = CLOSED
        self.opened_at = 0.0
        self._window_start = clock.now()
        self._ok = 0
        self._failed = 0
        self._probes = 0
        self.short_circuited = 0
        self.transitions: list[tuple[float, str]] = []

    def allow(self, n: int = 1, now: float | None = None) -> int:
        """How many of `n` requests may go now (the rest are short-circuited)."""
        now = self.clock.now() if now is None else now
        if self.state == OPEN and now - self.opened_at >= self.config.open_s:
            self._to(HALF_OPEN, now)
            self._probes = 0
        if self.state == CLOSED:
            return n
        if self.state == HALF_OPEN:
            allowed = max(0, min(n, self.config.half_open_probes - self._probes))
            self._probes += allowed
        else:
            allowed = 0
        refused = n - allowed
        if refused:
            self.short_circuited += refused
            if self.metrics is not None:
                self.metrics.circuit_short_circuited(self.dependency, refused)
        return allowed

    def record(self, ok: int, failed: int, now: float | None = None) -> None:
        now = self.clock.now() if now is None else now
        if self.state == HALF_OPEN:
            if failed:
                self._open(now)
            elif ok and self._probes >= self.config.half_open_probes:
                self._to(CLOSED, now)
                self._reset(now)
            return
        if now - self._window_start > self.config.window_s:
            self._reset(now)
        self._ok += ok
        self._failed += failed
        total = self._ok + self._failed
        if self.state == CLOSED and total >= self.config.min_requests and self._failed / total >= self.config.failure_ratio:
            self._open(now)

    def _open(self, now: float) -> None:
        self.opened_at = now
        self._to(OPEN, now)
        self._reset(now)

    def _reset(self, now: float) -> None:
        self._window_start = now
        self._ok = self._failed = 0

    def _to(self, state: int, now: float) -> None:
        if state == self.state:
            return
        self.state = state
        self.transitions.append((now, STATE_NAMES[state]))
        if self.metrics is not None:
            self.metrics.circuit_transition(self.dependency, STATE_NAMES[state], state)

    def publish(self) -> None:
        if self.metrics is not None:
            self.metrics.circuit_state(self.dependency, self.state)
