"""The alert itself: one instance of a rule for one label set, and its life (inactive, pending,
firing, resolved). Shared by the engine, the notification stages and the receivers."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from telemetry.catalog import default_catalog

INACTIVE, PENDING, FIRING, RESOLVED = "inactive", "pending", "firing", "resolved"

# The pipeline's degradation ladder, lowest first, as alerts may ask for it. It is written once, in the
# catalog (the states of voxwatch_degradation_level); the pipeline builds DegradationLevel from it too
# (alerts never import the pipeline, both may import telemetry).
DEFAULT_LADDER = default_catalog().states("voxwatch_degradation_level")


def alert_fingerprint(labels: dict[str, str]) -> str:
    """Stable id of an alert: a hash of its sorted labels (alertname included), 16 hex digits."""
    text = "\x1f".join(f"{k}\x1e{v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def iso(ts: float | None) -> str:
    """RFC 3339 in UTC, as Alertmanager writes times; the zero time for 'not set'."""
    if ts is None:
        return "0001-01-01T00:00:00Z"
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Alert:
    rule: str
    fingerprint: str
    labels: dict[str, str]
    annotations: dict[str, str]
    state: str
    value: float
    active_since: float  # when the condition started holding (pending from)
    last_held: float  # the last evaluation at which the condition held
    fired_at: float | None = None
    resolved_at: float | None = None
    last_notified: float | None = None
    generator_url: str = ""
    action: Any = None  # alerts.ruleset.ActionSpec, when the rule asks for one
    extra: dict = field(default_factory=dict)

    @property
    def status(self) -> str:
        """Alertmanager's status: firing while firing, resolved otherwise."""
        return "firing" if self.state == FIRING else "resolved"

    @property
    def severity(self) -> str:
        return self.labels.get("severity", "")

    @property
    def starts_at(self) -> float:
        return self.fired_at if self.fired_at is not None else self.active_since

    @property
    def ends_at(self) -> float | None:
        return self.resolved_at if self.state == RESOLVED else None

    def to_json(self) -> dict:
        return {
            "rule": self.rule,
            "fingerprint": self.fingerprint,
            "labels": self.labels,
            "annotations": self.annotations,
            "state": self.state,
            "value": self.value if self.value == self.value else None,
            "active_since": self.active_since,
            "last_held": self.last_held,
            "fired_at": self.fired_at,
            "resolved_at": self.resolved_at,
            "last_notified": self.last_notified,
            "generator_url": self.generator_url,
        }

    @classmethod
    def from_json(cls, d: dict, action: Any = None) -> Alert:
        v = d.get("value")
        return cls(
            rule=d["rule"],
            fingerprint=d["fingerprint"],
            labels=dict(d["labels"]),
            annotations=dict(d.get("annotations") or {}),
            state=d["state"],
            value=float("nan") if v is None else float(v),
            active_since=float(d["active_since"]),
            last_held=float(d.get("last_held") or d["active_since"]),
            fired_at=d.get("fired_at"),
            resolved_at=d.get("resolved_at"),
            last_notified=d.get("last_notified"),
            generator_url=d.get("generator_url", ""),
            action=action,
        )

    def dumps(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True)


class RowWriter(Protocol):
    """Where rows go: telemetry.sink.Sink in a running service, `StoreWriter` for direct inserts."""

    def write(self, table: str, rows: list[dict]) -> None: ...


class StoreWriter:
    """Writes rows straight into the store (synchronous): for tools and tests without a sink."""

    def __init__(self, store) -> None:
        self.store = store

    def write(self, table: str, rows: list[dict]) -> None:
        if not rows:
            return
        cols: dict[str, list] = {}
        for k in rows[0]:
            cols[k] = [r.get(k) for r in rows]
        self.store.insert(table, cols)

    def flush(self) -> None:
        pass


class NullWriter:
    """Keeps nothing (backtests that only want the timeline)."""

    def write(self, table: str, rows: list[dict]) -> None:
        pass

    def flush(self) -> None:
        pass
