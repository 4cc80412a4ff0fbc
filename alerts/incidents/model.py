"""An incident and its timeline: what the tracker builds, the store keeps, the API serves and the
report prints. Times are epoch milliseconds, as everywhere in the store."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

OPEN, ACKNOWLEDGED, RESOLVED = "open", "acknowledged", "resolved"
STATES = (OPEN, ACKNOWLEDGED, RESOLVED)
# severities the shipped rules use, most urgent first; an unknown one ranks lowest
SEVERITY_ORDER = ("critical", "page", "ticket", "warning", "info")

# event kinds of a timeline, in the order they sort when they share a millisecond
EVENT_KINDS = ("finding", "opened", "alert", "action", "page", "acknowledged", "note", "resolved", "reopened")


def severity_rank(severity: str) -> int:
    """Higher is more urgent."""
    try:
        return len(SEVERITY_ORDER) - SEVERITY_ORDER.index(severity)
    except ValueError:
        return 0


@dataclass
class TimelineEvent:
    ts_ms: int
    kind: str  # one of EVENT_KINDS
    title: str  # one line, as an on-call engineer reads it
    actor: str = ""  # who did it: a rule, a receiver, a person's token name, 'voxwatch'
    detail: dict[str, Any] = field(default_factory=dict)
    seq: int = 0  # order of arrival within the incident

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> TimelineEvent:
        return cls(int(d["ts_ms"]), str(d["kind"]), str(d["title"]), str(d.get("actor", "")),
                   dict(d.get("detail") or {}), int(d.get("seq", 0)))


@dataclass
class Incident:
    incident_id: str
    opened_ms: int  # the first alert of the incident fired
    state: str = OPEN
    severity: str = ""
    title: str = ""
    title_names_resource: bool = False  # the title's alert names a resource (pool=orders), so it stays
    scope: list[str] = field(default_factory=list)  # resource label values: orders, us-east, crm ...
    alerts: dict[str, dict] = field(default_factory=dict)  # fingerprint -> rule, labels, state, times
    paged: list[str] = field(default_factory=list)  # receivers a firing page was delivered to
    actions: dict[str, dict] = field(default_factory=dict)  # action_id -> level, metric, before, after, times
    acknowledged_ms: int = 0
    acknowledged_by: str = ""
    resolved_ms: int = 0
    resolved_by: str = ""
    first_finding_ms: int = 0
    first_signal_ms: int = 0  # the earliest finding or alert condition (pending) seen for it
    first_page_ms: int = 0
    mitigated_ms: int = 0  # an action applied and its effect measured
    last_change_ms: int = 0  # the latest alert firing/resolution or action: the cascade window counts from it
    cleared_ms: int = 0  # every alert resolved and every action reverted since then (0: not clear)
    findings: int = 0  # findings that matched its scope (the timeline keeps the first of each series)
    finding_keys: list[str] = field(default_factory=list)
    fault: dict | None = None  # a replayed scenario's ground truth for it, when known
    timeline: list[TimelineEvent] = field(default_factory=list)

    @property
    def rules(self) -> list[str]:
        return sorted({a["rule"] for a in self.alerts.values()})

    def firing(self) -> list[str]:
        return [fp for fp, a in self.alerts.items() if a["state"] == "firing"]

    def active_actions(self) -> list[str]:
        return [i for i, a in self.actions.items() if a.get("applied_ms") and not a.get("reverted_ms")]

    def start_ms(self) -> int:
        """Where the clock of the incident's timings starts: the fault's start when known (a replayed
        scenario), else the first signal (finding or alert condition) Voxwatch saw."""
        if self.fault and self.fault.get("start_ms"):
            return int(self.fault["start_ms"])
        return self.first_signal_ms or self.opened_ms

    def timings(self) -> dict[str, float | None]:
        """Seconds from `start_ms` to detection (first alert fired), first page delivered, acknowledgement,
        mitigation (an action applied and its effect measured) and resolution; None until reached."""
        start = self.start_ms()

        def since(ms: int) -> float | None:
            return round((ms - start) / 1000.0, 3) if ms else None

        return {"detect": since(self.opened_ms), "page": since(self.first_page_ms),
                "acknowledge": since(self.acknowledged_ms), "mitigate": since(self.mitigated_ms),
                "resolve": since(self.resolved_ms)}

    def ordered_timeline(self) -> list[TimelineEvent]:
        return sorted(self.timeline, key=lambda e: (e.ts_ms, e.seq))

    def to_json(self, timeline: bool = True) -> dict:
        d = {k: v for k, v in asdict(self).items() if k != "timeline"}
        d["rules"] = self.rules
        d["timings"] = self.timings()
        d["start_ms"] = self.start_ms()
        if timeline:
            d["timeline"] = [e.to_json() for e in self.ordered_timeline()]
        return d

    @classmethod
    def from_json(cls, d: dict) -> Incident:
        names = set(cls.__dataclass_fields__)
        kw = {k: v for k, v in d.items() if k in names and k != "timeline"}
        inc = cls(**kw)
        inc.timeline = [TimelineEvent.from_json(e) for e in d.get("timeline", [])]
        return inc
