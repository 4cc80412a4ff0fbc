"""The notification log: the single source of truth for "was this already sent" (Alertmanager's
nflog). One entry per (receiver, group): the firing and resolved alerts last delivered and when.

Entries are persisted in `alert_state` under the rule name `__nflog__` (ReplacingMergeTree, newest
row wins), so a restarted engine does not page again for what it already sent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from alerts import tables
from alerts.tables import NFLOG_RULE


@dataclass
class NflogEntry:
    firing: frozenset[str]
    resolved: frozenset[str]
    ts: float

    def is_firing_subset(self, firing: set[str]) -> bool:
        return firing <= self.firing

    def is_resolved_subset(self, resolved: set[str]) -> bool:
        return resolved <= self.resolved


class NotificationLog:
    def __init__(self, clock, writer=None, store=None) -> None:
        self.clock = clock
        self.writer = writer
        self._entries: dict[tuple[str, str], NflogEntry] = {}
        self._last_ms = 0
        if store is not None:
            self._load(store)

    def _load(self, store) -> None:
        for payload in tables.alert_payloads(store, rule=NFLOG_RULE):
            d = json.loads(payload)
            self._entries[(d["receiver"], d["group_key"])] = NflogEntry(
                frozenset(d["firing"]), frozenset(d["resolved"]), float(d["ts"])
            )

    def query(self, receiver: str, group_key: str) -> NflogEntry | None:
        return self._entries.get((receiver, group_key))

    def log(self, receiver: str, group_key: str, firing: set[str], resolved: set[str]) -> None:
        now = self.clock.now()
        self._entries[(receiver, group_key)] = NflogEntry(frozenset(firing), frozenset(resolved), now)
        if self.writer is None:
            return
        ms = max(int(round(now * 1000)), self._last_ms + 1)
        self._last_ms = ms
        payload = {"receiver": receiver, "group_key": group_key, "firing": sorted(firing), "resolved": sorted(resolved), "ts": now}
        self.writer.write(
            "alert_state",
            [
                {
                    "rule": NFLOG_RULE,
                    "alert_fingerprint": f"{receiver}|{group_key}",
                    "updated_ms": ms,
                    "state": "notified",
                    "active_since_ms": 0,
                    "fired_ms": 0,
                    "resolved_ms": 0,
                    "last_notified_ms": int(now * 1000),
                    "payload_json": json.dumps(payload),
                }
            ],
        )
