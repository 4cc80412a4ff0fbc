"""OTLP/HTTP ingest (`POST /v1/traces`, `POST /v1/metrics`, `POST /v1/logs`) and the degradation level for external
pipelines (`GET /v1/degradation/level`, ETag and long-poll).

The receiver follows the OTLP/HTTP specification: protobuf or JSON bodies, gzip/deflate, 200 with a
partial-success body naming what was refused, 400 for data that will never parse (not retried),
413 over the body limit, 415 for another content type, and 429/503 with `Retry-After` when this
process cannot take more right now (too many requests at once, the sink's queue near full, the store
unreachable) so the exporter retries later instead of losing data. Refusals are counted per cause in
`voxwatch_ingest_rejected_total{signal, reason}`. A token with the `ingest` scope (or admin) sends;
the same token may read the degradation level.

Decoding and mapping live in telemetry/ingest; this module is only HTTP, admission and wiring. With
`ingest.map_workers: N` trace requests are decoded and mapped in N worker processes
(telemetry/ingest/workers.py); a worker lost mid-request is a 503 with `Retry-After` (`worker_lost`).
"""

# ruff: noqa: B008  (FastAPI declares parameters with Query/Depends defaults by design)
from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials
from starlette.concurrency import run_in_threadpool

from telemetry.ingest import (
    JSON,
    PROTOBUF,
    IngestLimits,
    LogIngest,
    MetricIngest,
    OtlpError,
    TraceIngest,
    otlp,
)
from telemetry.ingest.workers import MapPool, WorkerLost
from voxwatch.auth import _bearer, require_scope
from voxwatch.config import ApiToken, Scope


@dataclass(frozen=True)
class IngestSettings:
    max_body_bytes: int = 8 * 1024 * 1024  # compressed and decompressed alike (the Collector's default is 20 MiB)
    max_inflight: int = 8  # requests decoded at once; more get 429 (bounded memory under any offer)
    queue_high_water: float = 0.8  # share of the sink's memory buffer past which senders are asked to wait
    retry_after_s: int = 2
    map_workers: int = 0  # processes decoding and mapping trace requests (0: this process's thread pool)

    @classmethod
    def from_env(cls, map_workers: int = 0) -> IngestSettings:
        """The limits from the environment; `map_workers` from the config (`ingest.map_workers`), which
        VOXWATCH_INGEST_MAP_WORKERS overrides."""
        env = os.environ
        return cls(
            max_body_bytes=int(env.get("VOXWATCH_INGEST_MAX_BYTES", cls.max_body_bytes)),
            max_inflight=int(env.get("VOXWATCH_INGEST_MAX_INFLIGHT", cls.max_inflight)),
            map_workers=int(env.get("VOXWATCH_INGEST_MAP_WORKERS", map_workers)),
        )


_require_ingest = require_scope(Scope.INGEST)

def _request_body(message: str) -> dict:
    """The OpenAPI request body of an export: the OTLP message, binary or in OTLP JSON."""
    return {"requestBody": {"required": True, "description": f"an OTLP {message}", "content": {
        "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
        "application/json": {"schema": {"type": "object"}},
    }}}


# every status an OTLP export may answer (the body is a google.rpc.Status in the request's encoding)
_OTLP_RESPONSES = {
    400: {"description": "Malformed protobuf or JSON, or a body that is not valid gzip (not retried)"},
    401: {"description": "No token, or an unknown one"},
    403: {"description": "The token lacks the ingest scope"},
    413: {"description": "Body over the size limit (compressed or decompressed)"},
    415: {"description": "Content-Type other than application/x-protobuf or application/json, or an unknown Content-Encoding"},
    429: {"description": "Too many requests at once or the sink's queue nearly full; retry after Retry-After"},
    503: {"description": "The store is unreachable; retry after Retry-After"},
}


def _level_reader(request: Request, creds: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> ApiToken:
    """A pipeline's ingest token or an operator's read token may read the level."""
    try:
        return _require_ingest(request, creds)
    except HTTPException as exc:
        if exc.status_code != 403:
            raise
        return require_scope(Scope.READ)(request, creds)


class OtlpReceiver:
    """One OTLP/HTTP export from request to sink: authentication, limits, back-pressure, decoding,
    mapping, and the counted answer. Holds no state besides the mappers' small caches and the sink."""

    def __init__(self, ctx, tel, settings: IngestSettings) -> None:
        limits = IngestLimits()
        self.clock = ctx.clock
        self.settings = settings
        self.sink = tel.sink
        self.mappers = {"traces": TraceIngest(tel, limits=limits, clock=ctx.clock),
                        "metrics": MetricIngest(tel, limits=limits, clock=ctx.clock),
                        "logs": LogIngest(tel, limits=limits, clock=ctx.clock)}
        self.locks = {k: threading.Lock() for k in self.mappers}  # the mappers' small caches are not thread-safe
        self.inflight = threading.BoundedSemaphore(settings.max_inflight)
        self.m_requests, self.m_rejected = tel["voxwatch_ingest_requests_total"], tel["voxwatch_ingest_rejected_total"]
        self.m_seconds = tel["voxwatch_ingest_request_seconds"]
        self.m_truncated = tel["voxwatch_ingest_truncated_attributes_total"]
        self.m_inflight = tel["voxwatch_ingest_inflight_requests"]
        tel["voxwatch_ingest_inflight_limit"].set(settings.max_inflight)
        # trace requests decoded and mapped in worker processes; submitted only while holding an in-flight
        # slot, so the pool's queue is bounded by max_inflight like everything else admitted
        self.pool = MapPool(settings.map_workers, limits) if settings.map_workers > 0 else None

    def close(self) -> None:
        """Stop the mapping workers (after the HTTP server stopped taking requests)."""
        if self.pool is not None:
            self.pool.shutdown()

    def answer(self, signal: str, status: int, body: bytes, mt: str, headers: dict | None = None) -> Response:
        self.m_requests.labels(signal=signal, code=str(status)).inc()
        return Response(content=body, status_code=status, media_type=mt, headers=headers)

    def refuse(self, signal: str, err: OtlpError, mt: str, retry_after: int | None = None) -> Response:
        self.m_rejected.labels(signal=signal, reason=err.reason).inc()
        headers = {"Retry-After": str(retry_after)} if retry_after else None
        return self.answer(signal, err.status, otlp.failure(err.status, err.message, mt), mt, headers)

    def saturated(self) -> OtlpError | None:
        """Back-pressure from the sink: its memory queue near full, or the store unreachable."""
        # the sink spools past its buffer and never loses a row; asking senders to wait keeps that spool small
        sink = self.sink
        if getattr(sink, "_store_down_until", 0.0) > time.monotonic():
            return OtlpError(503, "store_unavailable", "the store is unreachable; retry later")
        cap = getattr(sink, "max_buffer_rows", 0)
        if cap and sink.pending_rows >= self.settings.queue_high_water * cap:
            return OtlpError(429, "overloaded", f"{sink.pending_rows} rows queued for the store; retry later")
        return None

    async def _admit(self, signal: str, request: Request, reply_mt: str) -> Response | str:
        """The request's media type if it may be read now, else the refusal to answer with."""
        try:
            creds = await _bearer(request)
            _require_ingest(request, creds)
        except HTTPException as exc:
            resp = self.refuse(signal, OtlpError(exc.status_code, "unauthorized", str(exc.detail)), reply_mt)
            resp.headers.update(exc.headers or {})
            return resp
        limit = self.settings.max_body_bytes
        try:
            mt = otlp.media_type(request.headers.get("content-type"))
            length = request.headers.get("content-length")
            if length and length.isdigit() and int(length) > limit:
                raise OtlpError(413, "too_large", f"body of {length} bytes exceeds the limit of {limit}")
        except OtlpError as err:
            return self.refuse(signal, err, reply_mt)
        busy = self.saturated()
        if busy is not None:
            return self.refuse(signal, busy, mt, self.settings.retry_after_s)
        return mt

    async def _read_body(self, request: Request) -> bytes:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.settings.max_body_bytes:
                raise OtlpError(413, "too_large", f"body exceeds the limit of {self.settings.max_body_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def export(self, signal: str, request: Request) -> Response:
        ctype = request.headers.get("content-type")
        reply_mt = PROTOBUF if (ctype or "").lower().startswith(PROTOBUF) else JSON
        mt = await self._admit(signal, request, reply_mt)
        if isinstance(mt, Response):
            return mt
        if not self.inflight.acquire(blocking=False):
            return self.refuse(signal, OtlpError(429, "overloaded", "too many export requests at once; retry later"), mt, 1)
        self.m_inflight.inc()
        t0 = time.perf_counter()
        try:
            body = await self._read_body(request)
            encoding = request.headers.get("content-encoding")
            if self.pool is not None and signal == "traces":
                result = await self._map_in_worker(body, mt, encoding)
            else:
                result = await run_in_threadpool(self._map, signal, body, mt, encoding)
        except WorkerLost as exc:
            # the request was admitted but not mapped: nothing of it is stored, and the sender retries it
            return self.refuse(signal, OtlpError(503, "worker_lost", f"{exc}; retry later"), mt, self.settings.retry_after_s)
        except OtlpError as err:
            return self.refuse(signal, err, mt)
        finally:
            self.inflight.release()
            self.m_inflight.dec()
        self.m_seconds.labels(signal=signal).observe(time.perf_counter() - t0)
        for reason, n in result.reasons.items():
            self.m_rejected.labels(signal=signal, reason=reason).inc(n)
        if result.truncated:
            self.m_truncated.labels(signal=signal).inc(result.truncated)
        return self.answer(signal, 200, otlp.success(signal, result.rejected, result.message, mt), mt)

    async def _map_in_worker(self, body: bytes, mt: str, encoding: str | None):
        """Decode and map in a worker process; the sink, the open traces and the instruments stay here."""
        limit = self.settings.max_body_bytes
        if encoding and encoding.strip().lower() != "identity":  # gzip off the event loop
            raw = await run_in_threadpool(otlp.inflate, body, encoding, limit)
        else:
            raw = otlp.inflate(body, encoding, limit)  # the size check alone
        mapped = await self.pool.map(raw, mt, int(self.clock.now() * 1e9))
        return await run_in_threadpool(self._apply, mapped)

    def _apply(self, mapped):
        with self.locks["traces"]:
            return self.mappers["traces"].apply(mapped)

    def _map(self, signal: str, body: bytes, mt: str, encoding: str | None):
        raw = otlp.inflate(body, encoding, self.settings.max_body_bytes)
        msg = otlp.decode(signal, raw, mt)
        with self.locks[signal]:
            return self.mappers[signal].ingest(msg)


def build_router(ctx) -> APIRouter | None:
    tel = ctx.telemetry
    if tel is None or not getattr(tel, "enabled", False) or getattr(tel, "sink", None) is None:
        return None
    map_workers = getattr(getattr(getattr(ctx, "settings", None), "ingest", None), "map_workers", 0)
    receiver = OtlpReceiver(ctx, tel, IngestSettings.from_env(map_workers))
    router = APIRouter(tags=["ingest"])
    ctx.extras["ingest"] = receiver.mappers
    ctx.extras["ingest_receiver"] = receiver

    @router.post("/v1/traces", summary="OTLP/HTTP trace export (protobuf or JSON, gzip)",
                 responses={200: {"description": "ExportTraceServiceResponse (partial_success when spans were refused)"},
                            **_OTLP_RESPONSES}, openapi_extra=_request_body("ExportTraceServiceRequest"))
    async def traces(request: Request) -> Response:
        return await receiver.export("traces", request)

    @router.post("/v1/metrics", summary="OTLP/HTTP metrics export (protobuf or JSON, gzip)",
                 responses={200: {"description": "ExportMetricsServiceResponse (partial_success when points were refused)"},
                            **_OTLP_RESPONSES}, openapi_extra=_request_body("ExportMetricsServiceRequest"))
    async def metrics(request: Request) -> Response:
        return await receiver.export("metrics", request)

    @router.post("/v1/logs", summary="OTLP/HTTP logs export (protobuf or JSON, gzip)",
                 responses={200: {"description": "ExportLogsServiceResponse (partial_success when records were refused)"},
                            **_OTLP_RESPONSES}, openapi_extra=_request_body("ExportLogsServiceRequest"))
    async def logs(request: Request) -> Response:
        return await receiver.export("logs", request)

    _add_level_route(router, ctx, tel)
    return router


def _add_level_route(router: APIRouter, ctx, tel) -> None:
    """`GET /v1/degradation/level` where this process runs a degradation controller."""
    controller = getattr(getattr(ctx, "pipeline", None), "controller", None)
    if controller is None:
        return
    from voxwatch.levels import LevelFeed, LevelWebhook

    feed = ctx.extras.get("level_feed")
    if feed is None:
        feed = ctx.extras["level_feed"] = LevelFeed(controller, tel)
        ctx.extras["level_webhook"] = LevelWebhook.from_env(feed, sink=tel.sink, telemetry=tel, clock=ctx.clock)

    @router.get("/v1/degradation/level", tags=["control"],
                summary="The degradation level for a pipeline to apply: ETag, and long-poll with `wait`",
                responses={304: {"description": "unchanged (If-None-Match matched, after waiting up to `wait` s)"},
                           401: {"description": "No token, or an unknown one"},
                           403: {"description": "The token has neither the ingest nor the read scope"}})
    async def level(request: Request, wait: float = Query(0.0, ge=0.0, le=300.0,
                                                           description="seconds to hold the request until the level changes"),
                    _: ApiToken = Depends(_level_reader)) -> Response:
        seen = request.headers.get("if-none-match")
        if seen is not None:
            changed = await feed.wait_change(seen, wait)
            if not changed:
                return Response(status_code=304, headers={"ETag": feed.etag})
        return Response(content=json.dumps(feed.state()), media_type="application/json",
                        headers={"ETag": feed.etag, "Cache-Control": "no-cache"})
