"""Backtesting: score what each rule did during a replayed scenario against the scenario's ground
truth (when each fault started and ended): when it fired and resolved, precision, recall and
detection delay. Pure functions over the engine's transitions; the composition root runs the
scenario (alerts never imports the pipeline).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Effects outlive their fault (queues drain, pools refill): a firing that starts this long after
# a fault ended still counts as caused by it.
GRACE_S = 600.0


class BacktestError(ValueError):
    pass


@dataclass
class Episode:
    rule: str
    labels: dict
    severity: str
    fired: float
    resolved: float | None


def episodes(transitions: list[dict]) -> list[Episode]:
    """Firing episodes (firing -> resolved) per alert, from the engine's transitions."""
    open_: dict[str, Episode] = {}
    out: list[Episode] = []
    for t in transitions:
        fp = t["fingerprint"]
        if t["state"] == "firing":
            ep = Episode(t["rule"], dict(t["labels"]), t["labels"].get("severity", ""), t["ts"], None)
            open_[fp] = ep
            out.append(ep)
        elif t["state"] == "resolved" and fp in open_:
            open_.pop(fp).resolved = t["ts"]
    return out


def _overlaps(ep: Episode, start: float, end: float, run_end: float) -> bool:
    ep_end = ep.resolved if ep.resolved is not None else run_end
    return ep.fired <= end + GRACE_S and ep_end >= start


def score(rules: list, transitions: list[dict], ground_truth: list[dict], t0: float, run_end: float) -> dict:
    """Per rule: episodes with times (seconds from t0), precision (episodes that overlap a fault),
    recall (faults caught), detection delay (fault start -> first firing for it)."""
    eps = episodes(transitions)
    faults = [(g, t0 + g["start_s"], t0 + g["end_s"]) for g in ground_truth]
    per_rule = {}
    for rule in rules:
        mine = [e for e in eps if e.rule == rule.name]
        tp = [e for e in mine if any(_overlaps(e, s, en, run_end) for _, s, en in faults)]
        caught, delays = [], []
        for g, s, en in faults:
            hits = [e for e in mine if _overlaps(e, s, en, run_end)]
            if hits:
                caught.append(g["fault"])
                delays.append(min(e.fired for e in hits) - s)
        per_rule[rule.name] = {
            "type": rule.type,
            "severity": rule.severity,
            "fired": [
                {"at_s": round(e.fired - t0, 1), "resolved_at_s": None if e.resolved is None else round(e.resolved - t0, 1),
                 "labels": {k: v for k, v in e.labels.items() if k not in ("alertname", "severity")}}
                for e in mine
            ],
            "episodes": len(mine),
            "precision": (len(tp) / len(mine)) if mine else None,
            "recall": (len(caught) / len(faults)) if faults else None,
            "faults_caught": caught,
            "detection_delay_s": [round(d, 1) for d in delays],
            "false_positives": len(mine) - len(tp),
        }
    pages = [e for e in eps if e.severity in ("page", "critical")]
    page_tp = [e for e in pages if any(_overlaps(e, s, en, run_end) for _, s, en in faults)]
    caught_any = [g["fault"] for g, s, en in faults if any(_overlaps(e, s, en, run_end) for e in pages)]
    first_page = {}
    for g, s, en in faults:
        hits = [e.fired for e in pages if _overlaps(e, s, en, run_end)]
        first_page[g["fault"]] = round(min(hits) - s, 1) if hits else None
    return {
        "rules": per_rule,
        "pages": {
            "episodes": len(pages),
            "precision": (len(page_tp) / len(pages)) if pages else None,
            "recall": (len(caught_any) / len(faults)) if faults else None,
            "false_positives": len(pages) - len(page_tp),
            "first_page_delay_s": first_page,
        },
    }


def would_send(requests: list[dict], t0: float) -> list[dict]:
    """What the receivers would have sent in a dry run, one line each: when (seconds into the
    replay), to whom, and which alerts with which status."""
    out = []
    for r in requests:
        body = r.get("body")
        if r["integration"] == "alertmanager":
            alerts = [f"{a['labels'].get('alertname', '?')} until {a['endsAt']}" for a in body or []]
        elif r["integration"] == "pagerduty":
            alerts = [f"{body.get('event_action')} {body.get('dedup_key')}"] if isinstance(body, dict) else []
        else:
            alerts = [f"{a['status']} {a['labels'].get('alertname', '?')}" for a in (body or {}).get("alerts", [])]
        at = r.get("at")
        out.append({"at_s": round(at - t0, 1) if at is not None else None, "receiver": r["receiver"],
                    "integration": r["integration"], "url": r["url"], "alerts": alerts})
    return out


def format_report(report: dict) -> str:
    lines = [f"scenario {report['scenario']}: {report['simulated_s']:.0f} simulated s in {report['wall_s']:.1f} wall s"]
    for g in report["ground_truth"]:
        lines.append(f"  fault {g['fault']}: {g['kind']} {g['target']} from {g['start_s']:.0f}s to {g['end_s']:.0f}s")
    p = report["pages"]
    fmt = lambda v: "-" if v is None or (isinstance(v, float) and math.isnan(v)) else (f"{v:.2f}" if isinstance(v, float) else str(v))  # noqa: E731
    lines.append(f"pages: {p['episodes']} episodes, precision {fmt(p['precision'])}, recall {fmt(p['recall'])}, "
                 f"first page after fault start: {p['first_page_delay_s']}")
    lines.append(f"{'rule':28} {'type':10} {'sev':7} {'fired':>5} {'prec':>5} {'recall':>6}  first firing (s) / delay (s)")
    for name, r in report["rules"].items():
        first = r["fired"][0]["at_s"] if r["fired"] else "-"
        lines.append(f"{name:28} {r['type']:10} {r['severity']:7} {r['episodes']:>5} {fmt(r['precision']):>5} "
                     f"{fmt(r['recall']):>6}  {first} / {r['detection_delay_s'] or '-'}")
    if report.get("actions"):
        lines.append("actions:")
        for a in report["actions"]:
            lines.append(f"  {a['at_s']:>7.1f}s {a['phase']:9} {a['level']:20} {a['region'] or '':8} {a['rule']}")
    if "would_send" in report and not report.get("delivered"):
        sends = report["would_send"]
        lines.append(f"notifications (not sent; --deliver sends them): {len(sends)}" if sends else
                     "notifications: none would have been sent (no receiver is configured, or nothing fired)")
        for n in sends[:50]:
            lines.append(f"  {n['at_s']:>7.1f}s {n['receiver']:12} {n['integration']:12} {n['url']}: {'; '.join(n['alerts'])[:120]}")
        if len(sends) > 50:
            lines.append(f"  ... and {len(sends) - 50} more (--json lists them all)")
    return "\n".join(lines)
