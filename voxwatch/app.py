"""The FastAPI app: assembles the routers of every part around one AppContext.

Each router module in `voxwatch/api/` exposes `build_router(ctx) -> APIRouter | None` (None when the
part it serves is not running in this process).
"""

from __future__ import annotations

import importlib

from fastapi import FastAPI

from voxwatch.context import AppContext

# metrics: /metrics exposition; calls: WebRTC signalling; control: degradation; query: analysts' API
ROUTER_MODULES = ("metrics", "calls", "control", "query")


ROUTER_MODULES += ("incidents",)  # incidents: list, timeline, acknowledge/resolve/notes, report, PagerDuty hook


def create_app(ctx: AppContext) -> FastAPI:
    app = FastAPI(title="Voxwatch", version="0.1.0", description="Voice-AI pipeline observability API")
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
