"""Metrics: browse and search the catalog, then plot any metric with label filters."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboards.common import add_series_lines, fetch, line_figure, range_label, time_window

st.title("Metrics")
label = range_label()
w = time_window(label)

q = st.text_input("Search the catalog", placeholder="e.g. pool saturation, stt latency, cache hit", key="vx_metric_q")
stored_only = st.toggle("Only metrics with stored samples", value=True, key="vx_stored_only")
cat = fetch("/catalog", q=q or None, stored_only=stored_only)
if cat is not None:
    st.caption(f"{cat['total']} metrics ({'declared catalog' if cat['source'] == 'catalog' else 'seen in the store'})")
    table = pd.DataFrame(cat["metrics"])
    if len(table):
        st.dataframe(table[["id", "name", "type", "unit", "layer", "labels", "description"]], hide_index=True,
                     width="stretch", height=240)
        names = list(table["name"])
        metric = st.selectbox("Metric to plot", names, key="vx_metric")
        spec = table[table["name"] == metric].iloc[0]
        labels = fetch(f"/metrics/{metric}/labels")
        filters: list[str] = []
        if labels and labels["labels"]:
            cols = st.columns(min(4, len(labels["labels"])))
            for i, (name, values) in enumerate(labels["labels"].items()):
                if name == "le":
                    continue
                chosen = cols[i % len(cols)].multiselect(name, values, key=f"vx_label_{metric}_{name}")
                if chosen:
                    filters.append(f"{name}=~{'|'.join(chosen)}" if len(chosen) > 1 else f"{name}={chosen[0]}")
        steps = {"auto": None, "10 s": 10, "1 min": 60, "5 min": 300, "15 min": 900, "1 h": 3600}
        step = steps[st.select_slider("Step", list(steps), value="auto", key="vx_step")]
        if step is None:  # about 120 points; whole minutes past a minute, which reads the rollups
            step = max(10, (w.end_ms - w.start_ms) // 120_000)
            step = step // 60 * 60 if step >= 60 else step
        params: dict = {"metric": metric, "label": filters, "step_s": step, **w.params}
        if spec["type"] == "histogram":
            picked = st.multiselect("Percentiles", ["0.5", "0.9", "0.95", "0.99"], default=["0.5", "0.95", "0.99"],
                                    key="vx_pcts")
            params["percentiles"] = ",".join(picked) or "0.5"
        else:
            default = "rate" if spec["type"] == "counter" else "avg"
            aggs = ["avg", "min", "max", "last", "sum", "count", "rate"]
            params["agg"] = st.selectbox("Aggregation per step", aggs, index=aggs.index(default), key="vx_agg")
            group = st.multiselect("Group by (others combined)", [k for k in (labels or {}).get("labels", {}) if k != "le"],
                                   key="vx_group")
            if group:
                params["group_by"] = ",".join(group)
        data = fetch("/series", **params)
        if data is not None:
            unit = spec["unit"] or ""
            fig = line_figure(f"{metric} ({data.get('agg') or 'percentiles'}, {data['source']}, "
                              f"step {data['step_ms'] // 1000} s)", unit)
            add_series_lines(fig, data["series"])
            st.plotly_chart(fig, width="stretch", key="metric_chart")
            st.caption(f"{len(data['series'])} series · {spec['description']}")
    else:
        st.info("No metric matches.")
