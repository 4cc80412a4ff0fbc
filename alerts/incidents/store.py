"""The incidents' SQL, in one place: their rows (`incidents`, newest row per id wins; `incident_events`,
the timeline) and the reads the tracker, the API and the report make."""

from __future__ import annotations

import json

from alerts.incidents.model import Incident, TimelineEvent


def incident_row(inc: Incident, updated_ms: int) -> dict:
    return {
        "incident_id": inc.incident_id, "updated_ms": int(updated_ms), "opened_ms": int(inc.opened_ms),
        "state": inc.state, "severity": inc.severity, "title": inc.title, "scope": list(inc.scope),
        "rules": inc.rules, "alert_fingerprints": sorted(inc.alerts), "paged": list(inc.paged),
        "acknowledged_ms": int(inc.acknowledged_ms), "acknowledged_by": inc.acknowledged_by,
        "resolved_ms": int(inc.resolved_ms), "resolved_by": inc.resolved_by,
        "payload_json": json.dumps(inc.to_json(timeline=False), default=str),
    }


def event_row(incident_id: str, e: TimelineEvent) -> dict:
    return {"ts_ms": int(e.ts_ms), "incident_id": incident_id, "seq": int(e.seq), "kind": e.kind, "title": e.title[:1000],
            "actor": e.actor, "detail_json": json.dumps(e.detail, default=str)}


def _incident(payload: str) -> Incident:
    return Incident.from_json(json.loads(payload))


def list_incidents(store, start_ms: int | None = None, end_ms: int | None = None, state: str | None = None,
                   limit: int = 200) -> list[Incident]:
    """Incidents alive at some point of [start_ms, end_ms] (all when no range), newest first, without timelines."""
    df = store.query(
        "SELECT incident_id, argMax(payload_json, updated_ms) AS i_payload, argMax(opened_ms, updated_ms) AS i_opened, "
        "argMax(resolved_ms, updated_ms) AS i_resolved, argMax(state, updated_ms) AS i_state "
        "FROM incidents GROUP BY incident_id ORDER BY i_opened DESC")
    out = []
    for payload, opened, resolved, st in zip(df["i_payload"], df["i_opened"], df["i_resolved"], df["i_state"], strict=False):
        if end_ms is not None and int(opened) > end_ms:
            continue
        if start_ms is not None and int(resolved) and int(resolved) < start_ms:
            continue
        if state and st != state:
            continue
        out.append(_incident(payload))
        if len(out) >= limit:
            break
    return out


def load_incident(store, incident_id: str) -> Incident | None:
    """One incident with its whole timeline, or None."""
    df = store.query("SELECT argMax(payload_json, updated_ms) AS i_payload FROM incidents "
                     "WHERE incident_id = {i:String} GROUP BY incident_id", {"i": incident_id})
    if not len(df):
        return None
    inc = _incident(df["i_payload"].iloc[0])
    inc.timeline = timeline(store, incident_id)
    return inc


def timeline(store, incident_id: str) -> list[TimelineEvent]:
    ev = store.query("SELECT ts_ms, seq, kind, title, actor, detail_json FROM incident_events "
                     "WHERE incident_id = {i:String} ORDER BY ts_ms, seq", {"i": incident_id})
    out = []
    seen = set()
    for r in ev.itertuples(index=False):
        if int(r.seq) in seen:  # a row written twice (sink replay after a retry) counts once
            continue
        seen.add(int(r.seq))
        out.append(TimelineEvent(int(r.ts_ms), str(r.kind), str(r.title), str(r.actor), json.loads(r.detail_json or "{}"),
                                 int(r.seq)))
    return out


def open_incidents(store) -> list[Incident]:
    """Incidents not resolved, with their timelines: what a restarted tracker takes back."""
    out = []
    for inc in list_incidents(store, limit=10_000):
        if inc.state != "resolved":
            inc.timeline = timeline(store, inc.incident_id)
            out.append(inc)
    return out
