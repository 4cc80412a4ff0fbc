"""PagerDuty Events API v2: one event per alert, trigger while firing and resolve when resolved,
with a dedup_key that stays the same for the life of the alert (so PagerDuty merges repeats)."""

from __future__ import annotations

import json

from alerts.model import iso
from alerts.receivers.base import DeliveryResult, HttpReceiver, parse_json_or_none

SEVERITY = {"page": "critical", "critical": "critical", "ticket": "warning", "warning": "warning", "info": "info", "error": "error"}


def dedup_key(alert) -> str:
    return f"voxwatch/{alert.rule}/{alert.fingerprint}"[:255]


def event(alert, routing_key: str, source: str = "voxwatch") -> dict:
    if alert.status == "resolved":
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": dedup_key(alert)}
    summary = alert.annotations.get("summary") or f"{alert.rule} {alert.labels}"
    ev = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key(alert),
        "payload": {
            "summary": summary[:1024],
            "source": alert.labels.get("region") or source,
            "severity": SEVERITY.get(alert.severity, "error"),
            "timestamp": iso(alert.starts_at),
            "component": alert.labels.get("component", alert.labels.get("pool", "")),
            "group": alert.labels.get("team", ""),
            "class": alert.rule,
            "custom_details": {"labels": alert.labels, "annotations": alert.annotations, "value": alert.value if alert.value == alert.value else None},
        },
    }
    links = []
    if alert.generator_url:
        links.append({"href": alert.generator_url, "text": "alert source"})
    if alert.annotations.get("runbook_url"):
        links.append({"href": alert.annotations["runbook_url"], "text": "runbook"})
    if links:
        ev["links"] = links
    return ev


class PagerDutyReceiver(HttpReceiver):
    integration = "pagerduty"

    def url(self) -> str:
        base = (self.config.url or "https://events.pagerduty.com").rstrip("/")
        return base if base.endswith("/v2/enqueue") else base + "/v2/enqueue"

    async def send(self, ctx, alerts: list) -> DeliveryResult:
        # events accepted in an earlier attempt of this notification are not sent again
        done: set = ctx.extra.setdefault("pagerduty_accepted", set())
        sent = []
        last = DeliveryResult(True)
        for a in alerts:
            if a.status == "resolved" and not self.send_resolved:
                continue
            ev = event(a, self.config.routing_key or "")
            key = (ev["dedup_key"], ev["event_action"])
            if key in done:
                continue
            body = json.dumps(ev, separators=(",", ":")).encode()
            sent.append(ev)
            res = await self.post(self.url(), body, {"user-agent": "voxwatch-alerts"}, at=ctx.clock.now())
            if res.ok and res.http_status != 202:
                # PagerDuty answers 202 with {"status": "success"}; anything else is not an acceptance
                reply = parse_json_or_none(res.error.encode()) if res.error else None
                res.ok, res.retry, res.error = False, False, f"unexpected status {res.http_status}: {reply}"
            if not res.ok:
                res.payload = json.dumps(sent)
                return res
            done.add(key)
            last = res
        last.payload = json.dumps(sent)
        return last

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
