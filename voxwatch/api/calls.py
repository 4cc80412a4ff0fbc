"""WebRTC signalling: `POST /v1/calls` takes a caller's SDP offer and returns the edge's answer and the
call id; `GET /v1/calls` lists live calls (read token); `DELETE /v1/calls/{id}` hangs one up (admin token).
The offer is open like a phone number unless the config's `calls` section asks for a token; pages on
other origins may place calls only from `calls.cors_origins` (voxwatch/api/caller.py).

The voice pipeline is taken from `ctx.extras["voice"]` when the composition root built one, or built
on the first offer (Whisper, the classifier and the local stand-in services load then) with the
context's clock, sink and the running pipeline's degradation controller, so the control API's level
applies to WebRTC calls too.
"""

# ruff: noqa: B008  (FastAPI declares parameters with Depends defaults by design)
from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, Field

from pipeline.media.edge import OfferRejected
from voxwatch.api.caller import caller_guard
from voxwatch.auth import require_admin, require_read


class CallOffer(BaseModel):
    sdp: str = Field(description="the caller's SDP offer")
    type: str = Field("offer", description="always 'offer'")


class CallAnswer(BaseModel):
    call_id: str
    sdp: str
    type: str = "answer"


class LiveCall(BaseModel):
    call_id: str
    connected: bool
    setup_s: float | None
    frames_received: int
    audio_received_s: float


def _voice_pipeline(ctx):
    voice = ctx.extras.get("voice")
    if voice is None:
        from pipeline.real.voice import VoicePipeline

        controller = getattr(ctx.pipeline, "controller", None)
        metrics, media = ctx.extras.get("pipeline_metrics"), ctx.extras.get("media_metrics")
        if ctx.telemetry is not None:  # the catalog's instruments: record into the service's registry
            from pipeline.media.metrics import MediaMetrics
            from pipeline.metrics import PipelineMetrics

            metrics = metrics or PipelineMetrics(ctx.telemetry)
            media = media or MediaMetrics(ctx.telemetry)
            ctx.extras["media_metrics"] = media
        voice = VoicePipeline(clock=ctx.clock, sink=ctx.sink, metrics=metrics, media_metrics=media, controller=controller)
        ctx.extras["voice"] = voice
    return voice


def build_router(ctx) -> APIRouter:
    async def shutdown() -> None:
        voice = ctx.extras.get("voice")
        if voice is not None:
            await voice.close()

    router = APIRouter(prefix="/v1/calls", tags=["calls"], on_shutdown=[shutdown])

    @router.post("", response_model=CallAnswer, responses={400: {"description": "the offer cannot be answered"},
                                                           401: {"description": "calls.token is set and not given"},
                                                           403: {"description": "origin not in calls.cors_origins"}})
    async def place_call(offer: CallOffer, cors: dict = Depends(caller_guard)) -> CallAnswer:
        t0 = time.perf_counter()
        voice = _voice_pipeline(ctx)
        media = ctx.extras.get("media_metrics")
        try:
            call = await voice.answer(offer.sdp, offer.type)
        except OfferRejected as exc:
            if media is not None:
                media.offer_rejected(str(exc), time.perf_counter() - t0)
            raise HTTPException(status_code=400, detail=str(exc), headers=cors) from None
        if media is not None:
            media.offer_answered(time.perf_counter() - t0)
        return CallAnswer(call_id=call.call_id, sdp=call.answer_sdp)

    @router.get("", response_model=list[LiveCall])
    async def live_calls(_=Depends(require_read)) -> list[LiveCall]:
        voice = ctx.extras.get("voice")
        if voice is None or voice.edge is None:
            return []
        return [
            LiveCall(call_id=c.call_id, connected=c.connected_at is not None, setup_s=c.setup_s,
                     frames_received=c.transport.frames_received, audio_received_s=c.transport.audio_received_s)
            for c in voice.edge.calls.values()
        ]

    @router.delete("/{call_id}", status_code=204)
    async def hang_up(call_id: str, _=Depends(require_admin)) -> None:
        voice = ctx.extras.get("voice")
        call = voice.edge.calls.get(call_id) if voice is not None and voice.edge is not None else None
        if call is None:
            raise HTTPException(status_code=404, detail=f"no live call {call_id}")
        await call.hang_up("closed_by_operator")
        await asyncio.sleep(0)

    return router
