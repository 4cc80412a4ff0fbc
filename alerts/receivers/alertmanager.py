"""Push to an existing Alertmanager: `POST /api/v2/alerts` with `[{labels, annotations, startsAt,
endsAt, generatorURL}]`, so teams that already run one keep their routing and silences."""

from __future__ import annotations

import json

from alerts.model import iso
from alerts.receivers.base import DeliveryResult, HttpReceiver, http_attempt

# A firing alert is pushed with endsAt this far ahead, as Prometheus does, so that an evaluator
# that dies lets Alertmanager resolve the alert by itself.
FIRING_LEASE_S = 300.0


def postable_alerts(alerts: list, now: float) -> list[dict]:
    out = []
    for a in alerts:
        ends = a.ends_at if a.status == "resolved" else now + FIRING_LEASE_S
        out.append(
            {
                "labels": a.labels,
                "annotations": a.annotations,
                "startsAt": iso(a.starts_at),
                "endsAt": iso(ends),
                "generatorURL": a.generator_url,
            }
        )
    return out


class AlertmanagerReceiver(HttpReceiver):
    integration = "alertmanager"

    async def send(self, ctx, alerts: list) -> DeliveryResult:
        if not self.config.url:
            return DeliveryResult(False, False, 0, "no url configured")
        url = self.config.url.rstrip("/")
        if not url.endswith("/api/v2/alerts"):
            url += "/api/v2/alerts"
        body = json.dumps(postable_alerts(alerts, ctx.clock.now()), separators=(",", ":")).encode()
        return await http_attempt(self.client(), url, body, {"user-agent": "voxwatch-alerts"}, self.config.retry.timeout)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
