"""Silences through the query API: list them (read), create one or expire one now (admin).

Validation is the alerts room's (`alerts.notify.silences.check_silence`, run by `Silences.create`):
this module only turns the request's times into one window and the room's refusal into a 400.
"""

# ruff: noqa: B008  (FastAPI declares parameters with Query/Depends defaults by design)
from __future__ import annotations

import threading

from fastapi import APIRouter, HTTPException, Path, Query

from alerts import tables as alert_tables
from alerts.model import StoreWriter
from alerts.notify.silences import SilenceError, Silences
from voxwatch.api.deps import AdminToken, Ctx, NowMs, ReadToken, StoreDep, bad
from voxwatch.api.query_models import Silence, SilenceCreate, SilencesResponse
from voxwatch.api.rows import silence_from, silence_row
from voxwatch.context import AppContext

router = APIRouter(tags=["silences"])

# create and expire read-modify-write one Silences object: one change at a time
_CHANGE_LOCK = threading.Lock()


def silences_of(ctx: AppContext) -> Silences:
    """The alerts room's Silences: the alert engine's own when it runs in this process (so a new
    silence mutes at once), otherwise one loaded from the store that writes back through the sink."""
    engine_silences = getattr(ctx.alerts, "silences", None) if ctx.alerts is not None else None
    if engine_silences is not None and callable(getattr(engine_silences, "create", None)):
        return engine_silences
    return Silences(ctx.clock, writer=ctx.sink or StoreWriter(ctx.store), store=ctx.store)


@router.get("/silences", response_model=SilencesResponse, summary="Silences (newest first)")
def get_silences(_: ReadToken, store: StoreDep, now_ms: NowMs,
                 state: str | None = Query(None, description="active|pending|expired")) -> SilencesResponse:
    items = [silence_row(r, now_ms) for r in alert_tables.silences(store).to_dict("records")]
    if state:
        items = [s for s in items if s.state == state]
    return SilencesResponse(silences=items)


@router.post("/silences", response_model=Silence, status_code=201, summary="Create a silence (admin)")
def post_silence(token: AdminToken, ctx: Ctx, _store: StoreDep, now_ms: NowMs, body: SilenceCreate) -> Silence:
    if body.ends_ms is not None and body.duration_s is not None:
        bad("give ends_ms or duration_s, not both")
    if body.ends_ms is None and body.duration_s is None:
        bad("a silence needs an end: give ends_ms or duration_s")
    starts = now_ms if body.starts_ms is None else body.starts_ms
    ends = body.ends_ms if body.ends_ms is not None else starts + int(body.duration_s * 1000)
    with _CHANGE_LOCK:
        api = silences_of(ctx)
        try:
            silence_id = api.create([m.model_dump() for m in body.matchers], ends / 1000.0, starts_at=starts / 1000.0,
                                    created_by=body.created_by or token.name, comment=body.comment)
        except SilenceError as exc:
            bad(exc)
        return silence_from(api.get(silence_id), now_ms)


@router.delete("/silences/{silence_id}", response_model=Silence, summary="Expire a silence now (admin)")
def expire_silence(_: AdminToken, ctx: Ctx, _store: StoreDep, now_ms: NowMs,
                   silence_id: str = Path(min_length=1, max_length=100)) -> Silence:
    with _CHANGE_LOCK:
        api = silences_of(ctx)
        try:
            api.get(silence_id)
        except SilenceError:
            raise HTTPException(404, f"no silence with id {silence_id!r}") from None
        try:
            expired = api.expire(silence_id)
        except SilenceError as exc:
            bad(exc)
        return silence_from(expired, int(ctx.clock.now_ms()))
