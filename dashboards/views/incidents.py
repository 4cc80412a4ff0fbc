"""Incidents: one incident on one page, from the first finding to mitigation. Its state, timings and
the people paged; its timeline in order; the charts it explains with the incident shaded and its events
in a lane under the time axis; acknowledge, resolve and notes (with the person's own API token, through
the API); the post-incident report to download. Below, the raw alert transitions, pages and actions
of the range."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboards.client import ApiError
from dashboards.common import (
    add_series_lines,
    annotate,
    client,
    duration_text,
    fetch,
    fit_tiles,
    incident_marks,
    labels_text,
    line_figure,
    range_label,
    time_window,
    timeline_marks,
    ts,
)

STATE_ICONS = {"open": "[OPEN]", "acknowledged": "[ACK]", "resolved": "[RESOLVED]"}
TIMINGS = (("detect", "Time to detect"), ("page", "Time to page"), ("acknowledge", "Time to acknowledge"),
           ("mitigate", "Time to mitigate"), ("resolve", "Time to resolve"))

st.title("Incidents")
fit_tiles()
label = range_label()
w = time_window(label)
listing = fetch("/incidents", **w.params)
incidents = listing["incidents"] if listing else []


def since(ms: int, start: int) -> str:
    if not ms:
        return ""
    s = (ms - start) / 1000
    return f"{'-' if s < 0 else '+'}{int(abs(s) // 60)}:{int(abs(s) % 60):02d}"


def act(path: str, body: dict, done: str) -> None:
    token = st.session_state.get("vx_user_token", "").strip()
    if not token:
        st.session_state["vx_incident_msg"] = ("error", "Enter your API token (admin scope) to act on an incident.")
        return
    try:
        client().post(path, body, token=token)
        st.session_state["vx_incident_msg"] = ("success", done)
    except ApiError as exc:
        st.session_state["vx_incident_msg"] = ("error", str(exc))


if listing is not None and not incidents:
    st.success("No incidents in this range.")
inc = None
if incidents:
    names = [f"{STATE_ICONS.get(i['state'], '')} {i['incident_id']} · {i['severity']} · {i['title']}" for i in incidents]
    # open on the newest incident still open, else the newest
    first = next((k for k, i in enumerate(incidents) if i["state"] != "resolved"), 0)
    choice = st.selectbox("Incident", names, index=first, key="vx_incident")
    picked = incidents[names.index(choice)]
    inc = fetch(f"/incidents/{picked['incident_id']}")

if inc is not None:
    iid, start = inc["incident_id"], inc["start_ms"]
    st.subheader(f"{STATE_ICONS.get(inc['state'], '')} {inc['title']}")
    c = st.columns([1, 1, 2, 2])
    c[0].metric("State", inc["state"])
    c[1].metric("Severity", inc["severity"] or "—")
    c[2].metric("Resources", ", ".join(inc["scope"]) or "—")
    c[3].metric("People paged", ", ".join(inc["paged"]) or "nobody")
    cols = st.columns(len(TIMINGS))
    for col, (key, name) in zip(cols, TIMINGS, strict=True):
        col.metric(name, duration_text(inc["timings"][key]) if inc["timings"][key] is not None else "—")
    origin = "the fault's start (scenario ground truth)" if inc.get("fault") else "the first signal Voxwatch saw"
    st.caption(f"{iid} · opened {ts(inc['opened_ms']):%Y-%m-%d %H:%M:%S} UTC · timings from {origin}, "
               f"{ts(start):%H:%M:%S} UTC"
               + (f" · acknowledged by {inc['acknowledged_by']}" if inc["acknowledged_by"] else "")
               + (f" · resolved by {inc['resolved_by']}" if inc["resolved_by"] else ""))
    if inc.get("fault"):
        f = inc["fault"]
        st.info(f"Ground truth: {f['kind']} on {f.get('target') or 'everything'} from {ts(f['start_ms']):%H:%M:%S} "
                f"to {ts(f['end_ms']):%H:%M:%S} UTC — {f.get('description', '')}")

    with st.container(border=True):
        a1, a2, a3, a4 = st.columns([2, 1, 1, 1.4])
        a1.text_input("Your API token (admin scope)", type="password", key="vx_user_token",
                      help="Acknowledging, resolving and notes are done as you, through the API.")
        note = a1.text_input("Note", key="vx_incident_note", placeholder="what you see, what you did")
        open_ = inc["state"] != "resolved"
        a2.button("Acknowledge", key="vx_ack", disabled=inc["state"] != "open", type="primary",
                  on_click=act, args=(f"/incidents/{iid}/acknowledge", {"note": ""}, f"{iid} acknowledged"))
        a3.button("Resolve", key="vx_resolve", disabled=not open_,
                  on_click=act, args=(f"/incidents/{iid}/resolve", {"note": ""}, f"{iid} resolved"))
        a2.button("Add note", key="vx_note",
                  on_click=lambda: act(f"/incidents/{iid}/notes", {"text": st.session_state.get("vx_incident_note", "")},
                                       "note added"))
        try:
            report = client().get_text(f"/incidents/{iid}/report")
            a4.download_button("Download report (Markdown)", report, file_name=f"{iid}.md", mime="text/markdown",
                               key="vx_report")
        except ApiError as exc:
            a4.error(str(exc))
        msg = st.session_state.pop("vx_incident_msg", None)
        if msg:
            (st.success if msg[0] == "success" else st.error)(msg[1])

    marks = timeline_marks(inc)
    lo = min([start, *[m["ts_ms"] for m in marks]]) - 10 * 60_000
    hi = max([inc["resolved_ms"] or w.end_ms, *[m["ts_ms"] for m in marks]]) + 5 * 60_000
    span_w = type(w)(lo, min(hi, w.end_ms) if hi > lo else hi, w.label)
    overview = fetch("/overview", start_ms=span_w.start_ms, end_ms=span_w.end_ms,
                     step_s=max(60, (span_w.end_ms - span_w.start_ms) // 60_000 // 60 * 60))
    if overview is not None:
        fig = line_figure("Turn latency through the incident", "ms", height=380)
        add_series_lines(fig, overview["latency"], name_of=lambda s: f"P{float(s['labels']['quantile']) * 100:g}")
        fig.add_hline(y=overview["budget_ms"], line=dict(color="red", dash="dash"))
        annotate(fig, marks, span_w, [inc])
        st.plotly_chart(fig, width="stretch", key="incident_latency")
    pool = next((a["labels"]["pool"] for a in inc["alerts"].values() if a["labels"].get("pool")), None)
    if pool is not None:
        series = fetch("/series", metric="voxwatch_pool_saturation_ratio", label=[f"pool={pool}"], agg="max",
                       start_ms=span_w.start_ms, end_ms=span_w.end_ms)
        if series is not None and any(s["points"] for s in series["series"]):
            fig = line_figure(f"Saturation of {pool}", "ratio", height=340)
            add_series_lines(fig, series["series"])
            annotate(fig, marks, span_w, [inc])
            st.plotly_chart(fig, width="stretch", key="incident_saturation")

    st.subheader("Timeline")
    # a plain table: every line whole, in order, readable at a glance (and by a screen reader or a test)
    st.table(pd.DataFrame([{"time (UTC)": f"{ts(e['ts_ms']):%H:%M:%S}", "since start": since(e["ts_ms"], start),
                            "event": e["kind"], "what": e["title"], "who": e["actor"]}
                           for e in inc["timeline"]]).set_index("time (UTC)"))
    if inc["actions"]:
        st.subheader("Actions and their effects")
        rows = []
        for a in sorted(inc["actions"].values(), key=lambda a: a.get("applied_ms") or 0):
            before, after = a.get("before"), a.get("after")
            rows.append({"action": a["level"] + (f" in {a['region']}" if a.get("region") else ""), "rule": a.get("rule", ""),
                         "applied": since(a.get("applied_ms") or 0, start), "watched metric": a.get("effect_metric", ""),
                         "before": before, "after": after,
                         "change": f"{(after - before) / abs(before):+.0%}" if before and after is not None else "",
                         "reverted": since(a.get("reverted_ms") or 0, start) or "no"})
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    with st.expander("How alerts are grouped into incidents"):
        for line in (listing or {}).get("rules", []):
            st.markdown(f"- {line}")

st.divider()
st.subheader("Alert transitions, pages and actions in this range")
alerts = fetch("/alerts", **w.params)
if alerts and alerts["history"]:
    st.dataframe(pd.DataFrame([{"time": ts(a["ts_ms"]), "rule": a["rule"], "state": a["state"],
                                "from": a["previous_state"], "severity": a["severity"],
                                "summary": a["annotations"].get("summary", ""), "labels": labels_text(a["labels"])}
                               for a in alerts["history"]]), hide_index=True, width="stretch")
else:
    st.success("No alert transitions in this range.")
left, right = st.columns(2)
with left:
    st.markdown("**Notifications sent**")
    notes = fetch("/notifications", **w.params)
    if notes and notes["notifications"]:
        st.dataframe(pd.DataFrame([{"time": ts(n["ts_ms"]), "receiver": n["receiver"], "status": n["status"],
                                    "result": n["result"], "attempt": n["attempt"], "http": n["http_status"]}
                                   for n in notes["notifications"]]), hide_index=True, width="stretch")
    else:
        st.info("No notifications in this range.")
with right:
    st.markdown("**Actions taken**")
    deg = fetch("/degradation", **w.params)
    if deg and deg["history"]:
        st.dataframe(pd.DataFrame([{"time": ts(d["ts_ms"]), "phase": d["phase"], "level": d["level"],
                                    "from": d["previous_level"], "rule": d["rule"], "reason": d["reason"]}
                                   for d in deg["history"]]), hide_index=True, width="stretch")
    else:
        st.info("No degradation actions in this range.")
if not incidents:
    # no incident to draw: the range's events on the latency chart still tell what happened
    overview = fetch("/overview", **w.params, step_s=max(60, (w.end_ms - w.start_ms) // 60_000 // 60 * 60))
    if overview is not None:
        fig = line_figure("Turn latency with what happened", "ms")
        add_series_lines(fig, overview["latency"], name_of=lambda s: f"P{float(s['labels']['quantile']) * 100:g}")
        fig.add_hline(y=overview["budget_ms"], line=dict(color="red", dash="dash"))
        annotate(fig, incident_marks(w), w)
        st.plotly_chart(fig, width="stretch", key="latency_annotated")
