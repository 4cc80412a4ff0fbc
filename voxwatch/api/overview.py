"""The Overview page in one request: traffic and errors, turn-latency percentiles, the most saturated
resources, active alerts and the degradation level, for one range; and the service clock the
dashboards anchor their ranges on."""

# ruff: noqa: B008  (FastAPI declares parameters with Query/Depends defaults by design)
from __future__ import annotations

import re

from fastapi import APIRouter, Query

from alerts import tables as alert_tables
from telemetry.store import reads
from voxwatch.api.control import degradation_state
from voxwatch.api.deps import CatalogView, Ctx, Limits, NowMs, ReadToken, StoreDep, catalog_of, time_range
from voxwatch.api.query_models import (
    ActiveAlert,
    OverviewResponse,
    SaturatedResource,
    SeriesLine,
    TrafficPoint,
)
from voxwatch.api.rows import int_or_none, json_obj, str_map, tte
from voxwatch.context import AppContext

TURN_LATENCY_METRIC_HINTS = ("turn_latency", "turn_duration", "response_latency")

router = APIRouter(tags=["overview"])


@router.get("/now", summary="The service clock (virtual during replays): dashboards anchor ranges on it")
def get_now(_: ReadToken, now_ms: NowMs) -> dict:
    return {"now_ms": now_ms}


@router.get("/overview", response_model=OverviewResponse, summary="Everything the Overview page shows, for one range")
def get_overview(_: ReadToken, ctx: Ctx, store: StoreDep, limits: Limits, now_ms: NowMs,
                 start_ms: int | None = None, end_ms: int | None = None, step_s: float | None = None,
                 top: int = Query(8, ge=1, le=50),
                 region: list[str] = Query(default_factory=list, description="only these regions' calls and turn "
                                           "latency (one pipeline's regions: GET /sources)")) -> OverviewResponse:
    tr = time_range(limits, now_ms, start_ms, end_ms, step_s)
    return overview(ctx, store, tr, top, regions=region or None)


def overview(ctx: AppContext, store, tr: reads.TimeRange, top: int, regions: list[str] | None = None) -> OverviewResponse:
    """The Overview for `tr` (also what `voxwatch bench query` times without HTTP in between)."""
    catalog = catalog_of(ctx)
    traffic = reads.call_traffic(store, tr, regions)
    points = [TrafficPoint(t=int(r["t"]), calls=int(r["calls"]), failed=int(r["failed"]), abandoned=int(r["abandoned"]),
                           handoffs=int(r["handoffs"]),
                           error_ratio=(int(r["failed"]) / int(r["calls"])) if int(r["calls"]) else 0.0)
              for r in traffic.to_dict("records")]
    latency, latency_source = turn_latency(store, catalog, tr, regions)
    sat = reads.saturated_resources(store, saturation_metric_ids(store, catalog), tr, top=top)
    saturation = [SaturatedResource(metric=str(r["metric"]), labels=r["labels"], fingerprint=int(r["fingerprint"]),
                                    value=float(r["value"]), ts_ms=int(r["ts_ms"]),
                                    time_to_exhaustion_s=tte(r.get("time_to_exhaustion_s")))
                  for r in sat.to_dict("records")]
    return OverviewResponse(start_ms=tr.start_ms, end_ms=tr.end_ms, step_ms=tr.step_ms,
                            budget_ms=reads.TURN_LATENCY_BUDGET_MS, traffic=points, latency=latency,
                            latency_source=latency_source, saturation=saturation,
                            active_alerts=active_alerts(store), degradation=degradation_state(ctx, store))


def turn_latency_metric(catalog: CatalogView) -> reads.MetricRef | None:
    refs = catalog.refs()
    for hint in TURN_LATENCY_METRIC_HINTS:
        for name, ref in refs.items():
            if hint in name and ref.metric_type == "histogram":
                return ref
    return None


def turn_latency(store, catalog: CatalogView, tr: reads.TimeRange,
                 regions: list[str] | None = None) -> tuple[list[SeriesLine], str]:
    """P50/P95/P99 of turn latency in ms: from the turn-latency histogram when stored, else from turn spans
    (those of every region: spans carry none)."""
    qs = [0.5, 0.95, 0.99]
    ref = turn_latency_metric(catalog)
    matchers = [reads.LabelMatcher("region", "=~", "|".join(re.escape(r) for r in regions))] if regions else []
    if ref is not None:
        out = reads.histogram_quantiles(store, ref, matchers, tr, qs)
        if any(s["points"] for s in out["series"]):
            scale = 1000.0 if ref.unit in ("seconds", "s") or ref.name.endswith("_seconds") else 1.0
            lines = [SeriesLine(labels={"quantile": s["labels"]["quantile"]},
                                points=[(t, v * scale) for t, v in s["points"]]) for s in out["series"]]
            return lines, f"histogram:{ref.name}"
    if regions:
        return [SeriesLine(labels={"quantile": f"{q:g}"}, points=[]) for q in qs], "none for these regions"
    df = reads.span_latency_quantiles(store, tr, qs)
    lines = []
    for i, q in enumerate(qs):
        lines.append(SeriesLine(labels={"quantile": f"{q:g}"},
                                points=[(int(t), float(v[i])) for t, v in zip(df["t"], df["qs"], strict=False)]))
    return lines, "spans:turn"


def saturation_metric_ids(store, catalog: CatalogView) -> list[int]:
    declared = catalog.declared()
    # ratios against a fixed capacity compare across resources; raw gauges (calls_active) would not
    ids = {m.id for m in declared if m.saturation and m.unit == "ratio" and m.type == "gauge"}
    # plus any stored *_saturation_ratio series (data written before the catalog declared them)
    return sorted(ids | set(reads.stored_metric_ids(store, name_suffix=reads.SATURATION_SUFFIX)))


def active_alerts(store) -> list[ActiveAlert]:
    out = []
    for r in alert_tables.active_alerts(store).to_dict("records"):
        payload = json_obj(r.get("payload_json"))
        out.append(ActiveAlert(
            rule=str(r["rule"]), alert_fingerprint=str(r["alert_fingerprint"]), state=str(r["state"]),
            severity=str(payload.get("severity") or str_map(payload.get("labels")).get("severity", "")),
            active_since_ms=int_or_none(r["active_since_ms"]) or None, fired_ms=int_or_none(r["fired_ms"]) or None,
            updated_ms=int(r["updated_ms"]), labels=str_map(payload.get("labels")),
            annotations=str_map(payload.get("annotations"))))
    return out
