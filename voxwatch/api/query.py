"""The query API: what dashboards and analysts read (calls, metric series, findings, alerts, silences,
degradation, read-only SQL), guarded by bearer tokens with `read` and `admin` scopes.

All reads go through `telemetry.store.reads` against the store the composition root passes in;
bad input is a 400 with the reason (malformed filters, unknown metrics, backwards or huge ranges,
SQL that writes) or a 422 from the typed models, and never changes anything.
"""

# ruff: noqa: B008  (FastAPI declares parameters with Query/Depends defaults by design)
from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Path, Query

from alerts.notify.silences import SilenceError, Silences
from telemetry.store import StoreError, reads
from voxwatch.api.query_models import (
    ActiveAlert,
    AlertEvent,
    AlertsResponse,
    CallDetail,
    CallSearchResponse,
    CallSummary,
    CatalogMetric,
    CatalogResponse,
    DegradationAction,
    DegradationChange,
    DegradationRequest,
    DegradationResponse,
    DegradationState,
    Finding,
    FindingsResponse,
    Matcher,
    MetricLabelsResponse,
    Notification,
    NotificationsResponse,
    OverviewResponse,
    SaturatedResource,
    SeriesLine,
    SeriesResponse,
    Silence,
    SilenceCreate,
    SilencesResponse,
    Span,
    SqlRequest,
    SqlResponse,
    TrafficPoint,
    Turn,
)
from voxwatch.auth import require_admin, require_read
from voxwatch.config import ApiToken, QueryLimits
from voxwatch.context import AppContext

log = logging.getLogger(__name__)

PREFIX = "/api/v1"
TURN_LATENCY_METRIC_HINTS = ("turn_latency", "turn_duration", "response_latency")
MAX_SILENCE_DAYS = 30


# --------------------------------------------------------------------------------------------------
# JSON-safe values


def _num(v) -> float | None:
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _int(v) -> int | None:
    f = _num(v)
    return int(f) if f is not None else None


def _tte(v) -> float | None:
    # Findings without a forecast carry NaN, which the store may hand back as 0: neither is a forecast.
    f = _num(v)
    return f if f is not None and f > 0 else None


def _pairs(keys, values) -> dict[str, str]:
    if keys is None or values is None:
        return {}
    return {str(k): str(v) for k, v in zip(list(keys), list(values), strict=False)}


def _cell(v: Any) -> Any:
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        f = float(v)
        return f if math.isfinite(f) else None
    if isinstance(v, (np.bool_,)):
        return bool(v)
    if isinstance(v, np.ndarray):
        return [_cell(x) for x in v.tolist()]
    if isinstance(v, (list, tuple)):
        return [_cell(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _cell(x) for k, x in v.items()}
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if v is None or isinstance(v, (str, int, bool)):
        return v
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return str(v)


# --------------------------------------------------------------------------------------------------
# the catalog (telemetry's declared metrics), read once


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


# --------------------------------------------------------------------------------------------------
# the router


def build_router(ctx: AppContext) -> APIRouter | None:
    if ctx.store is None:
        return None
    store = ctx.store
    catalog = CatalogView()
    router = APIRouter(prefix=PREFIX, tags=["query"])

    def limits() -> QueryLimits:
        return getattr(ctx.settings, "limits", None) or QueryLimits()

    def now_ms() -> int:
        return int(ctx.clock.now_ms())

    def span(start_ms, end_ms, step_s=None, default_span_ms=3_600_000):
        lim = limits()
        return reads.time_range(start_ms, end_ms, step_s, now_ms=now_ms(), default_span_ms=default_span_ms,
                                max_range_days=lim.max_range_days, max_points=lim.max_points)

    def bad(exc: Exception, status: int = 400):
        raise HTTPException(status, str(exc)) from None

    @router.get("/now", summary="The service clock (virtual during replays): dashboards anchor ranges on it")
    def get_now(_: ApiToken = Depends(require_read)) -> dict:
        return {"now_ms": now_ms()}

    # ---- metrics ------------------------------------------------------------------------------

    @router.get("/catalog", response_model=CatalogResponse, summary="Browse and search the metric catalog")
    def get_catalog(q: str | None = Query(None, description="words matched in name, description, layer"),
                    layer: str | None = None, type: str | None = None, stored_only: bool = False,
                    _: ApiToken = Depends(require_read)) -> CatalogResponse:
        stored = store.query("SELECT metric_id, any(metric) AS m_name, any(metric_type) AS m_type "
                             "FROM metric_series GROUP BY metric_id ORDER BY metric_id")
        stored_ids = {int(i) for i in stored["metric_id"]}
        declared = catalog.declared()
        source = "catalog"
        if declared:
            metrics = [m.model_copy(update={"stored": m.id in stored_ids}) for m in declared]
        else:
            source = "store"
            metrics = [CatalogMetric(id=int(r.metric_id), name=str(r.m_name), type=str(r.m_type), stored=True)
                       for r in stored.itertuples()]
        if q:
            words = q.lower().split()
            metrics = [m for m in metrics
                       if all(w in f"{m.name} {m.description} {m.layer} {m.id}".lower() for w in words)]
        if layer:
            metrics = [m for m in metrics if m.layer == layer]
        if type:
            metrics = [m for m in metrics if m.type == type]
        if stored_only:
            metrics = [m for m in metrics if m.stored]
        return CatalogResponse(metrics=metrics, total=len(metrics), source=source)

    @router.get("/metrics/{metric}/labels", response_model=MetricLabelsResponse,
                summary="Label names of a metric and the values seen")
    def get_metric_labels(metric: str = Path(description="catalog id or name"),
                          _: ApiToken = Depends(require_read)) -> MetricLabelsResponse:
        try:
            ref = reads.resolve_metric(store, metric, catalog.refs())
        except reads.BadQuery as exc:
            bad(exc)
        return MetricLabelsResponse(metric=ref.name, metric_id=ref.metric_id, labels=reads.metric_labels(store, ref))

    @router.get("/series", response_model=SeriesResponse, summary="A metric over a time range with a step")
    def get_series(
        metric: str = Query(description="catalog id or name"),
        label: list[str] = Query(default_factory=list, description="filters: name=value, name!=value, name=~re, name!~re"),
        start_ms: int | None = None, end_ms: int | None = None,
        step_s: float | None = Query(None, description="bucket width; default about 240 points"),
        agg: str = Query("avg", description="avg|min|max|sum|last|count|rate"),
        group_by: str | None = Query(None, description="comma-separated label names to keep (others summed)"),
        percentiles: str | None = Query(None, description="e.g. 0.5,0.95,0.99 (histograms: from buckets)"),
        source: str = Query("auto", description="auto|raw|rollup"),
        _: ApiToken = Depends(require_read),
    ) -> SeriesResponse:
        try:
            tr = span(start_ms, end_ms, step_s)
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

    # ---- calls --------------------------------------------------------------------------------

    def _call_filter(start_ms, end_ms, region, language, intent, outcome, handoff, min_latency_ms, text, traced=None):
        tr = span(start_ms, end_ms, None, default_span_ms=86_400_000)
        words = [w for w in re.split(r"\s+", text.strip()) if w] if text else None
        if words and len(words) > 10:
            raise reads.BadQuery("at most 10 words in the transcript search")
        return reads.CallFilter(tr.start_ms, tr.end_ms, regions=region or None, languages=language or None,
                                intents=intent or None, outcomes=outcome or None, handoff=handoff,
                                min_latency_ms=min_latency_ms, words=words, traced=traced)

    @router.get("/calls", response_model=CallSearchResponse, summary="Search calls")
    def get_calls(
        start_ms: int | None = Query(None, description="default: 24 h before end_ms"), end_ms: int | None = None,
        region: list[str] = Query(default_factory=list), language: list[str] = Query(default_factory=list),
        intent: list[str] = Query(default_factory=list), outcome: list[str] = Query(default_factory=list),
        handoff: bool | None = None,
        min_latency_ms: float | None = Query(None, ge=0, description="calls whose P95 turn latency is above this"),
        text: str | None = Query(None, max_length=500, description="words that must all appear in the transcript"),
        traced: bool | None = Query(None, description="only calls whose spans were kept (true) or not (false)"),
        limit: int = Query(100, ge=1), offset: int = Query(0, ge=0, le=1_000_000),
        _: ApiToken = Depends(require_read),
    ) -> CallSearchResponse:
        if limit > limits().max_search_rows:
            bad(f"limit {limit} is above the maximum of {limits().max_search_rows} calls per request")
        try:
            f = _call_filter(start_ms, end_ms, region, language, intent, outcome, handoff, min_latency_ms, text, traced)
        except reads.BadQuery as exc:
            bad(exc)
        df, total = reads.search_calls(store, f, limit=limit, offset=offset)
        calls = [_call_summary(r) for r in df.to_dict("records")]
        return CallSearchResponse(calls=calls, total=total, limit=limit, offset=offset, start_ms=f.start_ms, end_ms=f.end_ms)

    @router.get("/calls/{call_id}", response_model=CallDetail, summary="One call: turns, stage spans, transcript, alerts, actions")
    def get_call(call_id: str = Path(min_length=1, max_length=200), _: ApiToken = Depends(require_read)) -> CallDetail:
        detail = reads.call_detail(store, call_id)
        if detail is None:
            raise HTTPException(404, f"no call with id {call_id!r}")
        return _call_detail(detail)

    # ---- overview -----------------------------------------------------------------------------

    @router.get("/overview", response_model=OverviewResponse, summary="Everything the Overview page shows, for one range")
    def get_overview(start_ms: int | None = None, end_ms: int | None = None, step_s: float | None = None,
                     top: int = Query(8, ge=1, le=50), _: ApiToken = Depends(require_read)) -> OverviewResponse:
        try:
            tr = span(start_ms, end_ms, step_s)
        except reads.BadQuery as exc:
            bad(exc)
        return overview(tr, top)

    def overview(tr: reads.TimeRange, top: int) -> OverviewResponse:
        traffic = reads.call_traffic(store, tr)
        points = [TrafficPoint(t=int(r["t"]), calls=int(r["calls"]), failed=int(r["failed"]), abandoned=int(r["abandoned"]),
                               handoffs=int(r["handoffs"]),
                               error_ratio=(int(r["failed"]) / int(r["calls"])) if int(r["calls"]) else 0.0)
                  for r in traffic.to_dict("records")]
        latency, latency_source = turn_latency(tr)
        sat_ids = saturation_metric_ids()
        sat = reads.saturated_resources(store, sat_ids, tr, top=top)
        saturation = [SaturatedResource(metric=str(r["metric"]), labels=r["labels"], fingerprint=int(r["fingerprint"]),
                                        value=float(r["value"]), ts_ms=int(r["ts_ms"]),
                                        time_to_exhaustion_s=_tte(r.get("time_to_exhaustion_s")))
                      for r in sat.to_dict("records")]
        return OverviewResponse(start_ms=tr.start_ms, end_ms=tr.end_ms, step_ms=tr.step_ms,
                                budget_ms=reads.TURN_LATENCY_BUDGET_MS, traffic=points, latency=latency,
                                latency_source=latency_source, saturation=saturation,
                                active_alerts=active_alerts(), degradation=degradation_state())

    def turn_latency_metric() -> reads.MetricRef | None:
        refs = catalog.refs()
        for hint in TURN_LATENCY_METRIC_HINTS:
            for name, ref in refs.items():
                if hint in name and ref.metric_type == "histogram":
                    return ref
        return None

    def turn_latency(tr: reads.TimeRange) -> tuple[list[SeriesLine], str]:
        """P50/P95/P99 of turn latency in ms: from the turn-latency histogram when stored, else from turn spans."""
        qs = [0.5, 0.95, 0.99]
        ref = turn_latency_metric()
        if ref is not None:
            out = reads.histogram_quantiles(store, ref, [], tr, qs)
            if any(s["points"] for s in out["series"]):
                scale = 1000.0 if ref.unit in ("seconds", "s") or ref.name.endswith("_seconds") else 1.0
                lines = [SeriesLine(labels={"quantile": s["labels"]["quantile"]},
                                    points=[(t, v * scale) for t, v in s["points"]]) for s in out["series"]]
                return lines, f"histogram:{ref.name}"
        df = reads.span_latency_quantiles(store, tr, qs)
        lines = []
        for i, q in enumerate(qs):
            lines.append(SeriesLine(labels={"quantile": f"{q:g}"},
                                    points=[(int(t), float(v[i])) for t, v in zip(df["t"], df["qs"], strict=False)]))
        return lines, "spans:turn"

    def saturation_metric_ids() -> list[int]:
        declared = catalog.declared()
        # ratios against a fixed capacity compare across resources; raw gauges (calls_active) would not
        ids = {m.id for m in declared if m.saturation and m.unit == "ratio" and m.type == "gauge"}
        # plus any stored *_saturation_ratio series (data written before the catalog declared them)
        df = store.query("SELECT DISTINCT metric_id FROM metric_series WHERE endsWith(metric, {s:String})",
                         {"s": reads.SATURATION_SUFFIX})
        return sorted(ids | {int(i) for i in df["metric_id"]})

    def active_alerts() -> list[ActiveAlert]:
        out = []
        for r in reads.active_alerts(store).to_dict("records"):
            payload = _json_obj(r.get("payload_json"))
            out.append(ActiveAlert(
                rule=str(r["rule"]), alert_fingerprint=str(r["alert_fingerprint"]), state=str(r["state"]),
                severity=str(payload.get("severity") or _str_map(payload.get("labels")).get("severity", "")),
                active_since_ms=_int(r["active_since_ms"]) or None, fired_ms=_int(r["fired_ms"]) or None,
                updated_ms=int(r["updated_ms"]), labels=_str_map(payload.get("labels")),
                annotations=_str_map(payload.get("annotations"))))
        return out

    # ---- findings, alerts, notifications ------------------------------------------------------

    @router.get("/findings", response_model=FindingsResponse, summary="Anomaly findings")
    def get_findings(start_ms: int | None = None, end_ms: int | None = None, kind: str | None = None,
                     metric: str | None = None, min_score: float | None = Query(None, ge=0, le=1),
                     limit: int = Query(1000, ge=1, le=10_000), _: ApiToken = Depends(require_read)) -> FindingsResponse:
        try:
            tr = span(start_ms, end_ms, None, default_span_ms=86_400_000)
        except reads.BadQuery as exc:
            bad(exc)
        df = reads.findings(store, tr.start_ms, tr.end_ms, kind=kind, metric=metric, min_score=min_score, limit=limit)
        items = [Finding(ts_ms=int(r["ts_ms"]), finding_id=str(r["finding_id"]), detector=str(r["detector"]),
                         kind=str(r["kind"]), metric=str(r["metric"]), fingerprint=int(r["fingerprint"]),
                         labels=_pairs(r["label_keys"], r["label_values"]), score=_num(r["score"]), value=_num(r["value"]),
                         expected_low=_num(r["expected_low"]), expected_high=_num(r["expected_high"]),
                         time_to_exhaustion_s=_tte(r["time_to_exhaustion_s"]), confidence=_num(r["confidence"]),
                         reason=str(r["reason"])) for r in df.to_dict("records")]
        return FindingsResponse(findings=items, start_ms=tr.start_ms, end_ms=tr.end_ms)

    @router.get("/alerts", response_model=AlertsResponse, summary="Active alerts and their transition history")
    def get_alerts(start_ms: int | None = None, end_ms: int | None = None, rule: str | None = None,
                   limit: int = Query(1000, ge=1, le=10_000), _: ApiToken = Depends(require_read)) -> AlertsResponse:
        try:
            tr = span(start_ms, end_ms, None, default_span_ms=86_400_000)
        except reads.BadQuery as exc:
            bad(exc)
        hist = [_alert_event(r) for r in reads.alert_history(store, tr.start_ms, tr.end_ms, rule=rule, limit=limit).to_dict("records")]
        return AlertsResponse(active=active_alerts(), history=hist, start_ms=tr.start_ms, end_ms=tr.end_ms)

    @router.get("/notifications", response_model=NotificationsResponse, summary="Notification delivery attempts")
    def get_notifications(start_ms: int | None = None, end_ms: int | None = None,
                          limit: int = Query(1000, ge=1, le=10_000), _: ApiToken = Depends(require_read)) -> NotificationsResponse:
        try:
            tr = span(start_ms, end_ms, None, default_span_ms=86_400_000)
        except reads.BadQuery as exc:
            bad(exc)
        df = reads.notifications(store, tr.start_ms, tr.end_ms, limit=limit)
        items = [Notification(ts_ms=int(r["ts_ms"]), notification_id=str(r["notification_id"]), receiver=str(r["receiver"]),
                              integration=str(r["integration"]), group_key=str(r["group_key"]), status=str(r["status"]),
                              attempt=int(r["attempt"]), result=str(r["result"]), http_status=int(r["http_status"]),
                              error=str(r["error"]), alert_fingerprints=[str(x) for x in r["alert_fingerprints"]])
                 for r in df.to_dict("records")]
        return NotificationsResponse(notifications=items, start_ms=tr.start_ms, end_ms=tr.end_ms)

    # ---- silences -----------------------------------------------------------------------------

    @router.get("/silences", response_model=SilencesResponse, summary="Silences (newest first)")
    def get_silences(state: str | None = Query(None, description="active|pending|expired"),
                     _: ApiToken = Depends(require_read)) -> SilencesResponse:
        items = [_silence(r, now_ms()) for r in reads.silences(store).to_dict("records")]
        if state:
            items = [s for s in items if s.state == state]
        return SilencesResponse(silences=items)

    silence_lock = threading.Lock()

    @router.post("/silences", response_model=Silence, status_code=201, summary="Create a silence (admin)")
    def post_silence(body: SilenceCreate, token: ApiToken = Depends(require_admin)) -> Silence:
        now = now_ms()
        starts = now if body.starts_ms is None else body.starts_ms
        if body.ends_ms is not None and body.duration_s is not None:
            bad("give ends_ms or duration_s, not both")
        if body.ends_ms is None and body.duration_s is None:
            bad("a silence needs an end: give ends_ms or duration_s")
        ends = body.ends_ms if body.ends_ms is not None else starts + int(body.duration_s * 1000)
        if ends <= starts:
            bad(f"silence ends ({ends}) before it starts ({starts})")
        if ends <= now:
            bad("silence would already be over: ends_ms is in the past")
        if ends - starts > MAX_SILENCE_DAYS * 86_400_000:
            bad(f"silences may last at most {MAX_SILENCE_DAYS} days")
        for m in body.matchers:
            if m.isRegex:
                try:
                    re.compile(m.value)
                except re.error as exc:
                    bad(f"matcher {m.name}: invalid regular expression ({exc})")
        if all(m.value == "" or (m.isRegex and re.fullmatch(m.value, "")) for m in body.matchers):
            bad("a silence must have at least one matcher that does not match the empty string")
        with silence_lock:
            api = silences_api()
            try:
                silence_id = api.create([m.model_dump() for m in body.matchers], ends / 1000.0,
                                        starts_at=starts / 1000.0, created_by=body.created_by or token.name,
                                        comment=body.comment)
            except SilenceError as exc:
                bad(exc)
            return _silence_from(api.get(silence_id), now)

    @router.delete("/silences/{silence_id}", response_model=Silence, summary="Expire a silence now (admin)")
    def expire_silence(silence_id: str = Path(min_length=1, max_length=100),
                       _: ApiToken = Depends(require_admin)) -> Silence:
        with silence_lock:
            api = silences_api()
            try:
                api.get(silence_id)
            except SilenceError:
                raise HTTPException(404, f"no silence with id {silence_id!r}") from None
            try:
                expired = api.expire(silence_id)
            except SilenceError as exc:
                bad(exc)
            return _silence_from(expired, now_ms())

    def silences_api():
        """The alerts room's Silences: the alert engine's own when it runs in this process (so a new
        silence mutes at once), otherwise one loaded from the store that writes back through the sink."""
        engine_silences = getattr(ctx.alerts, "silences", None) if ctx.alerts is not None else None
        if engine_silences is not None and callable(getattr(engine_silences, "create", None)):
            return engine_silences
        return Silences(ctx.clock, writer=ctx.sink or _StoreWriter(store), store=store)

    # ---- degradation --------------------------------------------------------------------------

    def controller():
        p = ctx.pipeline
        if p is None:
            return None
        for cand in (getattr(p, "degradation", None), getattr(p, "controller", None), p):
            if cand is not None and callable(getattr(cand, "state", None)) and callable(getattr(cand, "request", None)):
                return cand
        return None

    def degradation_state() -> DegradationState:
        c = controller()
        if c is not None:
            s = c.state()
            return DegradationState(level=str(s.get("level")), region=s.get("region"), reason=str(s.get("reason") or ""),
                                    rule=str(s.get("rule") or ""), since_ms=_int(s.get("since_ms")), source="pipeline",
                                    levels=[str(x) for x in s.get("levels", [])])
        last = reads.latest_degradation_level(store)
        if last is not None:
            return DegradationState(**last, source="store")
        return DegradationState(level="NORMAL", source="none")

    @router.get("/degradation", response_model=DegradationResponse, summary="Degradation level and action history")
    def get_degradation(start_ms: int | None = None, end_ms: int | None = None,
                        limit: int = Query(500, ge=1, le=10_000), _: ApiToken = Depends(require_read)) -> DegradationResponse:
        try:
            tr = span(start_ms, end_ms, None, default_span_ms=86_400_000)
        except reads.BadQuery as exc:
            bad(exc)
        hist = [_action(r) for r in reads.degradation_history(store, tr.start_ms, tr.end_ms, limit=limit).to_dict("records")]
        return DegradationResponse(state=degradation_state(), history=hist)

    @router.post("/degradation", response_model=DegradationChange, summary="Ask the pipeline for a degradation level (admin)")
    def post_degradation(body: DegradationRequest, token: ApiToken = Depends(require_admin)) -> DegradationChange:
        c = controller()
        if c is None:
            raise HTTPException(503, "no pipeline runs in this process: its degradation level cannot be changed here")
        result = c.request(body.level, reason=f"{body.reason} (by {token.name})", region=body.region, rule="api")
        if result.get("phase") == "refused" and result.get("error"):
            bad(result["error"])
        return DegradationChange(action=_action(result), state=degradation_state())

    # ---- read-only SQL ------------------------------------------------------------------------

    @router.post("/sql", response_model=SqlResponse, summary="Read-only SQL for analysts, bounded in rows and time")
    def post_sql(body: SqlRequest, _: ApiToken = Depends(require_read)) -> SqlResponse:
        lim = limits()
        max_rows = body.max_rows or lim.sql_max_rows
        max_seconds = body.max_seconds or lim.sql_max_seconds
        if max_rows > lim.sql_max_rows:
            bad(f"max_rows {max_rows} is above the limit of {lim.sql_max_rows}")
        if max_seconds > lim.sql_max_seconds:
            bad(f"max_seconds {max_seconds:g} is above the limit of {lim.sql_max_seconds:g}")
        t0 = time.perf_counter()
        try:
            # one row more than asked tells whether the answer was cut
            df = store.readonly_query(body.sql, max_rows=max_rows + 1, max_seconds=max_seconds)
        except StoreError as exc:
            bad(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        elapsed = (time.perf_counter() - t0) * 1000
        truncated = len(df) > max_rows
        df = df.head(max_rows)
        rows = [[_cell(v) for v in row] for row in df.itertuples(index=False, name=None)]
        return SqlResponse(columns=[str(c) for c in df.columns], types=[str(t) for t in df.dtypes], rows=rows,
                           row_count=len(rows), truncated=truncated, elapsed_ms=elapsed)

    router.overview = overview  # the benchmark times the Overview without HTTP in between
    return router


# --------------------------------------------------------------------------------------------------
# row -> model


def _json_obj(text) -> dict:
    if not text:
        return {}
    try:
        v = json.loads(text)
    except (TypeError, ValueError):
        return {}
    return v if isinstance(v, dict) else {}


def _str_map(v) -> dict[str, str]:
    return {str(k): str(x) for k, x in v.items()} if isinstance(v, dict) else {}


def _call_summary(r: dict) -> CallSummary:
    return CallSummary(
        call_id=str(r["call_id"]), started_ms=int(r["started_ms"]), ended_ms=int(r["ended_ms"]), region=str(r["region"]),
        language=str(r["language"]), scenario=str(r["scenario"]), channel=str(r["channel"]),
        intents=[str(x) for x in r["intents"]], outcome=str(r["outcome"]), handoff=bool(r["handoff"]),
        handoff_reason=str(r["handoff_reason"]), turns=int(r["turns"]), latency_p50_ms=_num(r["latency_p50_ms"]) or 0.0,
        latency_p95_ms=_num(r["latency_p95_ms"]) or 0.0, latency_max_ms=_num(r["latency_max_ms"]) or 0.0,
        degradation_level=str(r["degradation_level"]), trace_id=str(r["trace_id"]))


def _span(r: dict) -> Span:
    return Span(span_id=str(r["span_id"]), parent_span_id=str(r["parent_span_id"]), turn=int(r["turn"]), name=str(r["name"]),
                start_us=int(r["start_us"]), duration_ms=_num(r["duration_ms"]) or 0.0, status=str(r["status"]),
                attributes=_pairs(r["attr_keys"], r["attr_values"]))


def _call_detail(d: dict) -> CallDetail:
    spans = [_span(r) for r in d["spans"].to_dict("records")]
    conversation = next((s for s in spans if s.name == "conversation"), None)
    turn_spans = {s.turn: s for s in spans if s.name == "turn"}
    stages: dict[int, list[Span]] = {}
    for s in spans:
        if s.name not in ("turn", "conversation"):
            stages.setdefault(s.turn, []).append(s)
    turns = []
    for n in sorted(set(turn_spans) | set(stages)):
        parts = stages.get(n, [])
        ts = turn_spans.get(n)
        if ts is not None:
            start, dur, status = ts.start_us, ts.duration_ms, ts.status
        else:  # no turn span recorded: the stages' envelope stands in for it
            start = min(p.start_us for p in parts)
            end = max(p.start_us + p.duration_ms * 1000 for p in parts)
            dur, status = (end - start) / 1000.0, "error" if any(p.status == "error" for p in parts) else "ok"
        turns.append(Turn(turn=n, start_us=start, duration_ms=dur, status=status, stages=parts))
    return CallDetail(call=_call_summary(d["call"]), transcript=str(d["call"].get("transcript", "")), turns=turns,
                      conversation=conversation, alerts=[_alert_event(r) for r in d["alerts"].to_dict("records")],
                      actions=[_action(r) for r in d["actions"].to_dict("records")])


def _alert_event(r: dict) -> AlertEvent:
    return AlertEvent(ts_ms=int(r["ts_ms"]), rule=str(r["rule"]), alert_fingerprint=str(r["alert_fingerprint"]),
                      state=str(r["state"]), previous_state=str(r.get("previous_state", "") or ""),
                      severity=str(r["severity"]), labels=_pairs(r["label_keys"], r["label_values"]),
                      annotations=_pairs(r["annotation_keys"], r["annotation_values"]), value=_num(r["value"]),
                      active_since_ms=_int(r.get("active_since_ms")))


def _action(r: dict) -> DegradationAction:
    return DegradationAction(ts_ms=int(r["ts_ms"]), action_id=str(r["action_id"]), phase=str(r["phase"]),
                             level=str(r["level"]), previous_level=str(r.get("previous_level", "")),
                             region=str(r.get("region", "") or ""), rule=str(r.get("rule", "") or ""),
                             reason=str(r.get("reason", "") or ""), effect_metric=str(r.get("effect_metric", "") or ""),
                             effect_value=_num(r.get("effect_value")))


class _StoreWriter:
    """The sink's `write` for a process without a sink: rows straight into the store."""

    def __init__(self, store) -> None:
        self.store = store

    def write(self, table: str, rows: list[dict]) -> None:
        self.store.insert(table, {k: [r[k] for r in rows] for k in rows[0]})


def _silence_from(s, now_ms: int) -> Silence:
    """The API's view of an alerts-room `Silence` (times in epoch ms)."""
    return Silence(silence_id=s.silence_id, matchers=[Matcher(**m.as_dict()) for m in s.matchers],
                   starts_ms=int(round(s.starts_at * 1000)), ends_ms=int(round(s.ends_at * 1000)),
                   created_ms=int(round(s.created_at * 1000)), updated_ms=int(round(s.updated_at * 1000)),
                   created_by=s.created_by, comment=s.comment, state=s.state(now_ms / 1000.0))


def _silence(r: dict, now: int) -> Silence:
    try:
        matchers = [Matcher(**m) for m in json.loads(r["matchers_json"] or "[]")]
    except (TypeError, ValueError):
        matchers = []
    starts, ends = int(r["starts_ms"]), int(r["ends_ms"])
    # The state follows the clock: a silence whose end has passed is expired whatever its row says.
    state = "expired" if ends <= now or r["state"] == "expired" else ("pending" if starts > now else "active")
    return Silence(silence_id=str(r["silence_id"]), matchers=matchers, starts_ms=starts, ends_ms=ends,
                   created_ms=int(r["created_ms"]), updated_ms=int(r["updated_ms"]), created_by=str(r["created_by"]),
                   comment=str(r["comment"]), state=state)
