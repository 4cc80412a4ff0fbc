"""`POST /-/reload` (admin scope): load the config file again, as SIGHUP does. 200 with what was
loaded; 400 with one line per problem when the new config is refused (the running one stays)."""

# ruff: noqa: B008  (FastAPI declares parameters with Depends defaults by design)
from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import JSONResponse

from voxwatch.auth import require_admin
from voxwatch.config import ApiToken


def build_router(ctx) -> APIRouter:
    router = APIRouter(tags=["service"])

    @router.post("/-/reload", summary="Reload the config file, its rules and routing (a bad one is refused whole)",
                 responses={400: {"description": "the new config is refused; the running one stays"}})
    def reload(_: ApiToken = Depends(require_admin)) -> JSONResponse:
        reloader = ctx.extras.get("reloader")
        if reloader is None:
            raise HTTPException(503, "this process was not started by `voxwatch serve`; nothing to reload")
        result = reloader.reload()
        return JSONResponse(result.as_dict(), status_code=200 if result.ok else 400)

    return router
