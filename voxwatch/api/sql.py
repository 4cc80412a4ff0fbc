"""Read-only SQL for analysts: one read statement, bounded in rows, time, memory and result size,
refused if it writes, and admitted by a gate (voxwatch/api/admission.py) so analysts never crowd out
the dashboards or the monitoring loop.

The query runs on the store's analyst lane (its own connections, the lowest engine priority). Its
time limit counts the wait for a turn; when the caller goes away, the running query is cancelled in
the engine rather than left to finish for nobody.
"""

# ruff: noqa: B008  (FastAPI declares parameters with Query/Depends defaults by design)
from __future__ import annotations

import asyncio
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request

from telemetry.store import StoreError
from voxwatch.api.admission import AdmissionGate, Refused
from voxwatch.api.deps import Ctx, Limits, ReadToken, StoreDep, bad
from voxwatch.api.query_models import SqlRequest, SqlResponse
from voxwatch.api.rows import cell
from voxwatch.context import AppContext

router = APIRouter(tags=["sql"])

DISCONNECT_POLL_S = 0.25
# Past the engine's own time limit, the API stops waiting and cancels: a query the engine failed to
# stop (it checks the limit between blocks) must not hold a turn forever.
ENGINE_GRACE_S = 5.0

_SETUP_LOCK = threading.Lock()


class AnalystRunner:
    """One per service: the admission gate and the threads analysts' queries run on."""

    def __init__(self, ctx: AppContext, limits) -> None:
        self.gate = AdmissionGate(limits.sql_max_concurrent, limits.sql_max_per_token, limits.sql_max_queue)
        self.pool = ThreadPoolExecutor(max_workers=limits.sql_max_concurrent, thread_name_prefix="voxwatch-sql")
        self.running: set[str] = set()  # tags of the queries in the engine now

    def cancel_all(self, store) -> int:
        """Stop every analyst query still running (the service is shutting down)."""
        n = 0
        for tag in list(self.running):
            try:
                n += store.cancel(tag)
            except Exception:  # noqa: BLE001 - best effort: the store closes next anyway
                pass
        return n


def get_runner(ctx: Ctx, limits: Limits) -> AnalystRunner:
    with _SETUP_LOCK:
        runner = ctx.extras.get("analyst_runner")
        if runner is None:
            runner = ctx.extras["analyst_runner"] = AnalystRunner(ctx, limits)
        return runner


Runner = Annotated[AnalystRunner, Depends(get_runner)]


@router.post("/sql", response_model=SqlResponse, summary="Read-only SQL for analysts, bounded in rows and time",
             responses={429: {"description": "too many analyst queries: retry after the Retry-After seconds"}})
async def post_sql(token: ReadToken, store: StoreDep, limits: Limits, runner: Runner, request: Request,
                   body: SqlRequest) -> SqlResponse:
    arrived = time.monotonic()
    max_rows = body.max_rows or limits.sql_max_rows
    max_seconds = body.max_seconds or limits.sql_max_seconds
    if max_rows > limits.sql_max_rows:
        bad(f"max_rows {max_rows} is above the limit of {limits.sql_max_rows}")
    if max_seconds > limits.sql_max_seconds:
        bad(f"max_seconds {max_seconds:g} is above the limit of {limits.sql_max_seconds:g}")
    try:
        async with runner.gate.turn(token.name, max_seconds):
            left = max_seconds - (time.monotonic() - arrived)  # the time limit counts the queue
            if left < 0.05:
                raise Refused("the time limit ran out while waiting for a turn: try again later", 1)
            tag = uuid.uuid4().hex
            analyst = store.with_lane("analyst", query_tag=tag)
            t0 = time.perf_counter()
            # one row more than asked tells whether the answer was cut
            job = asyncio.get_running_loop().run_in_executor(
                runner.pool, lambda: analyst.readonly_query(body.sql, max_rows=max_rows + 1, max_seconds=left))
            runner.running.add(tag)
            try:
                df = await _until_done_or_gone(job, request, store, tag, left + ENGINE_GRACE_S)
            finally:
                runner.running.discard(tag)
            elapsed = (time.perf_counter() - t0) * 1000
    except Refused as exc:
        raise HTTPException(429, str(exc), headers={"Retry-After": str(exc.retry_after_s)}) from None
    except StoreError as exc:
        bad(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    truncated = len(df) > max_rows
    df = df.head(max_rows)
    rows = [[cell(v) for v in row] for row in df.itertuples(index=False, name=None)]
    return SqlResponse(columns=[str(c) for c in df.columns], types=[str(t) for t in df.dtypes], rows=rows,
                       row_count=len(rows), truncated=truncated, elapsed_ms=elapsed)


async def _until_done_or_gone(job: asyncio.Future, request: Request, store, tag: str, wall_s: float):
    """The query's result; if the client disconnects or the wall time passes first, cancel the query
    in the engine (and wait for its thread, so the turn is given back only once it has stopped)."""
    deadline = time.monotonic() + wall_s
    while True:
        done, _ = await asyncio.wait({job}, timeout=DISCONNECT_POLL_S)
        if done:
            return job.result()
        gone = await request.is_disconnected()
        if gone or time.monotonic() > deadline:
            await asyncio.get_running_loop().run_in_executor(None, store.cancel, tag)
            try:
                await job
            except StoreError:
                pass
            if gone:
                raise HTTPException(499, "the client closed the connection; its query was cancelled")
            bad(f"the query ran past its time limit and was cancelled ({wall_s:.0f} s)", 408)
