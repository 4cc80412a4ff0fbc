"""The FastAPI app: assembles the routers of every part around one AppContext.

Each router module in `voxwatch/api/` exposes `build_router(ctx) -> APIRouter | None` (None when the
part it serves is not running in this process).
"""

from __future__ import annotations

import importlib

from fastapi import FastAPI
from pydantic import BaseModel

from voxwatch.context import AppContext


class ErrorBody(BaseModel):
    """Every 4xx answer: one line that says what was wrong with the request."""

    detail: str | list


# Documented on every operation (the fuzz test in tests/dashboards/test_api_fuzz.py holds the API to it):
# 400 bad input, 401 no or unknown token, 403 token without the scope, 404 unknown resource,
# 429 over an admission limit.
ERROR_RESPONSES = {
    400: {"model": ErrorBody, "description": "The request is malformed or asks for something the service refuses"},
    401: {"model": ErrorBody, "description": "No token, or an unknown one (where the endpoint needs a token)"},
    403: {"model": ErrorBody, "description": "The token lacks the scope this endpoint needs"},
    404: {"model": ErrorBody, "description": "No such resource"},
    429: {"model": ErrorBody, "description": "Over a rate or concurrency limit; retry after Retry-After seconds"},
}

# metrics: /metrics exposition; calls: WebRTC signalling; control: degradation; query: analysts' API
ROUTER_MODULES = ("metrics", "calls", "control", "query")
ROUTER_MODULES += ("alert_pages", "reload", "caller")  # /alerts/{rule}; POST /-/reload; CORS, /call page
ROUTER_MODULES += ("ingest",)  # OTLP/HTTP: POST /v1/traces, /v1/metrics; GET /v1/degradation/level


ROUTER_MODULES += ("incidents",)  # incidents: list, timeline, acknowledge/resolve/notes, report, PagerDuty hook
ROUTER_MODULES += ("sources",)  # /api/v1/sources: the pipelines (ours, OTLP senders) a range holds calls of


def create_app(ctx: AppContext) -> FastAPI:
    app = FastAPI(title="Voxwatch", version="0.1.0", description="Voice-AI pipeline observability API",
                  responses=ERROR_RESPONSES)
    app.state.ctx = ctx
    for name in ROUTER_MODULES:
        try:
            module = importlib.import_module(f"voxwatch.api.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"voxwatch.api.{name}":
                continue  # that part is not built yet
            raise
        router = module.build_router(ctx)
        if router is not None:
            app.include_router(router)

    @app.get("/healthz", tags=["service"])
    def healthz() -> dict:
        return {"status": "ok"}

    return app
