"""The notification pipeline: small stages with one signature, `exec(ctx, alerts) -> (ctx, alerts)`,
as in Alertmanager's notify.go. A stage filters the alerts, decides, or delivers; a stage that
returns no alerts ends the run; a failure raises `NotifyError`.

Order for one receiver: inhibit -> silence -> dedup (against the notification log) -> retry
(delivery attempts, each recorded in `notifications`) -> record (the notification log).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from dataclasses import dataclass, field
from typing import Any, Protocol

from alerts.model import Alert
from alerts.notify.nflog import NotificationLog
from alerts.ruleset import InhibitRule, RetryPolicy

log = logging.getLogger(__name__)


class NotifyError(RuntimeError):
    pass


@dataclass
class NotifyContext:
    receiver: str
    group_key: str
    group_labels: dict[str, str]
    clock: Any
    repeat_interval: float = 14400.0
    external_url: str = ""
    notification_id: str = ""
    firing: set[str] = field(default_factory=set)
    resolved: set[str] = field(default_factory=set)
    extra: dict = field(default_factory=dict)


class Stage(Protocol):
    async def exec(self, ctx: NotifyContext, alerts: list[Alert]) -> tuple[NotifyContext, list[Alert]]: ...


class MultiStage:
    """Stages in order; stops early when a stage leaves no alerts."""

    def __init__(self, *stages: Stage) -> None:
        self.stages = list(stages)

    async def exec(self, ctx, alerts):
        for stage in self.stages:
            if not alerts:
                break
            ctx, alerts = await stage.exec(ctx, alerts)
        return ctx, alerts


class Inhibitor:
    """Mutes a target alert while a firing source alert has the same values of the `equal` labels."""

    def __init__(self, rules: list[InhibitRule], alerts_provider) -> None:
        self.rules = rules
        self.alerts_provider = alerts_provider  # () -> iterable of current Alerts

    @staticmethod
    def _match(labels: dict[str, str], matchers: dict[str, str]) -> bool:
        return all(labels.get(k, "") == v for k, v in matchers.items())

    def inhibited_by(self, target: Alert) -> str | None:
        for rule in self.rules:
            if not self._match(target.labels, rule.target_match):
                continue
            for src in self.alerts_provider():
                if src.status != "firing" or src.fingerprint == target.fingerprint:
                    continue
                if not self._match(src.labels, rule.source_match):
                    continue
                if all(src.labels.get(k, "") == target.labels.get(k, "") for k in rule.equal):
                    return src.fingerprint
        return None


class InhibitStage:
    def __init__(self, inhibitor: Inhibitor) -> None:
        self.inhibitor = inhibitor

    async def exec(self, ctx, alerts):
        kept = [a for a in alerts if self.inhibitor.inhibited_by(a) is None]
        if len(kept) < len(alerts):
            ctx.extra["inhibited"] = len(alerts) - len(kept)
        return ctx, kept


class SilenceStage:
    def __init__(self, silences) -> None:
        self.silences = silences

    async def exec(self, ctx, alerts):
        kept = [a for a in alerts if not self.silences.mutes(a.labels)]
        if len(kept) < len(alerts):
            ctx.extra["silenced"] = len(alerts) - len(kept)
        return ctx, kept


def notification_id(receiver: str, group_key: str, firing: set[str], resolved: set[str]) -> str:
    """Same content -> same id: the idempotency key a webhook receiver can rely on across retries."""
    text = json.dumps([receiver, group_key, sorted(firing), sorted(resolved)])
    return "msg_" + hashlib.sha256(text.encode()).hexdigest()[:24]


class DedupStage:
    """Sends only what the notification log has not seen (Alertmanager's needsUpdate)."""

    def __init__(self, nflog: NotificationLog, send_resolved: bool = True) -> None:
        self.nflog = nflog
        self.send_resolved = send_resolved

    def needs_update(self, entry, firing: set[str], resolved: set[str], now: float, repeat: float) -> bool:
        if entry is None:
            return bool(firing)
        if not entry.is_firing_subset(firing):
            return True
        if not firing:
            # everything resolved: tell the receiver once, if something was firing when it last heard
            return bool(entry.firing)
        if self.send_resolved and not entry.is_resolved_subset(resolved):
            return True
        return entry.ts <= now - repeat

    async def exec(self, ctx, alerts):
        firing = {a.fingerprint for a in alerts if a.status == "firing"}
        resolved = {a.fingerprint for a in alerts if a.status == "resolved"}
        ctx.firing, ctx.resolved = firing, resolved
        entry = self.nflog.query(ctx.receiver, ctx.group_key)
        if not self.needs_update(entry, firing, resolved, ctx.clock.now(), ctx.repeat_interval):
            return ctx, []
        if not self.send_resolved:
            alerts = [a for a in alerts if a.status == "firing"]
            if not alerts:
                return ctx, []
        ctx.notification_id = notification_id(ctx.receiver, ctx.group_key, firing, resolved)
        return ctx, alerts


class RetryStage:
    """Delivers through a receiver, retrying 429/5xx/timeouts with exponential backoff and jitter,
    honouring Retry-After, waiting on the injected clock; every attempt is a `notifications` row."""

    def __init__(self, receiver, policy: RetryPolicy, writer=None, on_attempt=None, parked=None) -> None:
        self.receiver = receiver
        self.policy = policy
        self.writer = writer
        self.on_attempt = on_attempt  # callback(row) for metrics/tests
        self.parked = parked  # a Parked counter: deliveries now waiting on the clock for a retry

    def _row(self, ctx, alerts, attempt, result, res) -> dict:
        from alerts.receivers.base import notification_row

        return notification_row(ctx.clock.now(), notification_id=ctx.notification_id, receiver=ctx.receiver,
                                integration=self.receiver.integration, group_key=ctx.group_key, alerts=alerts,
                                attempt=attempt, result=result, res=res)

    def _record(self, row: dict) -> None:
        from alerts.receivers.base import record_notification

        record_notification(row, self.writer, self.on_attempt)

    async def exec(self, ctx, alerts):
        from alerts.receivers.base import DeliveryResult

        p = self.policy
        clock = ctx.clock
        start = clock.now()
        rng = random.Random(ctx.notification_id)
        attempt = 0
        while True:
            attempt += 1
            try:
                res = await self.receiver.send(ctx, alerts)
            except Exception as exc:  # a broken plug-in is a failed attempt, not a dead engine
                log.exception("receiver %s raised", ctx.receiver)
                res = DeliveryResult(False, False, 0, f"{type(exc).__name__}: {exc}")
            elapsed = clock.now() - start
            if res.ok:
                if res.record:
                    self._record(self._row(ctx, alerts, attempt, "delivered", res))
                ctx.extra["attempts"] = attempt
                ctx.extra["delivered_at"] = clock.now()
                return ctx, alerts
            backoff = min(p.max_backoff, p.initial * p.multiplier ** (attempt - 1))
            backoff *= 1 + p.jitter * rng.uniform(-1, 1)
            wait = max(backoff, res.retry_after or 0.0)
            if not res.retry or elapsed + wait > p.max_elapsed:
                self._record(self._row(ctx, alerts, attempt, "failed", res))
                raise NotifyError(f"{ctx.receiver}: {res.error or res.http_status} after {attempt} attempt(s)")
            self._record(self._row(ctx, alerts, attempt, "retrying", res))
            if self.parked is not None:
                self.parked.n += 1
            try:
                await clock.sleep(wait)
            finally:
                if self.parked is not None:
                    self.parked.n -= 1


class RecordStage:
    """After a delivery, the notification log remembers what the receiver now knows."""

    def __init__(self, nflog: NotificationLog) -> None:
        self.nflog = nflog

    async def exec(self, ctx, alerts):
        self.nflog.log(ctx.receiver, ctx.group_key, ctx.firing, ctx.resolved)
        return ctx, alerts


class Parked:
    """How many deliveries are waiting on the clock for their next retry (see AlertEngine.settle)."""

    def __init__(self) -> None:
        self.n = 0


def receiver_pipeline(receiver, config, *, inhibitor, silences, nflog, writer, dedup: bool = True, on_attempt=None, parked=None) -> MultiStage:
    stages: list[Stage] = []
    if inhibitor is not None:
        stages.append(InhibitStage(inhibitor))
    if silences is not None:
        stages.append(SilenceStage(silences))
    if dedup:
        stages.append(DedupStage(nflog, send_resolved=config.send_resolved))
    stages.append(RetryStage(receiver, config.retry, writer, on_attempt, parked))
    if dedup:
        stages.append(RecordStage(nflog))
    return MultiStage(*stages)
