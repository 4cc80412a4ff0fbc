"""Generic webhook receiver: Alertmanager's version-4 body, signed with Standard Webhooks headers."""

from __future__ import annotations

import json

from alerts.model import iso
from alerts.receivers.base import DeliveryResult, HttpReceiver
from alerts.receivers.signing import sign


def common(dicts: list[dict[str, str]]) -> dict[str, str]:
    if not dicts:
        return {}
    out = dict(dicts[0])
    for d in dicts[1:]:
        out = {k: v for k, v in out.items() if d.get(k) == v}
    return out


def alertmanager_v4_body(ctx, alerts: list, max_alerts: int = 0) -> dict:
    """The body Alertmanager's webhook sends (version 4), from the alerts of one group."""
    shown = alerts[:max_alerts] if max_alerts else alerts
    firing = any(a.status == "firing" for a in alerts)
    return {
        "version": "4",
        "groupKey": ctx.group_key,
        "truncatedAlerts": len(alerts) - len(shown),
        "status": "firing" if firing else "resolved",
        "receiver": ctx.receiver,
        "groupLabels": dict(ctx.group_labels),
        "commonLabels": common([a.labels for a in alerts]),
        "commonAnnotations": common([a.annotations for a in alerts]),
        "externalURL": ctx.external_url,
        "alerts": [
            {
                "status": a.status,
                "labels": a.labels,
                "annotations": a.annotations,
                "startsAt": iso(a.starts_at),
                "endsAt": iso(a.ends_at),
                "generatorURL": a.generator_url,
                "fingerprint": a.fingerprint,
            }
            for a in shown
        ],
    }


class WebhookReceiver(HttpReceiver):
    integration = "webhook"
    follow_redirects = False  # a redirect must not carry a signed body somewhere else

    async def send(self, ctx, alerts: list) -> DeliveryResult:
        if not self.config.url:
            return DeliveryResult(False, False, 0, "no url configured")
        body = json.dumps(alertmanager_v4_body(ctx, alerts, self.config.max_alerts), separators=(",", ":")).encode()
        headers = {"user-agent": "voxwatch-alerts"}
        if self.config.secret:
            # the timestamp is the attempt's time on the engine's clock (a replay signs in virtual time)
            headers.update(sign(self.config.secret, ctx.notification_id, int(ctx.clock.now()), body))
        else:
            headers["webhook-id"] = ctx.notification_id
        return await self.post(self.config.url, body, headers, at=ctx.clock.now())

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
