"""Push to an existing Alertmanager (one or more instances): `POST /api/v2/alerts` with
`[{labels, annotations, startsAt, endsAt, generatorURL}]`, so teams that already run one keep their
routing, grouping and silences.

This is Prometheus's notifier, not a notification: Alertmanager resolves an alert by itself once
its `endsAt` passes, so a firing alert is a lease that must be renewed. `AlertmanagerPusher` sends
every alert routed to it when it starts firing, again every `resend_delay` while it fires (with
`endsAt` = now + `lease`, a few resend delays ahead), and once resolved with its real `endsAt`.
It bypasses the grouping and the notification-log dedup of the other receivers (Alertmanager does
its own), and Voxwatch's silences and inhibitions (Alertmanager has its own; muting the push would
let the lease lapse and resolve the alert there falsely).

Each Alertmanager URL has its own state: what it last accepted for each alert and when, and a
backoff after a failure (connection refused, timeout, 429, 5xx). A resolve stays due until that
instance accepted it, so an Alertmanager that was down hears the resolve when it is back. Sending
happens in asyncio tasks started from `tick`; evaluation never waits for Alertmanager.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from dataclasses import dataclass, field

from alerts.model import iso
from alerts.receivers.base import DeliveryResult, HttpReceiver, notification_row, record_notification

log = logging.getLogger(__name__)

# Prometheus sends at most this many alerts in one request.
MAX_BATCH = 64


def api_url(url: str) -> str:
    url = url.rstrip("/")
    return url if url.endswith("/api/v2/alerts") else url + "/api/v2/alerts"


def postable_alert(a, now: float, lease: float) -> dict:
    """One alert in Alertmanager's PostableAlert shape; a firing one leases until now + lease."""
    ends = a.ends_at if a.status == "resolved" else now + lease
    return {
        "labels": a.labels,
        "annotations": a.annotations,
        "startsAt": iso(a.starts_at),
        "endsAt": iso(ends),
        "generatorURL": a.generator_url,
    }


@dataclass
class Sent:
    status: str  # firing | resolved, as this instance last accepted it
    starts_at: float
    at: float  # when (engine clock)


@dataclass
class Target:
    """One Alertmanager instance and what it knows."""

    url: str
    sent: dict[str, Sent] = field(default_factory=dict)
    next_attempt: float = float("-inf")
    failures: int = 0  # consecutive failed attempts (the backoff grows with them)
    task: asyncio.Task | None = None
    delivered: int = 0  # alerts accepted
    failed: int = 0  # attempts that failed
    dropped: int = 0  # alerts given up on (rejected with 4xx, or a resolve older than max_elapsed)


class AlertmanagerPusher(HttpReceiver):
    """See the module docstring. `update(alert)` for each alert routed here, `tick()` every
    evaluation; `busy()` says whether a push is on the wire (AlertEngine.settle waits for it)."""

    integration = "alertmanager"

    def __init__(self, config, clock, *, writer=None, on_attempt=None, eval_interval: float = 0.0,
                 client=None, dry_run: list | None = None) -> None:
        super().__init__(config, client, dry_run=dry_run)
        self.clock = clock
        self.writer = writer
        self.on_attempt = on_attempt
        self.resend_delay = config.resend_delay
        self.lease = config.lease_s(eval_interval)
        self.targets = [Target(api_url(u)) for u in config.all_urls()]
        self.alerts: dict = {}  # fingerprint -> the engine's live Alert routed here
        self._updated: set[str] = set()  # fingerprints the engine still reported since the last tick
        self.rng = random.Random(config.name)

    # -- inputs
    def update(self, alert) -> None:
        self.alerts[alert.fingerprint] = alert
        self._updated.add(alert.fingerprint)

    def due(self, t: Target, now: float) -> list:
        out = []
        for fp, a in self.alerts.items():
            last = t.sent.get(fp)
            if a.status == "firing":
                if (last is None or last.status != "firing" or last.starts_at != a.starts_at
                        or now - last.at + 1e-9 >= self.resend_delay):
                    out.append(a)
            elif last is None or last.status == "firing":
                out.append(a)  # resolved and not yet heard by this instance
        return out

    def _forget_done(self, now: float) -> None:
        """Drop resolved alerts the engine has forgotten once every instance heard the resolve (or
        it is too old to matter); until then a resolve stays due."""
        for fp, a in list(self.alerts.items()):
            if a.status != "resolved" or fp in self._updated:
                continue
            heard = all((s := t.sent.get(fp)) is not None and s.status == "resolved" for t in self.targets)
            too_old = now - (a.ends_at or now) > self.config.retry.max_elapsed
            if heard or too_old:
                if too_old and not heard:
                    # Alertmanager resolves it by itself when the last lease runs out
                    for t in self.targets:
                        if (s := t.sent.get(fp)) is None or s.status != "resolved":
                            t.dropped += 1
                del self.alerts[fp]
                for t in self.targets:
                    t.sent.pop(fp, None)

    def tick(self) -> list[asyncio.Task]:
        now = self.clock.now()
        self._forget_done(now)
        self._updated.clear()
        started = []
        for t in self.targets:
            if t.task is not None and not t.task.done():
                continue
            if now + 1e-9 < t.next_attempt:
                continue
            alerts = self.due(t, now)
            if alerts:
                t.task = asyncio.get_running_loop().create_task(self._push(t, alerts))
                started.append(t.task)
        return started

    def busy(self) -> int:
        return sum(1 for t in self.targets if t.task is not None and not t.task.done())

    # -- delivery
    async def _push(self, t: Target, alerts: list) -> None:
        for i in range(0, len(alerts), MAX_BATCH):
            batch = alerts[i : i + MAX_BATCH]
            now = self.clock.now()
            # what is sent is decided now: the alert may change while the request is on the wire
            sent = [(a.fingerprint, a.status, a.starts_at) for a in batch]
            body = json.dumps([postable_alert(a, now, self.lease) for a in batch], separators=(",", ":")).encode()
            try:
                res = await self.post(t.url, body, {"user-agent": "voxwatch-alerts"}, at=now)
            except Exception as exc:  # a broken client is a failed attempt, never a dead engine
                log.exception("alertmanager push to %s raised", t.url)
                res = DeliveryResult(False, True, 0, f"{type(exc).__name__}: {exc}", payload=body.decode())
            done = self.clock.now()
            if res.ok:
                for fp, status, starts in sent:
                    t.sent[fp] = Sent(status, starts, now)
                t.failures = 0
                t.next_attempt = float("-inf")
                t.delivered += len(sent)
                self._record(t, batch, res, "delivered")
                continue
            t.failed += 1
            if res.retry:
                t.failures += 1
                p = self.config.retry
                backoff = min(p.max_backoff, p.initial * p.multiplier ** (t.failures - 1))
                backoff *= 1 + p.jitter * self.rng.uniform(-1, 1)
                t.next_attempt = done + max(backoff, res.retry_after or 0.0)
                self._record(t, batch, res, "retrying")
                log.warning("alertmanager %s: %s; next try in %.1f s", t.url, res.error or res.http_status,
                            t.next_attempt - done)
            else:
                # 4xx: Alertmanager refuses this body; sending it again cannot help. Firing alerts
                # are tried again after resend_delay (their content may change), resolves are dropped.
                for fp, status, starts in sent:
                    t.sent[fp] = Sent(status, starts, now)
                t.dropped += sum(1 for _, s, _ in sent if s == "resolved")
                self._record(t, batch, res, "failed")
                log.error("alertmanager %s refused %d alert(s): %s %s", t.url, len(batch), res.http_status, res.error)
            return

    def _record(self, t: Target, batch: list, res: DeliveryResult, result: str) -> None:
        # a push is not a grouped notification: no notification id, the target's URL as its group
        row = notification_row(self.clock.now(), notification_id="", receiver=self.name, integration=self.integration,
                               group_key=t.url, alerts=batch, attempt=max(1, t.failures), result=result, res=res)
        record_notification(row, self.writer, self.on_attempt)

    def stats(self) -> list[dict]:
        return [{"url": t.url, "delivered": t.delivered, "failed": t.failed, "dropped": t.dropped,
                 "failures_in_a_row": t.failures} for t in self.targets]

    async def drain(self, timeout: float = 10.0) -> None:
        tasks = [t.task for t in self.targets if t.task is not None and not t.task.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def adopt(self, old: AlertmanagerPusher) -> None:
        """Take over what a previous pusher (before a reload) knew, for the URLs both have, so a
        reload neither re-pushes everything nor forgets a resolve still owed to an instance."""
        self.alerts.update(old.alerts)
        by_url = {t.url: t for t in old.targets}
        for t in self.targets:
            o = by_url.get(t.url)
            if o is not None:
                t.sent, t.next_attempt, t.failures = dict(o.sent), o.next_attempt, o.failures
                t.delivered, t.failed, t.dropped = o.delivered, o.failed, o.dropped
