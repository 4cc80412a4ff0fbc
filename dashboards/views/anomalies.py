"""Anomalies: the detectors' findings, each with its expected band and, for saturation trends, the
forecast of when the resource runs out."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboards.common import (
    duration_text,
    fetch,
    in_source,
    labels_text,
    line_figure,
    range_label,
    series_text,
    source_picker,
    time_window,
    ts,
)

st.title("Anomalies")
label = range_label()
w = time_window(label)
source = source_picker(w)
kinds = st.multiselect("Kinds", ["saturation_trend", "level_shift", "spike", "multivariate"], key="vx_kinds")
data = fetch("/findings", **w.params)
if data is not None:
    found = [f for f in data["findings"] if (not kinds or f["kind"] in kinds) and in_source(f["labels"], source)]
    st.caption(f"{len(found)} findings")
    if not found:
        st.success("No findings in this range.")
    else:
        table = pd.DataFrame([{
            "time": ts(f["ts_ms"]), "kind": f["kind"], "metric": f["metric"], "labels": labels_text(f["labels"]),
            "score": f["score"], "value": f["value"], "expected": f"{f['expected_low']:.3g} – {f['expected_high']:.3g}"
            if f["expected_low"] is not None and f["expected_high"] is not None else "—",
            "time to exhaustion": duration_text(f["time_to_exhaustion_s"]), "reason": f["reason"], "id": f["finding_id"],
        } for f in found])
        st.dataframe(table, hide_index=True, width="stretch")
        # open on the newest saturation forecast when there is one: it is the finding that has a deadline
        first = next((i for i, f in enumerate(found) if f["time_to_exhaustion_s"]), 0)
        choice = st.selectbox("Finding", [f"{f['finding_id']} · {f['kind']} · {f['metric']}" for f in found],
                              index=first, key="vx_finding")
        f = found[[f"{x['finding_id']} · {x['kind']} · {x['metric']}" for x in found].index(choice)]
        filt = [f"{k}={v}" for k, v in f["labels"].items()]
        params = dict(metric=f["metric"], label=filt, **w.params)
        series = fetch("/series", **params, **({} if f["metric"].endswith("_seconds") else {"agg": "avg"}),
                       **({"percentiles": "0.99"} if f["metric"].endswith("_seconds") else {}))
        fig = line_figure(series_text(f["metric"], f["labels"]), "")
        if series is not None:
            for s in series["series"]:
                pts = s["points"]
                if pts:
                    fig.add_trace(go.Scatter(x=ts(pd.Series([p[0] for p in pts])), y=[p[1] for p in pts], mode="lines",
                                             name=labels_text(s["labels"]) or "value"))
        at = ts(f["ts_ms"])
        if f["expected_low"] is not None and f["expected_high"] is not None:
            fig.add_hrect(y0=f["expected_low"], y1=f["expected_high"], fillcolor="green", opacity=0.12, line_width=0,
                          annotation_text="expected band", annotation_position="top left")
        fig.add_vline(x=at, line=dict(color="#d62728", dash="dot"))
        if f["time_to_exhaustion_s"] and f["value"] is not None:
            # the forecast: a straight line from the finding's value to capacity (1.0) at exhaustion
            end = ts(f["ts_ms"] + f["time_to_exhaustion_s"] * 1000)
            fig.add_trace(go.Scatter(x=[at, end], y=[f["value"], 1.0], mode="lines+markers", name="forecast",
                                     line=dict(color="#d62728", dash="dash")))
            fig.add_annotation(x=end, y=1.0, text=f"exhausted in {duration_text(f['time_to_exhaustion_s'])}",
                               showarrow=True)
        st.plotly_chart(fig, width="stretch", key="finding_chart")
        st.info(f["reason"])
