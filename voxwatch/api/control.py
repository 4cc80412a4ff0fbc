"""The pipeline's control API: read and change its degradation level.

`GET /v1/degradation` returns the controller's state; `PUT /v1/degradation` with `{level, reason,
region, rule}` asks for a level (the alerts' HttpActionSink calls this). The pipeline owns the
decision: the answer says whether it was applied, reverted or refused, and why. Reading needs the
`read` scope, changing needs `admin`.
"""

# ruff: noqa: B008  (FastAPI declares parameters with Depends defaults by design)
from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, Field

from voxwatch.auth import require_admin, require_read
from voxwatch.config import ApiToken


class DegradationRequest(BaseModel):
    level: str = Field(description="NORMAL | CACHED_RESPONSES | INTEGRATIONS_QUEUED | REGION_FAILOVER | HUMAN_HANDOFF")
    reason: str = Field("", max_length=2000, description="why the level is asked for (shown in the action log)")
    region: str | None = Field(None, description="the region to evacuate (REGION_FAILOVER); default: the primary")
    rule: str = Field("", max_length=200, description="the alert rule asking, if any")


class DegradationState(BaseModel):
    level: str
    level_value: int
    region: str | None
    reason: str
    rule: str
    since_ms: int
    cached_intents: list[str]
    levels: list[str]


class DegradationAction(BaseModel):
    action_id: str
    phase: str = Field(description="applied | reverted | refused")
    level: str
    previous_level: str
    region: str
    rule: str
    reason: str
    ts_ms: int
    state: DegradationState


def build_router(ctx) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["control"])

    def controller():
        pipeline = ctx.pipeline
        ctl = getattr(pipeline, "controller", None)
        if ctl is None:
            raise HTTPException(503, "no pipeline runs in this process, so there is no degradation level to control")
        return ctl

    @router.get("/degradation", response_model=DegradationState)
    def get_degradation(_: ApiToken = Depends(require_read)) -> dict:
        return controller().state()

    @router.put("/degradation", response_model=DegradationAction)
    def put_degradation(body: DegradationRequest, _: ApiToken = Depends(require_admin)) -> dict:
        ctl = controller()
        regions = getattr(getattr(ctx.pipeline, "regions", None), "names", None)
        if body.region and regions is not None and body.region not in regions:
            raise HTTPException(400, f"unknown region {body.region!r}; known: {', '.join(regions)}")
        result = ctl.request(body.level, body.reason, region=body.region, rule=body.rule)
        if "error" in result:
            raise HTTPException(400, result["error"])
        return result

    return router
