"""Regions with failover: each region has a secondary; calls go to the first healthy one.

Health is checked every `check_interval_s`; a region that fails `failures_to_failover` checks in a
row is failed over, so detection plus switch stays under 3 s (1 s checks, 2 failures). The
degradation controller can also evacuate a region at once (REGION_FAILOVER), and a region comes
back when it is healthy again and no evacuation is asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Region:
    name: str
    secondary: str | None = None
    weight: float = 1.0  # share of new calls that originate here
    up: bool = True  # the truth (faults flip it)
    failed_over: bool = False  # what the router acts on
    evacuated: bool = False  # asked by the degradation controller
    consecutive_failures: int = 0
    down_since: float | None = None
    failover_times: list[float] = field(default_factory=list)


class RegionRouter:
    def __init__(self, regions: list[Region], clock, *, check_interval_s: float = 1.0, failures_to_failover: int = 2, metrics=None) -> None:
        if not regions:
            raise ValueError("at least one region is needed")
        self.regions = {r.name: r for r in regions}
        self.clock = clock
        self.check_interval_s = check_interval_s
        self.failures_to_failover = failures_to_failover
        self.metrics = metrics
        self.failovers = 0
        self._last_check = -1e18

    @property
    def names(self) -> list[str]:
        return list(self.regions)

    def serving(self, origin: str) -> str | None:
        """The region that serves a call from `origin` now, or None when nothing can."""
        r = self.regions[origin]
        if not (r.failed_over or r.evacuated):
            return origin
        seen = {origin}
        nxt = r.secondary
        while nxt and nxt not in seen:
            s = self.regions[nxt]
            if not (s.failed_over or s.evacuated):
                return nxt
            seen.add(nxt)
            nxt = s.secondary
        return origin if r.up else None  # nowhere better: stay (degraded) if alive

    def is_up(self, name: str) -> bool:
        return self.regions[name].up

    def set_up(self, name: str, up: bool, now: float | None = None) -> None:
        """Fault injection / real health signal: the region is (not) able to serve."""
        r = self.regions[name]
        now = self.clock.now() if now is None else now
        if r.up and not up:
            r.down_since = now
        r.up = up

    def evacuate(self, name: str | None, on: bool = True) -> None:
        for r in self.regions.values():
            r.evacuated = on and r.name == name
        if self.metrics is not None:
            self.metrics.region_state(self)

    def on_degradation(self, previous, policy) -> None:
        """Degradation listener: REGION_FAILOVER evacuates the named region; lower levels stop that."""
        self.evacuate(policy.failover_region if policy.region_failover else None, policy.region_failover)

    def tick(self, now: float) -> None:
        """Health checks; failover after enough failures in a row, failback when healthy."""
        if now - self._last_check < self.check_interval_s:
            return
        self._last_check = now
        for r in self.regions.values():
            if r.up:
                r.consecutive_failures = 0
                if r.failed_over:
                    r.failed_over = False  # fail back
                    if self.metrics is not None:
                        self.metrics.region_failback(r)
            else:
                r.consecutive_failures += 1
                if not r.failed_over and r.consecutive_failures >= self.failures_to_failover:
                    r.failed_over = True
                    self.failovers += 1
                    took = now - (r.down_since if r.down_since is not None else now)
                    r.failover_times.append(took)
                    if self.metrics is not None:
                        self.metrics.region_failover(r, took)
        if self.metrics is not None:
            self.metrics.region_state(self)
