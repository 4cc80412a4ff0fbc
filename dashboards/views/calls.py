"""Calls: the analysts' call-history explorer (filters, CSV export) and one call's turn-by-turn
waterfall of stage spans with its transcript and the alerts and actions around it."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboards.common import fetch, labels_text, range_label, source_picker, time_window, ts

STAGE_COLOURS = {"stt": "#1f77b4", "nlu": "#9467bd", "llm": "#ff7f0e", "tts": "#2ca02c", "tool": "#8c564b",
                 "integration": "#8c564b", "integrations": "#8c564b", "response": "#ff7f0e", "handoff": "#e377c2",
                 "vad": "#7f7f7f", "endpoint": "#7f7f7f", "edge": "#bcbd22", "interruption": "#d62728"}

st.title("Calls")
label = range_label()
w = time_window(label)
source = source_picker(w)

with st.form("vx_call_filters"):
    c1, c2, c3, c4 = st.columns(4)
    regions = c1.text_input("Regions (comma-separated)", key="vx_f_region")
    languages = c2.text_input("Languages", key="vx_f_lang")
    intents = c3.text_input("Intents", key="vx_f_intent")
    outcomes = c4.multiselect("Outcome", ["completed", "handoff", "abandoned", "failed", "silence"], key="vx_f_outcome")
    c1, c2, c3, c4 = st.columns(4)
    handoff = c1.selectbox("Handoff", ["any", "yes", "no"], key="vx_f_handoff")
    min_latency = c2.number_input("P95 turn latency above (ms)", min_value=0, value=0, step=50, key="vx_f_lat")
    text = c3.text_input("Words in the transcript", key="vx_f_text")
    limit = c4.number_input("Rows", min_value=10, max_value=10_000, value=200, step=50, key="vx_f_limit")
    traced = st.checkbox("Only traced calls (those with stage spans and a transcript)", key="vx_f_traced")
    st.form_submit_button("Search")


def split(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


chosen = split(regions)
if source is not None:  # a source is its regions; regions typed in the form narrow it
    chosen = [r for r in chosen if r in source["regions"]] if chosen else source["regions"]
result = None
if source is not None and not chosen:
    st.info(f"None of those regions is {source['name']}'s ({', '.join(source['regions'])}).")
else:
    result = fetch("/calls", **w.params, region=chosen, language=split(languages), intent=split(intents),
                   outcome=outcomes, handoff={"any": None, "yes": True, "no": False}[handoff],
                   min_latency_ms=min_latency or None, text=text or None, traced=True if traced else None,
                   limit=int(limit))
if result is not None:
    calls = pd.DataFrame(result["calls"])
    total = result["total"]
    st.caption(f"{total:,} {'call matches' if total == 1 else 'calls match'} · showing {len(calls)} newest")
    if len(calls):
        calls.insert(1, "started", ts(calls["started_ms"]))
        calls["intents"] = calls["intents"].map(lambda v: ", ".join(v))
        shown = calls[["call_id", "started", "region", "language", "intents", "outcome", "handoff", "turns",
                       "latency_p50_ms", "latency_p95_ms", "latency_max_ms", "degradation_level"]].copy()
        # a call without a turn (the caller never spoke) has no latency: blank, not a 0 ms that reads as fast
        shown.loc[shown["turns"] == 0, ["latency_p50_ms", "latency_p95_ms", "latency_max_ms"]] = None
        ms = {c: st.column_config.NumberColumn(c, format="%.0f") for c in ("latency_p50_ms", "latency_p95_ms", "latency_max_ms")}
        st.dataframe(shown, hide_index=True, width="stretch", height=300, column_config=ms)
        st.download_button("Export CSV", calls.drop(columns=["started"]).to_csv(index=False).encode(),
                           file_name="voxwatch-calls.csv", mime="text/csv", key="vx_csv")
        # traced calls first: they are the ones with a waterfall and a transcript to show
        ordered = list(calls.loc[calls["trace_id"] != "", "call_id"]) + list(calls.loc[calls["trace_id"] == "", "call_id"])
        call_id = st.selectbox("Call", ordered, key="vx_call")
        detail = fetch(f"/calls/{call_id}")
        if detail is not None:
            call = detail["call"]
            st.subheader(f"Call {call['call_id']}")
            st.caption(f"{call['region']} · {call['language']} · {', '.join(call['intents'])} · {call['outcome']} · "
                       f"{call['turns']} turn{'' if call['turns'] == 1 else 's'} · "
                       + (f"P95 {call['latency_p95_ms']:.0f} ms · " if call["turns"] else "")
                       + f"level {call['degradation_level']}")
            if not detail["turns"]:
                st.info("This call was not traced (its spans were sampled out), so there is no waterfall.")
            # each turn on its own clock (0 = its start, the caller's end of speech): turns of a real
            # call are seconds apart, and on one call-wide axis a 40 ms decode is a hairline
            fig = go.Figure()
            seen = set()
            for turn in detail["turns"]:
                row = f"turn {turn['turn']}"
                t0 = turn["start_us"]
                fig.add_trace(go.Bar(y=[row], x=[turn["duration_ms"]], base=[0.0],
                                     orientation="h", marker_color="rgba(120,120,120,0.25)", name="turn",
                                     showlegend="turn" not in seen, hovertext=f"turn {turn['duration_ms']:.0f} ms",
                                     text=[f"{turn['duration_ms']:.0f} ms"], textposition="outside", cliponaxis=False))
                seen.add("turn")
                for s in turn["stages"]:
                    fig.add_trace(go.Bar(
                        y=[f"{row} · {s['name']}"], x=[s["duration_ms"]], base=[(s["start_us"] - t0) / 1000],
                        orientation="h", name=s["name"], showlegend=s["name"] not in seen,
                        marker_color="#d62728" if s["status"] == "error" else STAGE_COLOURS.get(s["name"], "#17becf"),
                        hovertext=f"{s['name']} {s['duration_ms']:.1f} ms {s['status']}",
                        text=[f"{s['duration_ms']:.0f} ms"], textposition="outside", cliponaxis=False))
                    seen.add(s["name"])
            n_rows = sum(1 + len(t["stages"]) for t in detail["turns"])
            fig.update_layout(title="Turn-by-turn waterfall (ms from each turn's start, the caller's end of speech)",
                              barmode="overlay",
                              height=120 + 22 * n_rows, margin=dict(l=10, r=10, t=40, b=10),
                              yaxis=dict(autorange="reversed"), xaxis_title="ms")
            if detail["turns"]:
                st.plotly_chart(fig, width="stretch", key="waterfall")
            st.subheader("Transcript")
            st.code(detail["transcript"] or "(no transcript)", language=None)
            if detail["alerts"] or detail["actions"]:
                st.subheader("Alerts and actions during the call")
                rows = [{"time": ts(a["ts_ms"]), "what": f"alert {a['rule']} {a['state']}",
                         "detail": labels_text(a["labels"])} for a in detail["alerts"]]
                rows += [{"time": ts(a["ts_ms"]), "what": f"action {a['phase']} {a['level']}", "detail": a["reason"]}
                         for a in detail["actions"]]
                st.dataframe(pd.DataFrame(rows).sort_values("time"), hide_index=True, width="stretch")
    else:
        st.info("No call matches these filters in this range.")
