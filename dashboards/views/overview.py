"""Overview: is the pipeline healthy right now? Traffic, turn latency against the 300 ms budget,
errors, the most saturated resources with their forecast, active alerts and the degradation level."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboards.common import (
    add_series_lines,
    annotate,
    duration_text,
    fetch,
    fit_tiles,
    incident_bands,
    incident_marks,
    labels_text,
    line_figure,
    per_minute,
    range_label,
    refresh_seconds,
    series_text,
    source_picker,
    time_window,
    ts,
)

st.title("Overview")
fit_tiles()
label = range_label()
auto = st.sidebar.toggle("Auto-refresh", value=True, key="vx_auto")
source = source_picker(time_window(label))


@st.fragment(run_every=refresh_seconds() if auto else None)
def panels() -> None:
    w = time_window(label)
    # about 60 buckets: readable bars, and whole-minute steps read the rollups
    data = fetch("/overview", **w.params, step_s=max(60, (w.end_ms - w.start_ms) // 60_000 // 60 * 60),
                 region=source["regions"] if source else None)
    if data is None:
        return
    traffic = pd.DataFrame(data["traffic"])
    calls = int(traffic["calls"].sum()) if len(traffic) else 0
    failed = int(traffic["failed"].sum()) if len(traffic) else 0
    abandoned = int(traffic["abandoned"].sum()) if len(traffic) else 0
    p99 = next((s for s in data["latency"] if s["labels"].get("quantile") == "0.99"), None)
    p99_now = p99["points"][-1][1] if p99 and p99["points"] else None
    deg = data["degradation"]
    c1, c2, c2b, c3, c4, c5 = st.columns([1, 1, 1, 1.3, 0.8, 1.8])  # the level's name is the longest value
    c1.metric("Calls", f"{calls:,}")
    c2.metric("Failed calls", f"{(failed / calls if calls else 0):.1%}")
    # callers who hung up: what a 'failed 0.0%' tile alone hides when latency drives people away
    c2b.metric("Abandoned calls", f"{(abandoned / calls if calls else 0):.1%}")
    c3.metric("Turn latency P99 (latest)", "—" if p99_now is None else f"{p99_now:.0f} ms",
              delta=None if p99_now is None else f"{p99_now - data['budget_ms']:+.0f} ms vs budget", delta_color="inverse")
    c4.metric("Active alerts", len(data["active_alerts"]))
    c5.metric("Degradation level", deg["level"])
    st.caption(f"{w.label}: {ts(w.start_ms):%Y-%m-%d %H:%M} – {ts(w.end_ms):%H:%M} UTC · "
               + (f"source {source['name']} ({', '.join(source['regions'])}) · " if source else "") + "turn latency from "
               f"{data['latency_source']} · step {data['step_ms'] // 1000} s")

    marks = incident_marks(w)
    bands = incident_bands(w)
    for inc in [b for b in bands if b["state"] != "resolved"]:
        st.warning(f"Incident {inc['incident_id']} {inc['state']}: {inc['title']} "
                   f"({', '.join(inc['scope']) or 'no resource named'}) — [open it on the Incidents page](./incidents)")
    left, right = st.columns(2)
    with left:
        fig = line_figure("Turn latency P50 / P95 / P99", "ms")
        add_series_lines(fig, data["latency"], name_of=lambda s: f"P{float(s['labels']['quantile']) * 100:g}")
        fig.add_hline(y=data["budget_ms"], line=dict(color="red", dash="dash"), annotation_text="300 ms budget")
        annotate(fig, marks, w, bands)
        st.plotly_chart(fig, width="stretch", key="latency")
    with right:
        fig = line_figure("Traffic: calls started per minute", "calls / min")
        rates = per_minute(traffic, data["step_ms"], w.start_ms, w.end_ms, ("calls", "handoffs"))
        if len(rates):
            x = ts(rates["t"])
            fig.add_trace(go.Bar(x=x, y=rates["calls"], name="calls", marker_color="#1f77b4"))
            fig.add_trace(go.Bar(x=x, y=rates["handoffs"], name="handoffs", marker_color="#9467bd"))
            fig.update_layout(barmode="overlay", bargap=0.05)
        annotate(fig, marks, w, bands)
        st.plotly_chart(fig, width="stretch", key="traffic")
    left, right = st.columns(2)
    with left:
        fig = line_figure("Errors: failed and abandoned calls", "calls")
        if len(traffic):
            x = ts(traffic["t"])
            fig.add_trace(go.Scatter(x=x, y=traffic["failed"], name="failed", mode="lines", line=dict(color="#d62728")))
            fig.add_trace(go.Scatter(x=x, y=traffic["abandoned"], name="abandoned", mode="lines",
                                     line=dict(color="#ff7f0e")))
        annotate(fig, marks, w, bands)
        st.plotly_chart(fig, width="stretch", key="errors")
    with right:
        st.subheader("Most saturated resources")
        sat = data["saturation"]
        if sat:
            st.dataframe(pd.DataFrame([{
                "resource": series_text(s["metric"].removeprefix("voxwatch_").removesuffix("_saturation_ratio"), s["labels"]),
                "saturation": s["value"],
                "time to exhaustion": duration_text(s["time_to_exhaustion_s"]),
            } for s in sat]), hide_index=True, width="stretch",
                column_config={"saturation": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0, format="%.2f")})
        else:
            st.info("No saturation series in this range.")
    st.subheader("Active alerts")
    if data["active_alerts"]:
        st.dataframe(pd.DataFrame([{
            "rule": a["rule"], "state": a["state"], "severity": a["severity"], "labels": labels_text(a["labels"]),
            "summary": a["annotations"].get("summary", ""),
            "since": ts(a["active_since_ms"]) if a["active_since_ms"] else None,
        } for a in data["active_alerts"]]), hide_index=True, width="stretch")
    else:
        st.success("No alerts firing.")
    if deg["level"] != "NORMAL":
        st.warning(f"Degraded: {deg['level']} since {ts(deg['since_ms']):%H:%M:%S} UTC — {deg['reason']}"
                   if deg.get("since_ms") else f"Degraded: {deg['level']}")


panels()
