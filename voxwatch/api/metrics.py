"""GET /metrics: the process's metrics in the Prometheus text format, for any Prometheus to scrape.

Served from the registry of the Telemetry the composition root put in the AppContext; absent when this
process has no Telemetry (a read-only API).
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response
from prometheus_client import exposition, generate_latest
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_CONTENT_TYPE
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from voxwatch.context import AppContext

# Every catalog name is a classic Prometheus name, so the body is valid text format 0.0.4, which every
# Prometheus since 2.0 reads (prometheus-client >= 0.22 labels the same text "1.0.0").
TEXT_CONTENT_TYPE = getattr(exposition, "CONTENT_TYPE_PLAIN_0_0_4", exposition.CONTENT_TYPE_LATEST)


def build_router(ctx: AppContext) -> APIRouter | None:
    tel = ctx.telemetry
    if tel is None or not getattr(tel, "enabled", False):
        return None
    scrapes = tel["voxwatch_metrics_scrapes_total"]
    scrape_seconds = tel["voxwatch_metrics_scrape_seconds"]
    router = APIRouter(tags=["metrics"])

    @router.get("/metrics", summary="Prometheus exposition of every metric this process records")
    def metrics(request: Request) -> Response:
        t0 = time.perf_counter()
        scrapes.inc()
        # content negotiation as Prometheus does it: OpenMetrics when asked for, text 0.0.4 otherwise
        if "application/openmetrics-text" in request.headers.get("accept", ""):
            body, media_type = generate_openmetrics(tel.registry), OPENMETRICS_CONTENT_TYPE
        else:
            body, media_type = generate_latest(tel.registry), TEXT_CONTENT_TYPE
        scrape_seconds.observe(time.perf_counter() - t0)
        return Response(content=body, media_type=media_type)

    return router
