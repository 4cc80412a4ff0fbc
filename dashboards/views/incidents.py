"""Incidents: the alert timeline, the notifications sent and the actions taken, drawn as annotations on
the charts they explain (turn latency and the saturation that caused it)."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from dashboards.common import (
    add_series_lines,
    annotate,
    fetch,
    incident_marks,
    labels_text,
    line_figure,
    range_label,
    time_window,
    ts,
)

st.title("Incidents")
label = range_label()
w = time_window(label)
alerts = fetch("/alerts", **w.params)
marks = incident_marks(w)

st.subheader("Alert timeline")
if alerts and alerts["history"]:
    hist = pd.DataFrame(alerts["history"]).sort_values("ts_ms")
    rows = []
    for _fp, part in hist.groupby("alert_fingerprint"):
        part = part.sort_values("ts_ms")
        times = list(part["ts_ms"]) + [w.end_ms]
        for (_, r), end in zip(part.iterrows(), times[1:], strict=False):
            if r["state"] in ("pending", "firing"):
                scope = {k: v for k, v in r["labels"].items() if k not in ("alertname", "severity")}
                rows.append({"alert": f"{r['rule']} ({labels_text(scope)})", "state": r["state"],
                             "start": ts(r["ts_ms"]), "end": ts(end)})
    if rows:
        fig = px.timeline(pd.DataFrame(rows), x_start="start", x_end="end", y="alert", color="state",
                          color_discrete_map={"pending": "#ffbb78", "firing": "#d62728"})
        fig.update_layout(height=120 + 40 * len({r["alert"] for r in rows}), margin=dict(l=10, r=10, t=30, b=10))
        annotate(fig, [m for m in marks if m["kind"] != "alert"])
        st.plotly_chart(fig, width="stretch", key="timeline")
    st.dataframe(pd.DataFrame([{"time": ts(a["ts_ms"]), "rule": a["rule"], "state": a["state"],
                                "from": a["previous_state"], "severity": a["severity"],
                                "summary": a["annotations"].get("summary", ""), "labels": labels_text(a["labels"])}
                               for a in alerts["history"]]), hide_index=True, width="stretch")
else:
    st.success("No alert transitions in this range.")

overview = fetch("/overview", **w.params, step_s=max(60, (w.end_ms - w.start_ms) // 60_000 // 60 * 60))
if overview is not None:
    fig = line_figure("Turn latency with what happened", "ms")
    add_series_lines(fig, overview["latency"], name_of=lambda s: f"P{float(s['labels']['quantile']) * 100:g}")
    fig.add_hline(y=overview["budget_ms"], line=dict(color="red", dash="dash"))
    annotate(fig, marks)
    st.plotly_chart(fig, width="stretch", key="latency_annotated")
    sat = overview["saturation"][:1]
    if sat:
        top = sat[0]
        filt = [f"{k}={v}" for k, v in top["labels"].items()]
        series = fetch("/series", metric=top["metric"], label=filt, agg="max", **w.params)
        if series is not None:
            fig = line_figure(f"{top['metric']} ({labels_text(top['labels'])})", "ratio")
            add_series_lines(fig, series["series"])
            annotate(fig, marks)
            st.plotly_chart(fig, width="stretch", key="saturation_annotated")

left, right = st.columns(2)
with left:
    st.subheader("Notifications sent")
    notes = fetch("/notifications", **w.params)
    if notes and notes["notifications"]:
        st.dataframe(pd.DataFrame([{"time": ts(n["ts_ms"]), "receiver": n["receiver"], "status": n["status"],
                                    "result": n["result"], "attempt": n["attempt"], "http": n["http_status"]}
                                   for n in notes["notifications"]]), hide_index=True, width="stretch")
    else:
        st.info("No notifications in this range.")
with right:
    st.subheader("Actions taken")
    deg = fetch("/degradation", **w.params)
    if deg and deg["history"]:
        st.dataframe(pd.DataFrame([{"time": ts(d["ts_ms"]), "phase": d["phase"], "level": d["level"],
                                    "from": d["previous_level"], "rule": d["rule"], "reason": d["reason"]}
                                   for d in deg["history"]]), hide_index=True, width="stretch")
    else:
        st.info("No degradation actions in this range.")
