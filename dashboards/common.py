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


ALL_SOURCES = "All sources"


def source_picker(w: Window) -> dict | None:
    """The sidebar's source selector, drawn only when the range holds calls of more than one pipeline
    (Voxwatch's own, and each one sending OTLP, by its service.name). Returns the chosen source
    (`name`, `regions`, ...) or None for all. Pages filter by the source's regions: the label its calls
    and stage metrics carry. Call it outside fragments (they may not draw in the sidebar)."""
    data = fetch("/sources", **w.params)
    sources = data["sources"] if data else []
    if len(sources) < 2:
        return None
    names = [s["name"] for s in sources]
    choice = st.sidebar.selectbox("Source", [ALL_SOURCES, *names], key="vx_source",
                                  help="the pipeline to show: Voxwatch's own or one sending OTLP")
    return next((s for s in sources if s["name"] == choice), None)


def in_source(labels: dict, source: dict | None) -> bool:
    """Whether a series' labels belong to the chosen source (its regions, or its `source` label)."""
    return source is None or labels.get("region") in source["regions"] or labels.get("source") == source["name"]


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


LANE_KINDS = ("finding", "alert", "page", "action", "incident")  # a marker shows its most telling kind: the last
LANE_SYMBOLS = {"finding": "diamond", "alert": "triangle-up", "page": "circle", "action": "square", "incident": "star"}
LANE_COLOURS = {**ANNOTATION_COLOURS, "page": "#ff7f0e", "finding": "#8c564b", "incident": "#555555"}
BAND_COLOURS = {"open": "rgba(214,39,40,0.10)", "acknowledged": "rgba(255,127,14,0.10)", "resolved": "rgba(127,127,127,0.10)"}
# markers stay at least 1/30 of the range apart (closer events share one, and its hover): 10 px markers
# then keep clear of each other on plots down to 300 px wide, the half-width Overview charts included
LANE_SLOTS = 30
TILE_CSS = """<style>
[data-testid="stMetricValue"] { font-size: clamp(1.05rem, 1.6vw, 2.25rem); }
[data-testid="stMetricValue"] * { white-space: normal !important; overflow: visible !important;
  text-overflow: clip !important; overflow-wrap: anywhere; line-height: 1.15; }
</style>"""


def fit_tiles() -> None:
    """Metric tiles that show their whole value: long values (INTEGRATIONS QUEUED) wrap and shrink
    instead of being cut to 'INTEGRA...'."""
    st.markdown(TILE_CSS, unsafe_allow_html=True)


def incident_marks(w: Window) -> list[dict]:
    """Alert firings/resolutions, pages sent and degradation actions in the window, as lane events."""
    marks: list[dict] = []
    alerts = fetch("/alerts", **w.params)
    if alerts:
        for a in alerts["history"]:
            if a["state"] in ("firing", "resolved"):
                scope = labels_text({k: v for k, v in a["labels"].items() if k not in ("alertname", "severity")})
                marks.append({"ts_ms": a["ts_ms"], "kind": "alert",
                              "text": f"{a['rule']} {a['state']}" + (f" ({scope})" if scope else "")})
    notes = fetch("/notifications", **w.params)
    if notes:
        for n in notes["notifications"]:
            if n["integration"] != "action" and n["result"] not in ("deduplicated",):
                marks.append({"ts_ms": n["ts_ms"], "kind": "page", "text": f"page {n['status']} to {n['receiver']}: {n['result']}"})
    deg = fetch("/degradation", **w.params)
    if deg:
        for d in deg["history"]:
            if d["phase"] in ("applied", "reverted", "refused"):
                marks.append({"ts_ms": d["ts_ms"], "kind": "action", "text": f"{d['phase']} {d['level']}"})
    return sorted(marks, key=lambda m: m["ts_ms"])


def incident_bands(w: Window) -> list[dict]:
    """The incidents alive in the window: shaded bands on the charts."""
    data = fetch("/incidents", **w.params)
    return data["incidents"] if data else []


def timeline_marks(incident: dict) -> list[dict]:
    """An incident's timeline as lane events."""
    kinds = {"opened": "incident", "acknowledged": "incident", "resolved": "incident", "note": "incident"}
    return [{"ts_ms": e["ts_ms"], "kind": kinds.get(e["kind"], e["kind"]), "text": e["title"]} for e in incident["timeline"]]


def _lane_points(marks: list[dict], w: Window | None) -> list[dict]:
    """Markers at least 1/LANE_SLOTS of the range apart: an event closer than that to the previous
    marker joins it (listed in its hover), so no two markers ever overlap."""
    if not marks:
        return []
    lo = w.start_ms if w else min(m["ts_ms"] for m in marks)
    hi = w.end_ms if w else max(m["ts_ms"] for m in marks)
    gap = max(1.0, (hi - lo) / LANE_SLOTS)
    points: list[dict] = []
    for m in sorted(marks, key=lambda m: m["ts_ms"]):
        kind = m["kind"] if m["kind"] in LANE_KINDS else "incident"
        if points and m["ts_ms"] - points[-1]["ts_ms"] < gap:
            points[-1]["events"].append(m)
            points[-1]["kind"] = max(points[-1]["kind"], kind, key=LANE_KINDS.index)
        else:
            points.append({"ts_ms": m["ts_ms"], "kind": kind, "events": [m]})
    for p in points:
        ms = p["events"]
        lines = [f"{ts(m['ts_ms']):%H:%M:%S} {m['text']}" for m in ms[:10]]
        if len(ms) > 10:
            lines.append(f"... and {len(ms) - 10} more")
        p["hover"] = "<br>".join(lines)
    return points


def annotate(fig: go.Figure, marks: list[dict], w: Window | None = None, bands: list[dict] | None = None) -> None:
    """Incidents as shaded bands over the chart, and events as markers in one lane under the time axis
    (one row; a marker takes the shape of the most telling event it holds, hover lists them all): no text
    is written on the chart and markers keep apart, so nothing can overlap."""
    end_ms = w.end_ms if w else None
    for b in bands or []:
        x1 = b["resolved_ms"] or end_ms or b["opened_ms"]
        # from the first signal (a finding) or the first alert, whichever came first, to the resolution
        first = min(x for x in (b["opened_ms"], b.get("first_finding_ms") or 0) if x)
        fig.add_vrect(x0=ts(first),
                      x1=ts(max(x1, b["opened_ms"])), fillcolor=BAND_COLOURS.get(b["state"], BAND_COLOURS["open"]),
                      line_width=0, layer="below")
    points = _lane_points(marks, w)
    if not points:
        return
    fig.update_layout(
        yaxis=dict(domain=[0.2, 1.0]),
        yaxis9=dict(domain=[0.0, 0.08], range=[-1, 1], fixedrange=True, showgrid=False, zeroline=False,
                    tickvals=[0], ticktext=["events"], tickfont=dict(size=10)),
        # one line of time labels (the date is in the page's caption): the lane sits right under them
        xaxis=dict(tickformat="%H:%M"),
        hovermode="closest", margin=dict(l=10, r=10, t=40, b=10))
    for kind in LANE_KINDS:
        pts = [p for p in points if p["kind"] == kind]
        if not pts:
            continue
        fig.add_trace(go.Scatter(
            x=[ts(p["ts_ms"]) for p in pts], y=[0] * len(pts), yaxis="y9", mode="markers",
            name=f"{kind}s", legendgroup="events", hovertext=[p["hover"] for p in pts], hoverinfo="text",
            marker=dict(symbol=LANE_SYMBOLS[kind], size=10, color=LANE_COLOURS.get(kind, "#7f7f7f"),
                        line=dict(width=1, color="white")),
            meta=kind))


def per_minute(traffic: pd.DataFrame, step_ms: int, start_ms: int, end_ms: int, columns=("calls",)) -> pd.DataFrame:
    """Counts per bucket as rates per minute over the part of each bucket the range covers, without
    buckets it barely touches: a steady load draws steady bars even where the range cuts a bucket."""
    if not len(traffic):
        return traffic
    t = traffic["t"].astype("int64")
    covered = (t + step_ms).clip(upper=end_ms) - t.clip(lower=start_ms)
    keep = covered >= step_ms / 4
    out = traffic[keep].copy()
    for c in columns:
        out[c] = traffic.loc[keep, c] / covered[keep] * 60_000
    return out


def labels_text(labels: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in labels.items())


def series_text(name: str, labels: dict) -> str:
    """A series as people read it: `name (k=v, ...)`, or the name alone when it has no labels."""
    return f"{name} ({labels_text(labels)})" if labels else name


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = float(seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
