"""Typed dependencies of the API routers: the running service's context, its store, clock, limits and
metric catalog, the caller's token, and a validated time range.

Routers declare what an endpoint needs in its signature (`store: StoreDep, _: ReadToken`) instead of
closing over a context, so each endpoint reads on its own and can be tested through the app. The
context is the one the composition root handed to `create_app` (`app.state.ctx`).
"""

# ruff: noqa: B008  (FastAPI declares parameters with Query/Depends defaults by design)
from __future__ import annotations

import logging
import threading
from typing import Annotated, Any, NoReturn

from fastapi import Depends, HTTPException, Request

from telemetry.store import reads
from voxwatch.api.query_models import CatalogMetric
from voxwatch.auth import require_admin, require_read
from voxwatch.config import ApiToken, QueryLimits
from voxwatch.context import AppContext

log = logging.getLogger(__name__)

PREFIX = "/api/v1"


def bad(exc: Exception | str, status: int = 400) -> NoReturn:
    """Answer the request with `status` and the reason, in the caller's words."""
    raise HTTPException(status, str(exc)) from None


def get_ctx(request: Request) -> AppContext:
    return request.app.state.ctx


Ctx = Annotated[AppContext, Depends(get_ctx)]


def get_store(ctx: Ctx) -> Any:
    if ctx.store is None:
        bad("no store is open in this process", 503)
    return ctx.store


def get_limits(ctx: Ctx) -> QueryLimits:
    return getattr(ctx.settings, "limits", None) or QueryLimits()


def get_now_ms(ctx: Ctx) -> int:
    return int(ctx.clock.now_ms())


StoreDep = Annotated[Any, Depends(get_store)]  # telemetry.store.Store
Limits = Annotated[QueryLimits, Depends(get_limits)]
NowMs = Annotated[int, Depends(get_now_ms)]
ReadToken = Annotated[ApiToken, Depends(require_read)]
AdminToken = Annotated[ApiToken, Depends(require_admin)]


def time_range(limits: QueryLimits, now_ms: int, start_ms: int | None, end_ms: int | None,
               step_s: float | None = None, default_span_ms: int = 3_600_000) -> reads.TimeRange:
    """The requested range checked against the limits; a bad one is a 400 with the reason."""
    try:
        return reads.time_range(start_ms, end_ms, step_s, now_ms=now_ms, default_span_ms=default_span_ms,
                                max_range_days=limits.max_range_days, max_points=limits.max_points)
    except reads.BadQuery as exc:
        bad(exc)


def day_window(limits: Limits, now_ms: NowMs, start_ms: int | None = None, end_ms: int | None = None) -> reads.TimeRange:
    """`start_ms`/`end_ms` of a history endpoint: the last 24 h unless given."""
    return time_range(limits, now_ms, start_ms, end_ms, None, default_span_ms=86_400_000)


DayWindow = Annotated[reads.TimeRange, Depends(day_window)]


# -- the metric catalog (telemetry's declared metrics), read once per service ------------------------


class CatalogView:
    """Telemetry's metric catalog when it can be loaded, otherwise the metrics seen in the store."""

    def __init__(self) -> None:
        self._declared: list[CatalogMetric] | None = None
        self._lock = threading.Lock()

    def declared(self) -> list[CatalogMetric]:
        with self._lock:
            if self._declared is None:
                self._declared = _load_declared_catalog()
            return self._declared

    def refs(self) -> dict[str, reads.MetricRef]:
        return {m.name: reads.MetricRef(m.id, m.name, m.type, m.unit, m.description, m.capacity) for m in self.declared()}


def _load_declared_catalog() -> list[CatalogMetric]:
    try:
        from telemetry.catalog import default_catalog  # noqa: PLC0415 - telemetry's declared catalog
        specs = list(default_catalog().metrics)
    except Exception as exc:  # noqa: BLE001 - a broken catalog must not take the query API down
        log.warning("metric catalog unavailable, listing metrics seen in the store instead: %s", exc)
        return []
    out = []
    for m in specs:
        capacity = m.capacity if m.capacity is not None else m.capacity_metric
        out.append(CatalogMetric(
            id=int(m.id), name=m.name, type=str(m.type), unit=m.unit, labels=list(m.labels), layer=m.layer,
            component=m.component, description=m.description, capacity=None if capacity is None else str(capacity),
            saturation=bool(m.is_saturation)))
    return out


_CATALOG_LOCK = threading.Lock()


def catalog_of(ctx: AppContext) -> CatalogView:
    """The service's one CatalogView, kept in the context so the catalog file is parsed once."""
    with _CATALOG_LOCK:
        view = ctx.extras.get("catalog_view")
        if view is None:
            view = ctx.extras["catalog_view"] = CatalogView()
        return view


def get_catalog(ctx: Ctx) -> CatalogView:
    return catalog_of(ctx)


Catalog = Annotated[CatalogView, Depends(get_catalog)]
