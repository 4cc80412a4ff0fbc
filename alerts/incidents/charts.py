"""Charts for the post-incident report, as plain SVG (no plotting library): turn latency P99 and the
saturation of each pool the incident names, over the incident, with the incident shaded and its events
as markers under the time axis. Series come from the store through telemetry's shared reads."""

from __future__ import annotations

import base64
import html
import logging
from datetime import UTC, datetime

from alerts.incidents.model import Incident

log = logging.getLogger(__name__)

W, H, LEFT, RIGHT, TOP, LANE = 720, 240, 56, 12, 28, 44
COLOURS = {"finding": "#8c564b", "alert": "#d62728", "page": "#ff7f0e", "action": "#2ca02c"}


def _window(inc: Incident) -> tuple[int, int]:
    times = [e.ts_ms for e in inc.timeline] + [inc.start_ms(), inc.opened_ms]
    lo = min(times) - 10 * 60_000
    hi = max(times + [inc.resolved_ms]) + 5 * 60_000
    return lo, hi


def svg_chart(title: str, unit: str, points: list[tuple[int, float]], inc: Incident, lo: int, hi: int,
              budget: float | None = None) -> str:
    """A line over [lo, hi] with the incident shaded and its events in a lane under the axis."""
    plot_h = H - TOP - LANE
    vmax = max([v for _, v in points] + [budget or 0.0, 1e-9]) * 1.1

    def x(ms: int) -> float:
        return LEFT + (ms - lo) / max(1, hi - lo) * (W - LEFT - RIGHT)

    def y(v: float) -> float:
        return TOP + plot_h - v / vmax * plot_h

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
             'font-family="sans-serif" font-size="11">',
             f'<rect width="{W}" height="{H}" fill="white"/>',
             f'<text x="{LEFT}" y="16" font-size="13" font-weight="bold">{html.escape(title)}</text>']
    end = inc.resolved_ms or hi
    first = min(x for x in (inc.opened_ms, inc.first_finding_ms) if x)
    parts.append(f'<rect x="{x(first):.1f}" y="{TOP}" width="{max(1.0, x(end) - x(first)):.1f}" height="{plot_h}" '
                 'fill="#d62728" fill-opacity="0.08"/>')
    for frac in (0.0, 0.5, 1.0):
        v = vmax / 1.1 * frac
        parts.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#eee"/>'
                     f'<text x="{LEFT - 4}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.3g}</text>')
    parts.append(f'<text x="10" y="{TOP + plot_h / 2:.0f}" transform="rotate(-90 10 {TOP + plot_h / 2:.0f})" '
                 f'text-anchor="middle">{html.escape(unit)}</text>')
    if budget is not None:
        parts.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y(budget):.1f}" y2="{y(budget):.1f}" '
                     'stroke="#d62728" stroke-dasharray="5,4"/>')
    if points:
        path = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in points)
        parts.append(f'<polyline points="{path}" fill="none" stroke="#1f77b4" stroke-width="1.5"/>')
    axis_y = TOP + plot_h
    parts.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{axis_y}" y2="{axis_y}" stroke="#999"/>')
    step = max(60_000, (hi - lo) // 6 // 60_000 * 60_000)
    t = (lo // step + 1) * step
    while t < hi:
        label = datetime.fromtimestamp(t / 1000, UTC).strftime("%H:%M")
        parts.append(f'<text x="{x(t):.1f}" y="{axis_y + 13}" text-anchor="middle">{label}</text>')
        t += step
    lane_y = axis_y + 30
    parts.append(f'<text x="{LEFT - 4}" y="{lane_y + 4}" text-anchor="end">events</text>')
    last_x = -1e9
    for e in inc.ordered_timeline():  # one marker per event, kept 8 px apart so none covers another
        colour = COLOURS.get(e.kind)
        if colour is None or x(e.ts_ms) - last_x < 8:
            continue
        last_x = x(e.ts_ms)
        parts.append(f'<circle cx="{last_x:.1f}" cy="{lane_y}" r="3.5" fill="{colour}"><title>'
                     f'{html.escape(e.title)}</title></circle>')
    parts.append("</svg>")
    return "".join(parts)


def incident_charts(store, inc: Incident) -> list[tuple[str, str]]:
    """(title, SVG) for turn latency P99 and each named pool's saturation; none when the store lacks them."""
    from telemetry.store import reads  # noqa: PLC0415 - only the report needs the store's shared reads

    lo, hi = _window(inc)
    tr = reads.TimeRange(lo, hi, max(15_000, (hi - lo) // 120 // 1000 * 1000))
    out: list[tuple[str, str]] = []
    try:
        ref = reads.resolve_metric(store, "voxwatch_turn_latency_seconds")
        series = reads.histogram_quantiles(store, ref, [], tr, [0.99])["series"]
        pts = [(int(t), v * 1000.0) for s in series for t, v in s["points"]]
        if pts:
            out.append(("Turn latency P99", svg_chart("Turn latency P99 through the incident", "ms", pts, inc, lo, hi,
                                                      budget=300.0)))
    except (reads.BadQuery, Exception):  # noqa: BLE001 - a report without a chart beats no report
        log.debug("no turn latency chart for %s", inc.incident_id, exc_info=True)
    pools = sorted({a["labels"]["pool"] for a in inc.alerts.values() if a["labels"].get("pool")})
    for pool in pools:
        try:
            ref = reads.resolve_metric(store, "voxwatch_pool_saturation_ratio")
            series = reads.metric_series(store, ref, [reads.LabelMatcher("pool", "=", pool)], tr, agg="max")["series"]
            pts = [(int(t), float(v)) for s in series[:1] for t, v in s["points"]]
            if pts:
                out.append((f"Saturation of pool {pool}", svg_chart(f"Saturation of pool {pool}", "ratio", pts, inc, lo, hi)))
        except Exception:  # noqa: BLE001
            log.debug("no saturation chart for %s", pool, exc_info=True)
    return out


def data_uri(svg: str) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()
