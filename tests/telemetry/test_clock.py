"""The injected clocks: the virtual clock wakes sleepers in deadline order and never goes back."""

from __future__ import annotations

import asyncio

import pytest

from telemetry.clock import VirtualClock, WallClock


def test_virtual_clock_wakes_sleepers_in_deadline_order():
    clock = VirtualClock(1000.0)
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, s: float) -> None:
        await clock.sleep(s)
        woke.append((name, clock.now()))

    async def main() -> None:
        tasks = [asyncio.create_task(sleeper(n, s)) for n, s in (("c", 3), ("a", 1), ("b", 2), ("a2", 1))]
        await asyncio.sleep(0)
        assert clock.next_deadline() == 1001.0
        while (d := clock.next_deadline()) is not None:
            clock.advance_to(d)
            await asyncio.sleep(0)
        await asyncio.gather(*tasks)

    asyncio.run(main())
    assert woke == [("a", 1001.0), ("a2", 1001.0), ("b", 1002.0), ("c", 1003.0)]


def test_cancelled_sleepers_do_not_hold_the_next_deadline():
    clock = VirtualClock(0.0)

    async def main() -> None:
        t = asyncio.create_task(clock.sleep(5))
        await asyncio.sleep(0)
        t.cancel()
        await asyncio.gather(t, return_exceptions=True)
        assert clock.next_deadline() is None

    asyncio.run(main())


def test_virtual_clock_refuses_to_go_back():
    clock = VirtualClock(10.0)
    clock.advance(5)
    assert clock.now() == 15.0 and clock.now_ms() == 15_000
    with pytest.raises(ValueError, match="backwards"):
        clock.advance_to(14.0)


def test_wall_clock_reads_real_time():
    import time

    assert abs(WallClock().now() - time.time()) < 1.0
