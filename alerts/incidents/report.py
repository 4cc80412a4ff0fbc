"""The post-incident report: Markdown an on-call engineer pastes into the review, with the timings,
what the detector saw first, the timeline, each action and its measured effect, and, for a replayed
scenario, the fault that was injected beside what Voxwatch did."""

from __future__ import annotations

from datetime import UTC, datetime

from alerts.incidents.model import Incident
from alerts.incidents.policy import GroupingPolicy

TIMING_NAMES = {"detect": "Detect (first alert fired)", "page": "Page (first page delivered)",
                "acknowledge": "Acknowledge", "mitigate": "Mitigate (action applied, effect measured)",
                "resolve": "Resolve"}


def _clock(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if ms else "—"


def _offset(ms: int, start: int) -> str:
    if not ms:
        return "—"
    s = (ms - start) / 1000
    sign = "-" if s < 0 else "+"
    s = abs(s)
    return f"{sign}{int(s // 3600)}:{int(s % 3600 // 60):02d}:{int(s % 60):02d}"


def _dur(seconds: float | None) -> str:
    if seconds is None:
        return "not reached"
    m, s = divmod(abs(seconds), 60)
    return f"{'-' if seconds < 0 else ''}{int(m)} min {int(s):02d} s"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _num(v) -> str:
    return "—" if v is None else f"{float(v):.4g}"


def markdown(inc: Incident, policy: GroupingPolicy | None = None, charts: list[tuple[str, str]] | None = None) -> str:
    """The report; `charts` are (title, image link) pairs: file names beside the report or data URIs."""
    policy = policy or GroupingPolicy()
    start = inc.start_ms()
    timeline = inc.ordered_timeline()
    out = [f"# {inc.incident_id}: {inc.title}", ""]
    out += [
        f"- **State**: {inc.state}" + (f" (resolved by {inc.resolved_by} at {_clock(inc.resolved_ms)})" if inc.resolved_ms else ""),
        f"- **Severity**: {inc.severity or '—'}",
        f"- **Resources**: {', '.join(inc.scope) or '—'}",
        f"- **Opened**: {_clock(inc.opened_ms)}",
        f"- **Acknowledged**: {f'{inc.acknowledged_by} at {_clock(inc.acknowledged_ms)}' if inc.acknowledged_ms else 'no'}",
        f"- **People paged** (receivers): {', '.join(inc.paged) or 'none'}",
        f"- **Alerts**: {', '.join(inc.rules)}",
        "",
        "## Timings",
        "",
        f"Counted from {'the fault start (scenario ground truth)' if inc.fault else 'the first signal Voxwatch saw'}, "
        f"{_clock(start)}.",
        "",
        "| milestone | after |",
        "|---|---|",
    ]
    for key, v in inc.timings().items():
        out.append(f"| {TIMING_NAMES[key]} | {_dur(v)} |")
    if charts:
        out += ["", "## Charts", ""] + [f"![{title}]({link})" for title, link in charts]
    out += ["", "## What the detector saw first", ""]
    first = next((e for e in timeline if e.kind == "finding"), None)
    if first is not None:
        out.append(f"{_clock(first.ts_ms)} ({_offset(first.ts_ms, start)}): {first.title}.")
    else:
        alert = next((e for e in timeline if e.kind == "alert"), None)
        out.append("No anomaly finding named these resources; the first signal was the alert condition "
                   + (f"of {alert.actor} from {_clock(alert.detail.get('pending_since_ms', alert.ts_ms))}." if alert else "."))
    if inc.fault:
        f = inc.fault
        out += ["", "## Ground truth (replayed scenario) beside what Voxwatch did", "",
                "| | when | what |", "|---|---|---|",
                f"| fault injected | {_clock(f['start_ms'])} (+0:00:00) | {_cell(f.get('kind', ''))} on "
                f"{_cell(f.get('target') or 'everything')}: {_cell(f.get('description', ''))} |",
                f"| fault ended | {_clock(f['end_ms'])} ({_offset(f['end_ms'], start)}) | |"]
        for label, ms in (("first finding", inc.first_finding_ms), ("incident opened (first alert fired)", inc.opened_ms),
                          ("first page delivered", inc.first_page_ms), ("first action's effect measured", inc.mitigated_ms),
                          ("acknowledged", inc.acknowledged_ms), ("resolved", inc.resolved_ms)):
            out.append(f"| {label} | {_clock(ms)} ({_offset(ms, start)}) | |")
    out += ["", "## Timeline", "", "| time (UTC) | since start | event | what | who |", "|---|---|---|---|---|"]
    for e in timeline:
        out.append(f"| {_clock(e.ts_ms)[11:19]} | {_offset(e.ts_ms, start)} | {e.kind} | {_cell(e.title)} | {_cell(e.actor)} |")
    out += ["", "## Actions and their effects", ""]
    if inc.actions:
        out += ["| action | rule | applied | watched metric | before | after | change | reverted |",
                "|---|---|---|---|---|---|---|---|"]
        for a in sorted(inc.actions.values(), key=lambda a: a.get("applied_ms") or 0):
            before, after = a.get("before"), a.get("after")
            change = f"{(after - before) / abs(before):+.0%}" if before and after is not None else "—"
            level = a["level"] + (f" in {a['region']}" if a.get("region") else "")
            out.append(f"| {level} | {a.get('rule', '')} | {_offset(a.get('applied_ms') or 0, start)} | "
                       f"{a.get('effect_metric') or '—'} | {_num(before)} | {_num(after)} | {change} | "
                       f"{_offset(a.get('reverted_ms') or 0, start) if a.get('reverted_ms') else 'no'} |")
    else:
        out.append("No degradation action was taken.")
    notes = [e for e in timeline if e.kind == "note"]
    if notes:
        out += ["", "## Notes", ""] + [f"- {_clock(e.ts_ms)} {e.actor}: {e.title}" for e in notes]
    out += ["", "## How Voxwatch grouped this incident", ""] + [f"{i}. {line}" for i, line in enumerate(policy.describe(), 1)]
    return "\n".join(out) + "\n"
