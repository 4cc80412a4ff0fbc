"""Metric reads: browse the catalog, the label values of a metric, and a metric over a range
(aggregated, grouped, or as percentiles from histogram buckets)."""

# ruff: noqa: B008  (FastAPI declares parameters with Query/Depends defaults by design)
from __future__ import annotations

from fastapi import APIRouter, Path, Query

from telemetry.store import StoreError, reads
from voxwatch.api.deps import Catalog, Limits, NowMs, ReadToken, StoreDep, bad, time_range
from voxwatch.api.query_models import CatalogMetric, CatalogResponse, MetricLabelsResponse, SeriesResponse

router = APIRouter(tags=["metrics"])


@router.get("/catalog", response_model=CatalogResponse, summary="Browse and search the metric catalog")
def get_catalog(_: ReadToken, store: StoreDep, catalog: Catalog,
                q: str | None = Query(None, description="words matched in name, description, layer"),
                layer: str | None = None, type: str | None = None, stored_only: bool = False) -> CatalogResponse:
    stored = reads.stored_metrics(store)
    stored_ids = {m.metric_id for m in stored}
    declared = catalog.declared()
    source = "catalog"
    if declared:
        metrics = [m.model_copy(update={"stored": m.id in stored_ids}) for m in declared]
    else:
        source = "store"
        metrics = [CatalogMetric(id=m.metric_id, name=m.name, type=m.metric_type, stored=True) for m in stored]
    if q:
        words = q.lower().split()
        metrics = [m for m in metrics if all(w in f"{m.name} {m.description} {m.layer} {m.id}".lower() for w in words)]
    if layer:
        metrics = [m for m in metrics if m.layer == layer]
    if type:
        metrics = [m for m in metrics if m.type == type]
    if stored_only:
        metrics = [m for m in metrics if m.stored]
    return CatalogResponse(metrics=metrics, total=len(metrics), source=source)


@router.get("/metrics/{metric}/labels", response_model=MetricLabelsResponse,
            summary="Label names of a metric and the values seen")
def get_metric_labels(_: ReadToken, store: StoreDep, catalog: Catalog,
                      metric: str = Path(description="catalog id or name")) -> MetricLabelsResponse:
    try:
        ref = reads.resolve_metric(store, metric, catalog.refs())
    except reads.BadQuery as exc:
        bad(exc)
    return MetricLabelsResponse(metric=ref.name, metric_id=ref.metric_id, labels=reads.metric_labels(store, ref))


@router.get("/series", response_model=SeriesResponse, summary="A metric over a time range with a step")
def get_series(
    _: ReadToken, store: StoreDep, catalog: Catalog, limits: Limits, now_ms: NowMs,
    metric: str = Query(description="catalog id or name"),
    label: list[str] = Query(default_factory=list, description="filters: name=value, name!=value, name=~re, name!~re"),
    start_ms: int | None = None, end_ms: int | None = None,
    step_s: float | None = Query(None, description="bucket width; default about 240 points"),
    agg: str = Query("avg", description="avg|min|max|sum|last|count|rate"),
    group_by: str | None = Query(None, description="comma-separated label names to keep (others summed)"),
    percentiles: str | None = Query(None, description="e.g. 0.5,0.95,0.99 (histograms: from buckets)"),
    source: str = Query("auto", description="auto|raw|rollup"),
) -> SeriesResponse:
    tr = time_range(limits, now_ms, start_ms, end_ms, step_s)
    try:
        matchers = reads.parse_matchers(label)
        qs = reads.parse_quantiles(percentiles)
        ref = reads.resolve_metric(store, metric, catalog.refs())
        if ref.metric_type == "histogram" and qs:
            out = reads.histogram_quantiles(store, ref, matchers, tr, qs, source=source)
        elif qs:
            out = reads.sample_quantiles(store, ref, matchers, tr, qs)
        else:
            gb = [g.strip() for g in group_by.split(",") if g.strip()] if group_by is not None else None
            out = reads.metric_series(store, ref, matchers, tr, agg=agg, group_by=gb, source=source)
    except reads.BadQuery as exc:
        bad(exc)
    except StoreError as exc:
        # a filter Python accepts but ClickHouse's RE2 refuses (lookarounds, backreferences)
        bad(f"the store refused this query: {str(exc).splitlines()[0]}")
    return SeriesResponse(**{**out, "agg": None if qs else out.get("agg"), "percentiles": qs or None})
