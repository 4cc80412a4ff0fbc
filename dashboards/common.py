"""What every dashboard page shares: the API client, the one time-range picker, charts' look and the
annotations (alerts fired, pages sent, actions taken) drawn on the charts they explain."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboards.client import ApiError, QueryClient

RANGES = {"Last 15 minutes": 15 * 60_000, "Last hour": 3_600_000, "Last 6 hours": 6 * 3_600_000,
          "Last 24 hours": 86_400_000, "Last 7 days": 7 * 86_400_000}
DEFAULT_RANGE = "Last hour"
BUDGET_MS = 300.0
MAX_MARKS = 40
ANNOTATION_COLOURS = {"alert": "#d62728", "notification": "#ff7f0e", "action": "#2ca02c"}


def client() -> QueryClient:
    if "vx_client" not in st.session_state:
        st.session_state["vx_client"] = QueryClient()
    return st.session_state["vx_client"]


def refresh_seconds() -> float:
    try:
        return max(1.0, float(os.environ.get("VOXWATCH_REFRESH_S", "10")))
    except ValueError:
        return 10.0


@dataclass(frozen=True)
class Window:
    start_ms: int
    end_ms: int
    label: str

    @property
    def params(self) -> dict:
        return {"start_ms": self.start_ms, "end_ms": self.end_ms}


def range_picker() -> str:
    """The sidebar's one time-range picker; app.py draws it once for every page (pages run alone in tests
    draw it themselves)."""
    return st.sidebar.selectbox("Time range", list(RANGES), index=list(RANGES).index(DEFAULT_RANGE), key="vx_range")


def range_label() -> str:
    """The chosen range's name: from app.py's picker, or this page's own when it runs alone (tests).
    Call it outside fragments: a fragment may not draw in the sidebar."""
    label = st.session_state.get("vx_range", DEFAULT_RANGE) if st.session_state.get("vx_nav") else range_picker()
    return label if label in RANGES else DEFAULT_RANGE


def time_window(label: str | None = None) -> Window:
    """The window every panel of the page shows. Ranges end at the service's clock, so a replayed
    incident shows its own 'now'; each call re-reads it (auto-refresh moves the window forward)."""
    label = label or range_label()
    try:
        now = int(client().get("/now")["now_ms"])
    except ApiError:
        now = int(datetime.now(UTC).timestamp() * 1000)
    return Window(now - RANGES[label], now, label)


def show_error(exc: Exception) -> None:
    st.error(f"{exc}")


def fetch(path: str, **params) -> dict | None:
    """GET from the API; on refusal, show the API's reason on the page and return None."""
    try:
        return client().get(path, **params)
    except ApiError as exc:
        show_error(exc)
        return None


def ts(ms) -> pd.Series | datetime:
    if isinstance(ms, pd.Series):
        return pd.to_datetime(ms, unit="ms", utc=True)
    return datetime.fromtimestamp(int(ms) / 1000, UTC)


def line_figure(title: str, yaxis: str, height: int = 320) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(title=title, height=height, margin=dict(l=10, r=10, t=40, b=10), yaxis_title=yaxis,
                      legend=dict(orientation="h", y=-0.2), hovermode="x unified")
    return fig


def add_series_lines(fig: go.Figure, series: list[dict], name_of=None, scale: float = 1.0) -> None:
    for s in series:
        pts = s.get("points") or []
        if not pts:
            continue
        x = ts(pd.Series([p[0] for p in pts]))
        y = [p[1] * scale for p in pts]
        name = name_of(s) if name_of else ", ".join(f"{k}={v}" for k, v in s.get("labels", {}).items()) or "value"
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=name))


def incident_marks(w: Window) -> list[dict]:
    """Alert firings/resolutions, notifications sent and degradation actions in the window, as marks."""
    marks: list[dict] = []
    alerts = fetch("/alerts", **w.params)
    if alerts:
        for a in alerts["history"]:
            if a["state"] in ("firing", "resolved"):
                marks.append({"ts_ms": a["ts_ms"], "kind": "alert", "text": f"{a['rule']} {a['state']}"})
    notes = fetch("/notifications", **w.params)
    if notes:
        for n in notes["notifications"]:
            if n["result"] == "delivered":
                marks.append({"ts_ms": n["ts_ms"], "kind": "notification", "text": f"page {n['status']} → {n['receiver']}"})
    deg = fetch("/degradation", **w.params)
    if deg:
        for d in deg["history"]:
            if d["phase"] in ("applied", "reverted"):
                marks.append({"ts_ms": d["ts_ms"], "kind": "action", "text": f"{d['phase']} {d['level']}"})
    # a storm of transitions would bury the chart: keep the latest ones
    return sorted(marks, key=lambda m: m["ts_ms"])[-MAX_MARKS:]


def annotate(fig: go.Figure, marks: list[dict]) -> None:
    """Draw each mark as a dotted vertical line with its text, coloured by kind."""
    for i, m in enumerate(marks):
        x = ts(m["ts_ms"])
        colour = ANNOTATION_COLOURS.get(m["kind"], "#7f7f7f")
        fig.add_shape(type="line", x0=x, x1=x, y0=0, y1=1, yref="paper", line=dict(color=colour, dash="dot", width=1))
        fig.add_annotation(x=x, y=1 - 0.08 * (i % 4), yref="paper", text=m["text"], showarrow=False,
                           font=dict(size=10, color=colour), xanchor="left", bgcolor="rgba(255,255,255,0.7)")


def labels_text(labels: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in labels.items())


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = float(seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
