"""Read-only SQL for analysts: one read statement, bounded in rows and time, refused if it writes."""

# ruff: noqa: B008  (FastAPI declares parameters with Query/Depends defaults by design)
from __future__ import annotations

import time

from fastapi import APIRouter

from telemetry.store import StoreError
from voxwatch.api.deps import Limits, ReadToken, StoreDep, bad
from voxwatch.api.query_models import SqlRequest, SqlResponse
from voxwatch.api.rows import cell

router = APIRouter(tags=["sql"])


@router.post("/sql", response_model=SqlResponse, summary="Read-only SQL for analysts, bounded in rows and time")
def post_sql(_: ReadToken, store: StoreDep, limits: Limits, body: SqlRequest) -> SqlResponse:
    max_rows = body.max_rows or limits.sql_max_rows
    max_seconds = body.max_seconds or limits.sql_max_seconds
    if max_rows > limits.sql_max_rows:
        bad(f"max_rows {max_rows} is above the limit of {limits.sql_max_rows}")
    if max_seconds > limits.sql_max_seconds:
        bad(f"max_seconds {max_seconds:g} is above the limit of {limits.sql_max_seconds:g}")
    t0 = time.perf_counter()
    try:
        # one row more than asked tells whether the answer was cut
        df = store.readonly_query(body.sql, max_rows=max_rows + 1, max_seconds=max_seconds)
    except StoreError as exc:
        bad(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    elapsed = (time.perf_counter() - t0) * 1000
    truncated = len(df) > max_rows
    df = df.head(max_rows)
    rows = [[cell(v) for v in row] for row in df.itertuples(index=False, name=None)]
    return SqlResponse(columns=[str(c) for c in df.columns], types=[str(t) for t in df.dtypes], rows=rows,
                       row_count=len(rows), truncated=truncated, elapsed_ms=elapsed)
