"""Acknowledging from the pager side: PagerDuty's V3 webhooks.

PagerDuty signs each delivery with `X-PagerDuty-Signature: v1=<hex HMAC-SHA256 of the raw body>`
(several comma-separated while a secret rotates). An `incident.acknowledged` event names the
PagerDuty incident's `incident_key`, which for events Voxwatch sent is the dedup key of the alert
(`voxwatch/<rule>/<fingerprint>`, alerts.receivers.pagerduty), so it leads to the alert and from there
to the incident holding it.
"""

from __future__ import annotations

import hashlib
import hmac

ACK_EVENTS = {"incident.acknowledged"}


def verify_pagerduty(secret: str, body: bytes, header: str | None) -> bool:
    """True when one of the header's v1 signatures is the body's HMAC-SHA256 under `secret`."""
    if not secret or not header:
        return False
    want = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    for part in header.split(","):
        scheme, _, sig = part.strip().partition("=")
        if scheme == "v1" and hmac.compare_digest(sig.strip(), want):
            return True
    return False


def acknowledgement(payload: dict) -> tuple[str, str] | None:
    """(alert fingerprint, who) for a PagerDuty acknowledgement of an incident Voxwatch triggered, else None."""
    event = payload.get("event") if isinstance(payload, dict) else None
    if not isinstance(event, dict) or event.get("event_type") not in ACK_EVENTS:
        return None
    data = event.get("data") or {}
    key = str(data.get("incident_key") or "")
    parts = key.split("/")
    if len(parts) < 3 or parts[0] != "voxwatch":
        return None
    agent = event.get("agent") or {}
    who = str(agent.get("summary") or agent.get("id") or "someone")
    return parts[-1], f"{who} (PagerDuty)"
