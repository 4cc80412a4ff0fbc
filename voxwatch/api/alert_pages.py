"""`GET /alerts/{rule}`: the page an alert's `generatorURL` opens (from Alertmanager, PagerDuty or a
webhook body): the rule as loaded (file, type, severity, `for`, annotations) and its alerts now
(labels, state, since when). Like Prometheus's /alerts page it needs no token: it shows rule
definitions and alert labels, never call content. `?format=json` answers the same as JSON.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import HTMLResponse, JSONResponse


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if ts else ""


def build_router(ctx) -> APIRouter:
    router = APIRouter(tags=["alerts"])

    @router.get("/alerts/{rule}", summary="One alert rule and its current alerts (the generatorURL target)",
                response_model=None)
    def alert_page(rule: str, fingerprint: str | None = None,
                   format: str = Query("html", pattern="^(html|json)$")) -> HTMLResponse | JSONResponse:
        engine = ctx.alerts
        if engine is None:
            raise HTTPException(503, "the alert engine does not run in this process")
        try:
            r = engine.ruleset.rule(rule)
        except KeyError:
            raise HTTPException(404, f"no alert rule named {rule!r} is loaded") from None
        alerts = [a for a in list(engine.alerts.values())
                  if a.rule == rule and (fingerprint is None or a.fingerprint == fingerprint)]
        alerts.sort(key=lambda a: (a.state, a.fingerprint))
        info = {
            "rule": r.name, "type": r.type, "severity": r.severity, "for_s": r.for_,
            "source": engine.ruleset.rule_sources.get(r.name, ""), "annotations": dict(r.annotations),
            "alerts": [{"fingerprint": a.fingerprint, "state": a.state, "labels": a.labels,
                        "annotations": a.annotations, "active_since": a.active_since, "fired_at": a.fired_at,
                        "resolved_at": a.resolved_at} for a in alerts],
        }
        if format == "json":
            return JSONResponse(info)
        e = html.escape
        rows = "".join(
            f"<tr><td>{e(a.state)}</td><td>{e(', '.join(f'{k}={v}' for k, v in a.labels.items()))}</td>"
            f"<td>{e(_when(a.fired_at or a.active_since))}</td><td>{e(_when(a.resolved_at))}</td>"
            f"<td>{e(a.annotations.get('summary', ''))}</td></tr>"
            for a in alerts
        ) or "<tr><td colspan=5>no pending, firing or recently resolved alert</td></tr>"
        notes = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in r.annotations.items())
        page = (
            f"<!doctype html><html><head><meta charset=utf-8><title>{e(r.name)} - Voxwatch</title></head><body>"
            f"<h1>{e(r.name)}</h1><p>{e(r.type)} rule, severity {e(r.severity)}, for {r.for_:g} s; "
            f"from {e(info['source'])}</p><dl>{notes}</dl>"
            f"<table border=1 cellpadding=4><tr><th>state</th><th>labels</th><th>since</th><th>resolved</th>"
            f"<th>summary</th></tr>{rows}</table></body></html>"
        )
        return HTMLResponse(page)

    return router
