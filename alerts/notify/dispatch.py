"""Routing and grouping: each alert finds its routes, joins an aggregation group per route (by the
route's `group_by` labels), and each group flushes its alerts through its receiver's pipeline
after `group_wait`, then every `group_interval` (the dedup stage applies `repeat_interval`).

Timers are checked in `tick(now)` on the injected clock, so a replay runs them in virtual time;
a flush is an asyncio task, and a group never starts a second flush while one is still retrying.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import re
from dataclasses import dataclass, field

from alerts.model import Alert
from alerts.notify.stages import NotifyContext, NotifyError, notification_id
from alerts.ruleset import Route

log = logging.getLogger(__name__)


def route_matches(route: Route, labels: dict[str, str]) -> bool:
    if any(labels.get(k, "") != v for k, v in route.match.items()):
        return False
    return all(re.fullmatch(v, labels.get(k, "")) for k, v in route.match_re.items())


def match_routes(route: Route, labels: dict[str, str], path: str = "0") -> list[tuple[str, Route]]:
    """Alertmanager's tree walk: the deepest matching routes; children first, `continue` to go on."""
    if not route_matches(route, labels):
        return []
    found: list[tuple[str, Route]] = []
    for i, child in enumerate(route.routes):
        sub = match_routes(child, labels, f"{path}/{i}")
        if sub:
            found.extend(sub)
            if not child.continue_:
                break
    return found or [(path, route)]


def resolve_inheritance(route: Route, parent: Route | None = None) -> Route:
    """Children inherit the parent's grouping and timing unless they set their own."""
    update = {}
    if parent is not None:
        for name in ("group_by", "group_wait", "group_interval", "repeat_interval"):
            if name not in route.model_fields_set:
                update[name] = getattr(parent, name)
    resolved = route.model_copy(update=update)
    return resolved.model_copy(update={"routes": [resolve_inheritance(c, resolved) for c in route.routes]})


@dataclass
class AggregationGroup:
    key: str
    route: Route
    labels: dict[str, str]
    created_at: float
    next_flush: float
    alerts: dict[str, Alert] = field(default_factory=dict)
    task: asyncio.Task | None = None
    flushes: int = 0


class Dispatcher:
    def __init__(self, route: Route, pipelines: dict, clock, external_url: str = "", pushers: dict | None = None) -> None:
        self.route = resolve_inheritance(route)
        self.pipelines = pipelines  # receiver name -> MultiStage
        # receiver name -> AlertmanagerPusher: alerts routed there skip grouping and dedup (the
        # pusher re-sends each firing alert every resend_delay so Alertmanager's lease never lapses)
        self.pushers = pushers or {}
        self.clock = clock
        self.external_url = external_url
        self.groups: dict[str, AggregationGroup] = {}
        self.delivered: list[dict] = []  # (receiver, group, notification id, when): for reports and tests
        self.errors: list[str] = []

    def _group_labels(self, route: Route, labels: dict[str, str]) -> dict[str, str]:
        if "..." in route.group_by:
            return dict(labels)
        return {k: labels.get(k, "") for k in route.group_by}

    def update(self, alerts: list[Alert]) -> None:
        now = self.clock.now()
        for a in alerts:
            for path, route in match_routes(self.route, a.labels):
                if route.receiver in self.pushers:
                    self.pushers[route.receiver].update(a)
                    continue
                if route.receiver == "null" or route.receiver not in self.pipelines:
                    continue  # a receiver without a URL (or an action sink) is switched off
                glabels = self._group_labels(route, a.labels)
                key = f"{path}:{json.dumps(glabels, sort_keys=True)}"
                g = self.groups.get(key)
                if g is None:
                    if a.status != "firing":
                        continue  # a resolved alert never opens a group
                    g = self.groups[key] = AggregationGroup(key, route, glabels, now, now + route.group_wait)
                g.alerts[a.fingerprint] = a

    def all_alerts(self) -> list[Alert]:
        seen: dict[str, Alert] = {}
        for g in self.groups.values():
            seen.update(g.alerts)
        return list(seen.values())

    def tick(self) -> list[asyncio.Task]:
        """Start the flushes that are due. Needs a running event loop when a flush is due."""
        now = self.clock.now()
        started = []
        for p in self.pushers.values():
            started.extend(p.tick())
        for g in list(self.groups.values()):
            if g.task is not None and not g.task.done():
                continue
            if not g.alerts:
                del self.groups[g.key]
                continue
            if now + 1e-9 >= g.next_flush:
                g.task = asyncio.get_running_loop().create_task(self._flush(g))
                started.append(g.task)
        return started

    async def _flush(self, g: AggregationGroup) -> None:
        started = self.clock.now()
        snapshot = {fp: (a, a.state, a.resolved_at) for fp, a in g.alerts.items()}
        # a retry resends what this flush decided to send, even if the live alert changes meanwhile
        alerts = sorted((copy.copy(a) for a, _, _ in snapshot.values()), key=lambda a: a.fingerprint)
        firing = {a.fingerprint for a in alerts if a.status == "firing"}
        resolved = {a.fingerprint for a in alerts if a.status == "resolved"}
        ctx = NotifyContext(
            receiver=g.route.receiver,
            group_key=g.key,
            group_labels=g.labels,
            clock=self.clock,
            repeat_interval=g.route.repeat_interval,
            external_url=self.external_url,
            notification_id=notification_id(g.route.receiver, g.key, firing, resolved),
        )
        ok = False
        try:
            pipeline = self.pipelines.get(g.route.receiver)
            if pipeline is None:
                raise NotifyError(f"no receiver named {g.route.receiver!r}")
            ctx, sent = await pipeline.exec(ctx, alerts)
            ok = True
            if sent:
                self.delivered.append(
                    {"receiver": ctx.receiver, "group_key": g.key, "notification_id": ctx.notification_id,
                     "at": ctx.extra.get("delivered_at", self.clock.now()), "firing": sorted(ctx.firing),
                     "resolved": sorted(ctx.resolved)}
                )
        except NotifyError as exc:
            self.errors.append(str(exc))
            log.warning("notification failed: %s", exc)
        except Exception as exc:  # never let one group's failure stop the dispatcher
            self.errors.append(f"{type(exc).__name__}: {exc}")
            log.exception("flush of %s failed", g.key)
        finally:
            g.flushes += 1
            # Alertmanager's timer: the next flush is group_interval after this one started
            g.next_flush = started + g.route.group_interval
            if ok:
                # resolved alerts that were part of this flush and did not change are done
                for fp, (_, state, resolved_at) in snapshot.items():
                    cur = g.alerts.get(fp)
                    if cur is not None and state == "resolved" and cur.state == "resolved" and cur.resolved_at == resolved_at:
                        del g.alerts[fp]

    def forget(self, fingerprints: set[str]) -> None:
        """Drop alerts the engine no longer knows (e.g. their rule was removed and resolved)."""
        for g in self.groups.values():
            for fp in fingerprints:
                g.alerts.pop(fp, None)

    async def drain(self, timeout: float = 10.0) -> None:
        tasks = [g.task for g in self.groups.values() if g.task is not None and not g.task.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
