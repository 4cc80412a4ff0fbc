"""Injected time: every component takes a clock, so scenario replays and tests run on virtual time.

`WallClock` is real time; `VirtualClock` only moves when the simulation advances it, which makes an
hour-long incident replay in seconds and the same seed give the same result.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the Unix epoch (float)."""
        ...

    def now_ms(self) -> int:
        """Milliseconds since the Unix epoch."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class WallClock:
    """The real clock for live runs."""

    def now(self) -> float:
        return time.time()

    def now_ms(self) -> int:
        return int(time.time() * 1000)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class VirtualClock:
    """A clock that moves only when advanced; `sleep` waits until the simulation reaches the deadline.

    Sleepers are woken in deadline order by `advance`/`advance_to`, so coroutines that sleep on a
    virtual clock run deterministically for a given order of events.
    """

    def __init__(self, start: float | None = None) -> None:
        # Default: 09:00 UTC today, so a replay lands in the time ranges dashboards show by default.
        if start is None:
            start = (time.time() // 86400) * 86400 + 9 * 3600
        self._now = float(start)
        # A heap of (deadline, sequence, future): thousands of sleeping calls cost log(n) each.
        self._sleepers: list[tuple[float, int, asyncio.Future]] = []
        self._seq = 0

    def now(self) -> float:
        return self._now

    def now_ms(self) -> int:
        return int(round(self._now * 1000))

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut = asyncio.get_running_loop().create_future()
        self._seq += 1
        heapq.heappush(self._sleepers, (self._now + seconds, self._seq, fut))
        await fut

    def next_deadline(self) -> float | None:
        # Sleepers that were cancelled are dropped lazily, when they reach the top.
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)
        return self._sleepers[0][0] if self._sleepers else None

    def advance(self, seconds: float) -> None:
        self.advance_to(self._now + seconds)

    def advance_to(self, t: float) -> None:
        if t < self._now:
            raise ValueError(f"virtual clock cannot go backwards ({t} < {self._now})")
        self._now = float(t)
        while self._sleepers and self._sleepers[0][0] <= t:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)
