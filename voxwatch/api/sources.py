"""The pipelines a range holds calls of (`GET /api/v1/sources`): Voxwatch's own and each one sending
OTLP, told apart by `calls.channel`/`calls.scenario`, with the regions their calls and metrics are filed
under. The dashboards' source selector lists them and filters by those regions."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from telemetry.store import reads
from voxwatch.api.deps import PREFIX, Limits, NowMs, ReadToken, StoreDep, time_range


class Source(BaseModel):
    name: str  # the sender's service.name, or "voxwatch" for Voxwatch's own pipeline
    ingested: bool  # received over OTLP
    regions: list[str]
    calls: int


class SourcesResponse(BaseModel):
    start_ms: int
    end_ms: int
    sources: list[Source]


def build_router(ctx) -> APIRouter | None:
    """The route, or None when this process has no store to read (as the query API)."""
    if ctx.store is None:
        return None
    router = APIRouter(prefix=PREFIX, tags=["calls"])

    @router.get("/sources", response_model=SourcesResponse,
                summary="The pipelines with calls in the range (ours and each OTLP sender), with their regions")
    def get_sources(_: ReadToken, store: StoreDep, limits: Limits, now_ms: NowMs, start_ms: int | None = None,
                    end_ms: int | None = None) -> SourcesResponse:
        tr = time_range(limits, now_ms, start_ms, end_ms)
        rows = reads.call_sources(store, tr).to_dict("records")
        return SourcesResponse(start_ms=tr.start_ms, end_ms=tr.end_ms, sources=[
            Source(name=str(r["source"]), ingested=bool(r["ingested"]), regions=sorted(str(x) for x in r["regions"]),
                   calls=int(r["calls"])) for r in rows])

    return router
