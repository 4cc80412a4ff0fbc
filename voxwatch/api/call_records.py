"""Stored calls: search them (range, region, language, intent, outcome, latency, transcript words) and
read one call whole (turns, stage spans, transcript, the alerts and degradation actions around it)."""

# ruff: noqa: B008  (FastAPI declares parameters with Query/Depends defaults by design)
from __future__ import annotations

import re

from fastapi import APIRouter, HTTPException, Path, Query

from telemetry.store import reads
from voxwatch.api.deps import Limits, NowMs, ReadToken, StoreDep, bad, time_range
from voxwatch.api.query_models import CallDetail, CallSearchResponse
from voxwatch.api.rows import call_detail, call_summary

router = APIRouter(tags=["calls"])

MAX_SEARCH_WORDS = 10


@router.get("/calls", response_model=CallSearchResponse, summary="Search calls")
def get_calls(
    _: ReadToken, store: StoreDep, limits: Limits, now_ms: NowMs,
    start_ms: int | None = Query(None, description="default: 24 h before end_ms"), end_ms: int | None = None,
    region: list[str] = Query(default_factory=list), language: list[str] = Query(default_factory=list),
    intent: list[str] = Query(default_factory=list), outcome: list[str] = Query(default_factory=list),
    handoff: bool | None = None,
    min_latency_ms: float | None = Query(None, ge=0, description="calls whose P95 turn latency is above this"),
    text: str | None = Query(None, max_length=500, description="words that must all appear in the transcript"),
    traced: bool | None = Query(None, description="only calls whose spans were kept (true) or not (false)"),
    limit: int = Query(100, ge=1), offset: int = Query(0, ge=0, le=1_000_000),
) -> CallSearchResponse:
    if limit > limits.max_search_rows:
        bad(f"limit {limit} is above the maximum of {limits.max_search_rows} calls per request")
    tr = time_range(limits, now_ms, start_ms, end_ms, None, default_span_ms=86_400_000)
    words = [w for w in re.split(r"\s+", text.strip()) if w] if text else None
    if words and len(words) > MAX_SEARCH_WORDS:
        bad(f"at most {MAX_SEARCH_WORDS} words in the transcript search")
    f = reads.CallFilter(tr.start_ms, tr.end_ms, regions=region or None, languages=language or None,
                         intents=intent or None, outcomes=outcome or None, handoff=handoff,
                         min_latency_ms=min_latency_ms, words=words, traced=traced)
    df, total = reads.search_calls(store, f, limit=limit, offset=offset)
    calls = [call_summary(r) for r in df.to_dict("records")]
    return CallSearchResponse(calls=calls, total=total, limit=limit, offset=offset, start_ms=f.start_ms, end_ms=f.end_ms)


@router.get("/calls/{call_id}", response_model=CallDetail,
            summary="One call: turns, stage spans, transcript, alerts, actions")
def get_call(_: ReadToken, store: StoreDep, call_id: str = Path(min_length=1, max_length=200)) -> CallDetail:
    detail = reads.call_detail(store, call_id)
    if detail is None:
        raise HTTPException(404, f"no call with id {call_id!r}")
    return call_detail(detail)
