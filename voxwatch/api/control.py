"""The degradation level: read it, ask the pipeline for another, and read the action history.

One router serves both addresses of the same resource:
- `GET|PUT /v1/degradation`: the pipeline's control API (the alerts' HttpActionSink PUTs here); the
  answers are the controller's own state and action.
- `GET|POST /api/v1/degradation`: the query API's view (state from the live controller or, without
  one, the last recorded action; history from the store) and an operator's change.
Both changes take one `DegradationRequest`, check the region against the pipeline's regions, and go
to the same controller. The pipeline owns the decision: the answer says whether it was applied,
reverted or refused, and why. Reading needs the `read` scope, changing needs `admin`.
"""

# ruff: noqa: B008  (FastAPI declares parameters with Query/Depends defaults by design)
from __future__ import annotations

from fastapi import APIRouter, Query

from alerts import tables as alert_tables
from voxwatch.api.deps import PREFIX, AdminToken, Ctx, DayWindow, ReadToken, StoreDep, bad
from voxwatch.api.query_models import (
    ControllerAction,
    ControllerState,
    DegradationChange,
    DegradationRequest,
    DegradationResponse,
    DegradationState,
)
from voxwatch.api.rows import action, int_or_none
from voxwatch.config import ApiToken
from voxwatch.context import AppContext

NO_PIPELINE = "no pipeline runs in this process, so there is no degradation level to control"


def controller_of(ctx: AppContext):
    """The pipeline's degradation controller (anything with `state()` and `request()`), or None."""
    p = ctx.pipeline
    if p is None:
        return None
    for cand in (getattr(p, "degradation", None), getattr(p, "controller", None), p):
        if cand is not None and callable(getattr(cand, "state", None)) and callable(getattr(cand, "request", None)):
            return cand
    return None


def degradation_state(ctx: AppContext, store) -> DegradationState:
    """The level now: the live controller's, else the last one the store recorded, else NORMAL."""
    c = controller_of(ctx)
    if c is not None:
        s = c.state()
        return DegradationState(level=str(s.get("level")), region=s.get("region"), reason=str(s.get("reason") or ""),
                                rule=str(s.get("rule") or ""), since_ms=int_or_none(s.get("since_ms")), source="pipeline",
                                levels=[str(x) for x in s.get("levels", [])])
    last = alert_tables.latest_degradation_level(store) if store is not None else None
    if last is not None:
        return DegradationState(**last, source="store")
    return DegradationState(level="NORMAL", source="none")


def request_level(ctx: AppContext, body: DegradationRequest, token: ApiToken) -> dict:
    """Ask the controller for `body.level`; 503 without a pipeline, 400 for an unknown level or region.
    The action log records who asked (the token's name) after the reason."""
    c = controller_of(ctx)
    if c is None:
        bad(NO_PIPELINE, 503)
    regions = getattr(getattr(ctx.pipeline, "regions", None), "names", None)
    if body.region and regions is not None and body.region not in regions:
        bad(f"unknown region {body.region!r}; known: {', '.join(regions)}")
    reason = f"{body.reason} (by {token.name})" if body.reason else f"(by {token.name})"
    result = c.request(body.level, reason=reason, region=body.region, rule=body.rule or "api")
    if result.get("error"):
        bad(result["error"])
    return result


router = APIRouter(tags=["degradation"])


@router.get("/v1/degradation", response_model=ControllerState, summary="The live controller's degradation state")
def get_controller_state(_: ReadToken, ctx: Ctx) -> dict:
    c = controller_of(ctx)
    if c is None:
        bad(NO_PIPELINE, 503)
    return c.state()


@router.put("/v1/degradation", response_model=ControllerAction,
            summary="Ask the pipeline for a degradation level (admin; the alerts' action sink)")
def put_degradation(token: AdminToken, ctx: Ctx, body: DegradationRequest) -> dict:
    return request_level(ctx, body, token)


@router.get(PREFIX + "/degradation", response_model=DegradationResponse, summary="Degradation level and action history")
def get_degradation(_: ReadToken, ctx: Ctx, store: StoreDep, window: DayWindow,
                    limit: int = Query(500, ge=1, le=10_000)) -> DegradationResponse:
    hist = [action(r) for r in alert_tables.degradation_history(store, window.start_ms, window.end_ms, limit=limit).to_dict("records")]
    return DegradationResponse(state=degradation_state(ctx, store), history=hist)


@router.post(PREFIX + "/degradation", response_model=DegradationChange,
             summary="Ask the pipeline for a degradation level (admin)")
def post_degradation(token: AdminToken, ctx: Ctx, body: DegradationRequest) -> DegradationChange:
    result = request_level(ctx, body, token)
    return DegradationChange(action=action(result), state=degradation_state(ctx, ctx.store))


def build_router(ctx: AppContext) -> APIRouter:
    return router
