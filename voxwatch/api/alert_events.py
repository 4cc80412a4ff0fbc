"""What detection and alerting produced: anomaly findings, active alerts with their transition
history, and notification delivery attempts."""

# ruff: noqa: B008  (FastAPI declares parameters with Query/Depends defaults by design)
from __future__ import annotations

from fastapi import APIRouter, Query

from alerts import tables as alert_tables
from telemetry.store import reads
from voxwatch.api.deps import DayWindow, ReadToken, StoreDep
from voxwatch.api.overview import active_alerts
from voxwatch.api.query_models import (
    AlertsResponse,
    Finding,
    FindingsResponse,
    Notification,
    NotificationsResponse,
)
from voxwatch.api.rows import alert_event, num, pairs, tte

router = APIRouter(tags=["alerts"])


@router.get("/findings", response_model=FindingsResponse, summary="Anomaly findings")
def get_findings(_: ReadToken, store: StoreDep, window: DayWindow, kind: str | None = None,
                 metric: str | None = None, min_score: float | None = Query(None, ge=0, le=1),
                 limit: int = Query(1000, ge=1, le=10_000)) -> FindingsResponse:
    df = reads.findings(store, window.start_ms, window.end_ms, kind=kind, metric=metric, min_score=min_score, limit=limit)
    items = [Finding(ts_ms=int(r["ts_ms"]), finding_id=str(r["finding_id"]), detector=str(r["detector"]),
                     kind=str(r["kind"]), metric=str(r["metric"]), fingerprint=int(r["fingerprint"]),
                     labels=pairs(r["label_keys"], r["label_values"]), score=num(r["score"]), value=num(r["value"]),
                     expected_low=num(r["expected_low"]), expected_high=num(r["expected_high"]),
                     time_to_exhaustion_s=tte(r["time_to_exhaustion_s"]), confidence=num(r["confidence"]),
                     reason=str(r["reason"])) for r in df.to_dict("records")]
    return FindingsResponse(findings=items, start_ms=window.start_ms, end_ms=window.end_ms)


@router.get("/alerts", response_model=AlertsResponse, summary="Active alerts and their transition history")
def get_alerts(_: ReadToken, store: StoreDep, window: DayWindow, rule: str | None = None,
               limit: int = Query(1000, ge=1, le=10_000)) -> AlertsResponse:
    hist = [alert_event(r) for r in
            alert_tables.alert_history(store, window.start_ms, window.end_ms, rule=rule, limit=limit).to_dict("records")]
    return AlertsResponse(active=active_alerts(store), history=hist, start_ms=window.start_ms, end_ms=window.end_ms)


@router.get("/notifications", response_model=NotificationsResponse, summary="Notification delivery attempts")
def get_notifications(_: ReadToken, store: StoreDep, window: DayWindow,
                      limit: int = Query(1000, ge=1, le=10_000)) -> NotificationsResponse:
    df = alert_tables.notifications(store, window.start_ms, window.end_ms, limit=limit)
    items = [Notification(ts_ms=int(r["ts_ms"]), notification_id=str(r["notification_id"]), receiver=str(r["receiver"]),
                          integration=str(r["integration"]), group_key=str(r["group_key"]), status=str(r["status"]),
                          attempt=int(r["attempt"]), result=str(r["result"]), http_status=int(r["http_status"]),
                          error=str(r["error"]), alert_fingerprints=[str(x) for x in r["alert_fingerprints"]])
             for r in df.to_dict("records")]
    return NotificationsResponse(notifications=items, start_ms=window.start_ms, end_ms=window.end_ms)
