"""The incidents API: list incidents, read one with its timeline and timings, download its report,
and (admin scope) acknowledge, resolve or add a note. The dashboard acts only through these, with the
person's own token.

When the alert engine runs in this process its tracker answers (so an acknowledgement is seen at
once); otherwise a tracker over the store reads and writes the same rows.
"""

# ruff: noqa: B008  (FastAPI declares parameters with Query/Depends defaults by design)
from __future__ import annotations

import json
import os
import threading
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from alerts import StoreWriter
from alerts.incidents import STATES, IncidentError, IncidentTracker
from alerts.incidents.charts import data_uri, incident_charts
from alerts.incidents.pager import acknowledgement, verify_pagerduty
from alerts.incidents.report import markdown
from voxwatch.auth import require_admin, require_read
from voxwatch.config import ApiToken
from voxwatch.context import AppContext

PREFIX = "/api/v1"
PAGERDUTY_SECRET_ENV = "VOXWATCH_PAGERDUTY_WEBHOOK_SECRET"  # the signing secret of PagerDuty's webhook subscription
INCIDENT_ID = Path(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")


class IncidentSummary(BaseModel):
    incident_id: str
    state: str
    severity: str
    title: str
    opened_ms: int
    start_ms: int
    scope: list[str]
    rules: list[str]
    paged: list[str]
    acknowledged_ms: int
    acknowledged_by: str
    resolved_ms: int
    resolved_by: str
    first_finding_ms: int
    first_page_ms: int
    mitigated_ms: int
    findings: int
    timings: dict[str, float | None] = Field(description="seconds from start_ms to detect, page, acknowledge, mitigate, resolve")
    fault: dict[str, Any] | None = Field(None, description="a replayed scenario's fault (ground truth), when known")


class TimelineItem(BaseModel):
    ts_ms: int
    kind: str
    title: str
    actor: str
    detail: dict[str, Any]
    seq: int


class IncidentDetail(IncidentSummary):
    alerts: dict[str, dict[str, Any]]
    actions: dict[str, dict[str, Any]]
    timeline: list[TimelineItem]


class IncidentsResponse(BaseModel):
    incidents: list[IncidentSummary]
    rules: list[str] = Field(description="how alerts, findings, pages and actions are grouped into incidents")


class IncidentChange(BaseModel):
    note: str = Field("", max_length=2000)


class IncidentNote(BaseModel):
    text: str = Field(min_length=1, max_length=2000)


def _summary(inc) -> dict:
    d = inc.to_json(timeline=False)
    return {k: d[k] for k in IncidentSummary.model_fields}


def _detail(inc) -> IncidentDetail:
    d = inc.to_json(timeline=True)
    return IncidentDetail(**{k: d[k] for k in IncidentDetail.model_fields})


def build_router(ctx: AppContext) -> APIRouter | None:
    if ctx.store is None:
        return None
    router = APIRouter(prefix=PREFIX, tags=["incidents"])
    lock = threading.Lock()
    own: dict[str, IncidentTracker] = {}

    def tracker() -> IncidentTracker:
        engine_tracker = getattr(ctx.alerts, "incidents", None) if ctx.alerts is not None else None
        if isinstance(engine_tracker, IncidentTracker):
            return engine_tracker
        if "t" not in own:
            own["t"] = IncidentTracker(ctx.clock, ctx.sink or StoreWriter(ctx.store), ctx.store)
        return own["t"]

    def refuse(exc: IncidentError):
        raise HTTPException(404 if exc.not_found else 409, str(exc)) from None

    def need(incident_id: str):
        inc = tracker().get(incident_id)
        if inc is None:
            raise HTTPException(404, f"no incident with id {incident_id!r}")
        return inc

    @router.get("/incidents", response_model=IncidentsResponse, summary="Incidents alive in a time range (newest first)")
    def get_incidents(start_ms: int | None = None, end_ms: int | None = None,
                      state: str | None = Query(None, description="|".join(STATES)),
                      limit: int = Query(100, ge=1, le=1000), _: ApiToken = Depends(require_read)) -> IncidentsResponse:
        if state is not None and state not in STATES:
            raise HTTPException(400, f"state must be one of {', '.join(STATES)}, not {state!r}")
        if start_ms is not None and end_ms is not None and end_ms < start_ms:
            raise HTTPException(400, f"end_ms ({end_ms}) is before start_ms ({start_ms})")
        t = tracker()
        items = t.list(start_ms, end_ms, state=state, limit=limit)
        return IncidentsResponse(incidents=[IncidentSummary(**_summary(i)) for i in items], rules=t.policy.describe())

    @router.get("/incidents/{incident_id}", response_model=IncidentDetail, summary="One incident with its timeline")
    def get_incident(incident_id: str = INCIDENT_ID, _: ApiToken = Depends(require_read)) -> IncidentDetail:
        return _detail(need(incident_id))

    @router.get("/incidents/{incident_id}/report", response_class=PlainTextResponse,
                summary="The post-incident report (Markdown)")
    def get_report(incident_id: str = INCIDENT_ID, _: ApiToken = Depends(require_read)) -> PlainTextResponse:
        inc = need(incident_id)
        charts = [(title, data_uri(svg)) for title, svg in incident_charts(ctx.store, inc)]  # one file: images inline
        return PlainTextResponse(markdown(inc, tracker().policy, charts), media_type="text/markdown; charset=utf-8",
                                 headers={"Content-Disposition": f'attachment; filename="{inc.incident_id}.md"'})

    @router.post("/incidents/{incident_id}/acknowledge", response_model=IncidentDetail, summary="Acknowledge (admin)")
    def acknowledge(body: IncidentChange | None = None, incident_id: str = INCIDENT_ID,
                    token: ApiToken = Depends(require_admin)) -> IncidentDetail:
        with lock:
            try:
                return _detail(tracker().acknowledge(incident_id, token.name, (body.note if body else "").strip()))
            except IncidentError as exc:
                refuse(exc)

    @router.post("/incidents/{incident_id}/resolve", response_model=IncidentDetail, summary="Resolve (admin)")
    def resolve(body: IncidentChange | None = None, incident_id: str = INCIDENT_ID,
                token: ApiToken = Depends(require_admin)) -> IncidentDetail:
        with lock:
            try:
                return _detail(tracker().resolve(incident_id, token.name, (body.note if body else "").strip()))
            except IncidentError as exc:
                refuse(exc)

    @router.post("/incidents/{incident_id}/notes", response_model=IncidentDetail, status_code=201,
                 summary="Add a note to the timeline (admin)")
    def add_note(body: IncidentNote, incident_id: str = INCIDENT_ID, token: ApiToken = Depends(require_admin)) -> IncidentDetail:
        with lock:
            try:
                return _detail(tracker().add_note(incident_id, token.name, body.text))
            except IncidentError as exc:
                refuse(exc)

    _add_pagerduty_hook(router, tracker, lock)
    return router


def _add_pagerduty_hook(router: APIRouter, tracker, lock: threading.Lock) -> None:
    """PagerDuty's V3 webhook: an acknowledgement made there acknowledges the incident here."""

    @router.post("/incidents/hooks/pagerduty", summary="PagerDuty V3 webhook: an acknowledgement there acknowledges here",
                 status_code=202)
    async def pagerduty_hook(request: Request) -> dict:
        secret = os.environ.get(PAGERDUTY_SECRET_ENV, "")
        if not secret:
            # not configured: no such hook here (a 5xx would make PagerDuty retry it for ever)
            raise HTTPException(404, f"PagerDuty webhooks are not configured here (set {PAGERDUTY_SECRET_ENV})")
        body = await request.body()
        if not verify_pagerduty(secret, body, request.headers.get("x-pagerduty-signature")):
            raise HTTPException(401, "bad or missing X-PagerDuty-Signature")
        try:
            payload = json.loads(body)
        except ValueError:
            raise HTTPException(400, "the body is not JSON") from None
        ack = acknowledgement(payload)
        if ack is None:  # another event type, or an incident Voxwatch did not trigger: nothing to do
            return {"result": "ignored"}
        fingerprint, who = ack
        with lock:
            t = tracker()
            iid = t.incident_of_alert(fingerprint)
            if iid is None:
                return {"result": "ignored", "reason": f"no incident holds alert {fingerprint}"}
            try:
                t.acknowledge(iid, who, "acknowledged in PagerDuty")
            except IncidentError as exc:  # already acknowledged or resolved: PagerDuty must not retry
                return {"result": "unchanged", "incident_id": iid, "reason": str(exc)}
        return {"result": "acknowledged", "incident_id": iid}
