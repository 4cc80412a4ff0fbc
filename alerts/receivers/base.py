"""What every receiver plug-in is: `send(ctx, alerts) -> DeliveryResult`, one attempt, no retries
(the retry stage owns those), never raising for what the far end answers."""

from __future__ import annotations

import email.utils
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

log = logging.getLogger(__name__)

# Enough for any sane acknowledgement; a receiver that streams megabytes back is cut off here.
MAX_RESPONSE_BYTES = 64 * 1024


@dataclass
class DeliveryResult:
    ok: bool
    retry: bool = False
    http_status: int = 0
    error: str = ""
    retry_after: float | None = None  # seconds, from a Retry-After header
    payload: str = ""  # what was sent (for the notifications table)
    record: bool = True  # False: nothing happened worth a notifications row (an idempotent no-op)


def notification_row(now: float, *, notification_id: str, receiver: str, integration: str, group_key: str,
                     alerts: list, attempt: int, result: str, res: DeliveryResult) -> dict:
    """One delivery attempt as a `notifications` row: the one shape the retry stage and the
    Alertmanager pusher both record."""
    return {
        "ts_ms": int(round(now * 1000)),
        "notification_id": notification_id,
        "receiver": receiver,
        "integration": integration,
        "group_key": group_key,
        "status": "firing" if any(a.status == "firing" for a in alerts) else "resolved",
        "attempt": attempt,
        "result": result,
        "http_status": int(res.http_status),
        "error": res.error[:500],
        "alert_fingerprints": sorted(a.fingerprint for a in alerts),
        "payload": res.payload[:20000],
    }


def record_notification(row: dict, writer=None, on_attempt=None) -> None:
    """Write a `notifications` row and tell the observer; recording never stops a delivery."""
    if writer is not None:
        try:
            writer.write("notifications", [row])
        except Exception:
            log.exception("could not record a notification attempt to %s", row["receiver"])
    if on_attempt is not None:
        on_attempt(row)


class Receiver(Protocol):
    name: str
    integration: str  # webhook | pagerduty | alertmanager | action
    send_resolved: bool

    async def send(self, ctx: Any, alerts: list) -> DeliveryResult: ...


def parse_retry_after(value: str | None, now_wall: float | None = None) -> float | None:
    """Retry-After is either seconds or an HTTP date (RFC 9110)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        dt = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if dt is None:
        return None
    return max(0.0, dt.timestamp() - (time.time() if now_wall is None else now_wall))


def classify(status: int) -> tuple[bool, bool]:
    """(ok, retry) for an HTTP status: 2xx ok; 429 and 5xx retry; other 4xx are final."""
    if 200 <= status < 300:
        return True, False
    if status == 429 or status >= 500:
        return False, True
    return False, False


async def post_json(
    client: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str], timeout: float
) -> tuple[int, bytes, dict[str, str]]:
    """POST and read at most MAX_RESPONSE_BYTES of the answer (the rest is dropped unread)."""
    async with client.stream("POST", url, content=body, headers={"content-type": "application/json", **headers}, timeout=timeout) as resp:
        chunks = []
        size = 0
        async for chunk in resp.aiter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size >= MAX_RESPONSE_BYTES:
                break
        return resp.status_code, b"".join(chunks)[:MAX_RESPONSE_BYTES], dict(resp.headers)


def parse_json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


async def http_attempt(client, url: str, body: bytes, headers: dict[str, str], timeout: float) -> DeliveryResult:
    """One HTTP delivery attempt, turned into a DeliveryResult whatever happens on the wire."""
    payload = body.decode()
    try:
        status, resp_body, resp_headers = await post_json(client, url, body, headers, timeout)
    except httpx.TimeoutException as exc:
        return DeliveryResult(False, True, 0, f"timeout: {type(exc).__name__}", payload=payload)
    except httpx.TransportError as exc:
        return DeliveryResult(False, True, 0, f"transport: {type(exc).__name__}: {exc}"[:300], payload=payload)
    except httpx.HTTPError as exc:
        return DeliveryResult(False, False, 0, f"http: {exc}"[:300], payload=payload)
    ok, retry = classify(status)
    err = "" if ok else resp_body[:300].decode("utf-8", "replace")
    ra = parse_retry_after(resp_headers.get("retry-after")) if not ok else None
    return DeliveryResult(ok, retry, status, err, ra, payload)


class HttpReceiver:
    """What every HTTP receiver shares: its config, its name, and one lazily created client."""

    integration = "http"
    follow_redirects = True

    def __init__(self, config, client: httpx.AsyncClient | None = None, dry_run: list | None = None) -> None:
        self.config = config
        self.name = config.name
        self.send_resolved = config.send_resolved
        self._client = client
        # a list here means "do not deliver": each request is appended to it instead (backtests)
        self.dry_run = dry_run

    async def post(self, url: str, body: bytes, headers: dict[str, str], at: float | None = None) -> DeliveryResult:
        """One attempt, or, in a dry run, the record of what would have been sent (accepted as 202)."""
        if self.dry_run is not None:
            self.dry_run.append({"receiver": self.name, "integration": self.integration, "url": url, "at": at,
                                 "body": parse_json_or_none(body)})
            return DeliveryResult(True, http_status=202, payload=body.decode())
        return await http_attempt(self.client(), url, body, headers, self.config.retry.timeout)

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(follow_redirects=self.follow_redirects)
        return self._client
