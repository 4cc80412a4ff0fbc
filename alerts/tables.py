"""Alerts' own tables, their SQL in one place: alert state and the notification log (`alert_state`,
newest row per fingerprint wins), silences, degradation actions, incidents (`incidents`, newest row
per id wins; `incident_events`, the timeline). The rows alerts write and the reads the engine, the
tracker, the API and the report make. Telemetry's tables are read through `telemetry.store`.
"""

from __future__ import annotations

import json

import pandas as pd

from alerts.incidents.model import Incident, TimelineEvent

# The notification log's rows share alert_state with the alerts' rows, under this rule name.
NFLOG_RULE = "__nflog__"


# -- incidents
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


# -- alert state and the notification log (both in alert_state; the log's rows carry rule = NFLOG_RULE)
def alert_states(store, *, except_rule: str) -> pd.DataFrame:
    """The newest state and payload of each alert fingerprint (s_state, s_payload), without `except_rule`'s rows."""
    return store.query(
        "SELECT alert_fingerprint, argMax(state, updated_ms) AS s_state, argMax(payload_json, updated_ms) AS s_payload "
        "FROM alert_state WHERE rule != {n:String} GROUP BY alert_fingerprint",
        {"n": except_rule},
    )


def alert_payloads(store, *, rule: str) -> list[str]:
    """The newest payload of each fingerprint written under `rule` (the notification log's entries)."""
    df = store.query(
        "SELECT alert_fingerprint, argMax(payload_json, updated_ms) AS s_payload FROM alert_state "
        "WHERE rule = {r:String} GROUP BY alert_fingerprint",
        {"r": rule},
    )
    return list(df["s_payload"])


# -- degradation actions
def action_rows(store) -> pd.DataFrame:
    """Each action the engine asked for, with its latest phase (a_phase, a_level, a_region, a_rule, a_first_ms)."""
    return store.query(
        "SELECT action_id, argMax(phase, ts_ms) AS a_phase, any(level) AS a_level, any(region) AS a_region, "
        "any(rule) AS a_rule, min(ts_ms) AS a_first_ms FROM degradation_actions "
        "WHERE action_id LIKE 'act-%' AND phase != 'observed' GROUP BY action_id"
    )


# -- the query API's reads (alerts, notifications, silences, degradation actions)
def active_alerts(store) -> pd.DataFrame:
    """Alerts whose latest state is firing or pending (newest row per alert in alert_state)."""
    df = store.query(
        "SELECT rule, alert_fingerprint, argMax(state, updated_ms) AS cur_state, max(updated_ms) AS last_ms, "
        "argMax(active_since_ms, updated_ms) AS since_ms, argMax(fired_ms, updated_ms) AS fire_ms, "
        "argMax(payload_json, updated_ms) AS payload FROM alert_state "
        "WHERE rule != {nflog:String} "  # the notification log shares the table
        "GROUP BY rule, alert_fingerprint "
        "HAVING cur_state IN ('firing', 'pending') ORDER BY since_ms", {"nflog": NFLOG_RULE})
    return df.rename(columns={"cur_state": "state", "last_ms": "updated_ms", "since_ms": "active_since_ms",
                              "fire_ms": "fired_ms", "payload": "payload_json"})


def alert_history(store, start_ms: int, end_ms: int, *, rule: str | None = None, limit: int = 1000) -> pd.DataFrame:
    params: dict = {"s": start_ms, "e": end_ms, "lim": limit}
    extra = ""
    if rule:
        params["r"] = rule
        extra = " AND rule = {r:String}"
    return store.query(
        "SELECT ts_ms, rule, alert_fingerprint, state, previous_state, severity, label_keys, label_values, "
        "annotation_keys, annotation_values, value, active_since_ms FROM alert_events "
        "WHERE ts_ms >= {s:Int64} AND ts_ms < {e:Int64}" + extra + " ORDER BY ts_ms DESC LIMIT {lim:UInt64}", params)


def notifications(store, start_ms: int, end_ms: int, *, limit: int = 1000) -> pd.DataFrame:
    return store.query(
        "SELECT ts_ms, notification_id, receiver, integration, group_key, status, attempt, result, http_status, "
        "error, alert_fingerprints FROM notifications WHERE ts_ms >= {s:Int64} AND ts_ms < {e:Int64} "
        "ORDER BY ts_ms DESC LIMIT {lim:UInt64}", {"s": start_ms, "e": end_ms, "lim": limit})


def silences(store) -> pd.DataFrame:
    """Newest row per silence (the table is a ReplacingMergeTree; merges may not have run yet)."""
    df = store.query(
        "SELECT silence_id, argMax(created_ms, updated_ms) AS x_created_ms, argMax(starts_ms, updated_ms) AS x_starts_ms, argMax(ends_ms, updated_ms) AS x_ends_ms, argMax(created_by, updated_ms) AS x_created_by, argMax(comment, updated_ms) AS x_comment, argMax(matchers_json, updated_ms) AS x_matchers_json, argMax(state, updated_ms) AS x_state, "
        "max(updated_ms) AS x_updated_ms FROM silences GROUP BY silence_id ORDER BY x_created_ms DESC")
    return df.rename(columns=lambda c: c[2:] if c.startswith("x_") else c)


def degradation_history(store, start_ms: int, end_ms: int, *, limit: int = 1000) -> pd.DataFrame:
    return store.query(
        "SELECT ts_ms, action_id, phase, level, previous_level, region, rule, reason, effect_metric, effect_value "
        "FROM degradation_actions WHERE ts_ms >= {s:Int64} AND ts_ms < {e:Int64} ORDER BY ts_ms DESC "
        "LIMIT {lim:UInt64}", {"s": start_ms, "e": end_ms, "lim": limit})


def latest_degradation_level(store) -> dict | None:
    """The level set by the newest applied or reverted action (the `level` column is the level moved to)."""
    df = store.query(
        "SELECT argMax(level, ts_ms) AS lvl, argMax(region, ts_ms) AS rgn, argMax(reason, ts_ms) AS why, "
        "argMax(rule, ts_ms) AS by_rule, max(ts_ms) AS last_ms, count() AS n "
        "FROM degradation_actions WHERE phase IN ('applied', 'reverted')")
    if not len(df) or int(df["n"].iloc[0]) == 0:
        return None
    r = df.iloc[0]
    return {"level": str(r["lvl"]), "region": str(r["rgn"]) or None, "reason": str(r["why"]),
            "rule": str(r["by_rule"]), "since_ms": int(r["last_ms"])}
