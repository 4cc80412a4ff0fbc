"""Drive asyncio code that sleeps on a VirtualClock: whenever every task is blocked, jump the clock to
the next sleeper's deadline. This is how the turn runner (one task per call, real pools with asyncio
waiters) replays on virtual time in tests and small runs; the batch simulator has its own tick loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from telemetry.clock import VirtualClock

T = TypeVar("T")


async def run_on_virtual_clock(clock: VirtualClock, awaitable: Awaitable[T], *, spins: int = 20, until: float | None = None) -> T:
    """Await `awaitable`, advancing `clock` to the next deadline each time the loop goes idle."""
    task = asyncio.ensure_future(awaitable)
    while not task.done():
        for _ in range(spins):  # let everything that is ready run before time moves
            await asyncio.sleep(0)
            if task.done():
                break
        if task.done():
            break
        deadline = clock.next_deadline()
        if deadline is None:
            await asyncio.sleep(0.001)  # blocked on something real (I/O, a thread)
            continue
        if until is not None and deadline > until:
            task.cancel()
            break
        clock.advance_to(max(deadline, clock.now()))
    return await task
