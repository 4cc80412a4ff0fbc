"""Integration connectors over HTTP: one `IntegrationConnector` per downstream system (CRM, orders,
ticketing, catalog). The pipeline wraps each call in that system's connection pool and queues failed
actions for retry; the connector only speaks the protocol and reports what the server said."""

from __future__ import annotations

import time

import httpx

from pipeline.engines import IntegrationAction, IntegrationResult
from pipeline.work import note_work

SYSTEMS = ("crm", "orders", "ticketing", "catalog")


class HttpConnector:
    def __init__(self, system: str, client: httpx.AsyncClient) -> None:
        self.system = system
        self._client = client

    async def execute(self, action: IntegrationAction) -> IntegrationResult:
        started = time.time()
        result = await self._request(action)
        note_work("integrations", started, time.time(), system=self.system, operation=action.operation, http_status=result.status)
        return result

    async def _request(self, action: IntegrationAction) -> IntegrationResult:
        headers = {"Idempotency-Key": action.idempotency_key} if action.idempotency_key else {}
        payload = dict(action.payload)
        payload.setdefault("call_id", action.call_id)
        try:
            resp = await self._client.post(f"/v1/{self.system}/{action.operation}", json=payload, headers=headers)
        except httpx.TimeoutException as exc:
            return IntegrationResult(False, error=f"timeout: {exc}", status=504)
        except httpx.TransportError as exc:
            return IntegrationResult(False, error=f"unreachable: {exc}", status=503)
        if resp.status_code != 200:
            return IntegrationResult(False, error=resp.text[:200], status=resp.status_code)
        body = resp.json()
        return IntegrationResult(bool(body.get("ok", True)), data=body.get("data") or {}, status=200)


def http_connectors(base_url: str, timeout_s: float = 3.0, max_connections: int = 64) -> tuple[dict[str, HttpConnector], httpx.AsyncClient]:
    """One connector per system sharing a keep-alive client; close the client when done."""
    client = httpx.AsyncClient(
        base_url=base_url.rstrip("/"),
        timeout=httpx.Timeout(timeout_s, connect=1.0),
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
    )
    return {s: HttpConnector(s, client) for s in SYSTEMS}, client
