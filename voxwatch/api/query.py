"""The query API: what dashboards and analysts read under `/api/v1` (metric series and the catalog,
calls, the Overview, findings, alerts and notifications, silences, read-only SQL), guarded by bearer
tokens with `read` and `admin` scopes. The degradation level, read and changed at both its
addresses, is `voxwatch.api.control`.

Each resource is a router module of its own whose endpoints declare what they need as typed
dependencies (`voxwatch.api.deps`); this module only gathers them under the prefix. All reads go
through `telemetry.store.reads` against the store the composition root put in the context; bad input
is a 400 with the reason (malformed filters, unknown metrics, backwards or huge ranges, SQL that
writes) or a 422 from the typed models, and never changes anything.
"""

from __future__ import annotations

from fastapi import APIRouter

from voxwatch.api import alert_events, call_records, overview, series, silences, sql
from voxwatch.api.deps import PREFIX
from voxwatch.context import AppContext

RESOURCE_ROUTERS = (overview.router, series.router, call_records.router, alert_events.router, silences.router,
                    sql.router)


def build_router(ctx: AppContext) -> APIRouter | None:
    """The query API's routes, or None when this process has no store to read."""
    if ctx.store is None:
        return None
    router = APIRouter(prefix=PREFIX)
    for r in RESOURCE_ROUTERS:
        router.include_router(r)
    # `voxwatch bench query` times the Overview without HTTP in between
    router.overview = lambda tr, top: overview.overview(ctx, ctx.store, tr, top)
    return router
