"""The monitoring loop as one object: once per second of the injected clock, snapshot the process's
metrics into the store, feed the anomaly service, and evaluate the alert rules, whose actions reach
the pipeline's degradation controller.

`voxwatch serve` runs it on the wall clock; `voxwatch demo` and `voxwatch rules test` call `tick`
from the simulator's per-second hook on a virtual clock. Only the composition root knows all parts,
so the wiring lives here and not in any room.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from alerts import AlertEngine, CallableActionSink, RuleSet
from anomaly.service import AnomalyService
from telemetry.catalog import default_catalog
from telemetry.snapshot import Snapshotter


def anomaly_feed_metrics(ruleset: RuleSet, catalog) -> list[str]:
    """The metrics the anomaly service watches: those that findings-based rules name, with the
    capacity metrics they saturate against (cheap enough to score every second)."""
    names: set[str] = set()
    for r in ruleset.rules():
        metric = getattr(r, "metric", None)
        if r.type in ("predictive", "anomaly") and getattr(r, "source", "findings") == "findings" and metric and "*" not in metric:
            spec = catalog.get(metric)
            if spec is not None and spec.type == "gauge":
                names.add(metric)
                if spec.capacity_metric:
                    names.add(spec.capacity_metric)
    return sorted(names)


def notification_counter(telemetry) -> Callable[[dict], None]:
    """Counts every delivery attempt (webhook, PagerDuty, Alertmanager push) by receiver and result."""
    attempts = telemetry["voxwatch_notifications_total"]
    retries = telemetry["voxwatch_notification_retries_total"]

    def on_attempt(row: dict) -> None:
        attempts.labels(receiver=row["receiver"], result=row["result"]).inc()
        if row["result"] == "retrying":
            retries.labels(receiver=row["receiver"]).inc()

    return on_attempt


class MonitoringLoop:
    def __init__(
        self,
        *,
        telemetry,
        clock,
        ruleset: RuleSet,
        controller=None,
        sink=None,
        store=None,
        external_url: str = "",
        snapshot: bool = True,
        on_finding: Iterable[Callable] = (),
        catalog=None,
        engine_kwargs: dict | None = None,
    ) -> None:
        self.telemetry = telemetry
        self.clock = clock
        self.catalog = catalog or default_catalog()
        self.snapshotter = Snapshotter(telemetry, sink, clock, interval_s=1.0) if snapshot and sink is not None else None
        # engine_kwargs may override any of these (a test writes straight into a store, say)
        kwargs = {"writer": sink, "store": store, "external_url": external_url, **(engine_kwargs or {})}
        if controller is not None:
            kwargs.setdefault("action_sink", CallableActionSink(controller.request, controller.state))
        if getattr(telemetry, "enabled", False):
            kwargs.setdefault("on_attempt", notification_counter(telemetry))
        self.engine = AlertEngine(ruleset, clock, **kwargs)
        self.engine.incidents.telemetry = telemetry  # incident timings into the catalog's histograms
        self.feed = anomaly_feed_metrics(ruleset, self.catalog)
        self.anomaly = AnomalyService(sink=sink, clock=clock, catalog=self.catalog,
                                      on_finding=[self.engine.on_finding, *on_finding]) if self.feed else None
        # The detectors are tuned (and their lead time measured) on one point per series per step of
        # `step_s` (15 s), as the service reads the store; a live feed keeps the same cadence.
        self.anomaly_step_s = self.anomaly.settings.step_s if self.anomaly is not None else 0.0
        self._next_anomaly = float("-inf")

    def expect_faults(self, ground_truth: list[dict], t0: float) -> None:
        """A replayed scenario's faults (seconds from its start `t0`), so each incident names the fault
        it belongs to and times detection from the fault's start."""
        self.engine.incidents.known_faults = [
            {**g, "start_ms": int(round((t0 + g["start_s"]) * 1000)), "end_ms": int(round((t0 + g["end_s"]) * 1000))}
            for g in ground_truth]

    async def tick(self, now: float) -> None:
        if self.snapshotter is not None:
            self.snapshotter.snapshot_once(int(now * 1000))
        registry = self.telemetry.registry
        self.engine.scrape(registry)
        if self.anomaly is not None and now >= self._next_anomaly:
            samples = [(m.name, s.labels, s.value) for m in registry.restricted_registry(self.feed).collect() for s in m.samples]
            self.anomaly.observe(now, samples)
            self._next_anomaly = (now // self.anomaly_step_s + 1) * self.anomaly_step_s
        await self.engine.tick()

    async def run(self, stop: asyncio.Event, interval_s: float = 1.0) -> None:
        """Live: tick on every interval of the clock until `stop` is set."""
        while not stop.is_set():
            await self.tick(self.clock.now())
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval_s)
            except TimeoutError:
                pass

    async def aclose(self) -> None:
        await self.engine.aclose()
