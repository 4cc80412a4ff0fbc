"""The incident tracker: fed by the alert engine (findings, alert transitions, notification attempts,
degradation actions), it groups them into incidents by `GroupingPolicy`, keeps each incident's state
and timeline, writes both to the store (`incidents`, `incident_events`), and takes acknowledgements,
resolutions and notes from people (through the API).

Everything runs on the injected clock; a restarted tracker takes back the open incidents from the store.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import threading
import time
from collections import deque
from datetime import UTC, datetime

from alerts import tables as incident_store
from alerts.incidents.model import ACKNOWLEDGED, OPEN, RESOLVED, Incident, TimelineEvent, severity_rank
from alerts.incidents.policy import GroupingPolicy

log = logging.getLogger(__name__)

TIMING_METRICS = {k: f"voxwatch_incident_time_to_{k}_seconds" for k in ("detect", "page", "acknowledge", "mitigate", "resolve")}
SYSTEM_ACTOR = "voxwatch"


class IncidentError(ValueError):
    """A request about an incident that cannot be done (unknown id, already resolved)."""

    def __init__(self, message: str, not_found: bool = False) -> None:
        super().__init__(message)
        self.not_found = not_found


def _scope_text(labels: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in labels.items() if k not in ("alertname", "severity"))


def _num(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _locked(method):
    """One change at a time: the engine's loop and the API's threads (acknowledge, notes) share a tracker."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)

    return wrapper


class IncidentTracker:
    def __init__(self, clock, writer=None, store=None, policy: GroupingPolicy | None = None, telemetry=None) -> None:
        self.clock = clock
        self.writer = writer
        self.store = store
        self.policy = policy or GroupingPolicy()
        self.telemetry = telemetry  # telemetry.Telemetry: incident timings go to the catalog's histograms
        self.incidents: dict[str, Incident] = {}  # open and acknowledged ones, plus those resolved in this process
        self.by_alert: dict[str, str] = {}  # alert fingerprint -> its open incident
        self.known_faults: list[dict] = []  # a replayed scenario's ground truth (start_ms, end_ms, kind, target)
        self._findings: deque = deque()  # recent findings: (ts_ms, key, scope, title, detail)
        self._actions_seen = 0
        self._lock = threading.RLock()

    # -- helpers
    def now_ms(self) -> int:
        return int(round(self.clock.now() * 1000))

    def _open(self) -> list[Incident]:
        return [i for i in self.incidents.values() if i.state != RESOLVED]

    def _write(self, table: str, rows: list[dict]) -> None:
        if self.writer is None or not rows:
            return
        try:
            self.writer.write(table, rows)
        except Exception:  # recording must never stop alerting
            log.exception("could not record incident rows in %s", table)

    def _save(self, inc: Incident) -> None:
        self._write("incidents", [incident_store.incident_row(inc, max(self.now_ms(), inc.last_change_ms))])

    def _event(self, inc: Incident, ts_ms: int, kind: str, title: str, actor: str = "", **detail) -> TimelineEvent:
        e = TimelineEvent(int(ts_ms), kind, title, actor, {k: v for k, v in detail.items() if v is not None},
                          seq=len(inc.timeline))
        inc.timeline.append(e)
        self._write("incident_events", [incident_store.event_row(inc.incident_id, e)])
        return e

    def _observe(self, inc: Incident, which: str) -> None:
        if self.telemetry is None:
            return
        v = inc.timings().get(which)
        if v is None:
            return
        try:
            self.telemetry[TIMING_METRICS[which]].labels(severity=inc.severity or "none").observe(max(0.0, v))
        except Exception:  # a catalog without these metrics must not stop incidents
            log.debug("incident metric %s not recorded", which, exc_info=True)

    def _count_open(self) -> None:
        if self.telemetry is None:
            return
        try:
            self.telemetry["voxwatch_incidents_open"].set(len(self._open()))
        except Exception:
            log.debug("voxwatch_incidents_open not recorded", exc_info=True)

    # -- grouping
    def _takes(self, inc: Incident, scope: set[str], now_ms: int) -> int:
        """0 when `inc` does not take an alert of `scope`; otherwise a preference (higher is better)."""
        if scope & set(inc.scope):
            return 3
        if not scope or not inc.scope:
            return 2
        if now_ms - inc.last_change_ms <= self.policy.cascade_s * 1000:
            return 1
        return 0

    def _pick(self, scope: set[str], now_ms: int) -> Incident | None:
        best, key = None, (0, 0)
        for inc in self._open():
            k = (self._takes(inc, scope, now_ms), inc.last_change_ms)
            if k[0] and k > key:
                best, key = inc, k
        return best

    def _new_incident(self, fp: str, ts_ms: int) -> Incident:
        stamp = datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%Y%m%d-%H%M%S")
        iid = f"INC-{stamp}-{hashlib.sha256(f'{fp}{ts_ms}'.encode()).hexdigest()[:4]}"
        inc = Incident(iid, ts_ms, last_change_ms=ts_ms)
        self.incidents[iid] = inc
        if self.telemetry is not None:
            try:
                self.telemetry["voxwatch_incidents_total"].inc()
            except Exception:
                log.debug("voxwatch_incidents_total not recorded", exc_info=True)
        return inc

    def _widen(self, inc: Incident, scope: set[str]) -> None:
        """Add resources to the incident; take the recent findings that name them, and the known fault."""
        new = scope - set(inc.scope)
        if new:
            inc.scope = sorted(set(inc.scope) | new)
            since = inc.opened_ms - self.policy.finding_lookback_s * 1000
            for ts_ms, key, fscope, title, detail in list(self._findings):
                if ts_ms >= since and fscope & new:
                    self._attach_finding(inc, ts_ms, key, title, detail)
        self._match_fault(inc)

    def _match_fault(self, inc: Incident) -> None:
        if not self.known_faults or (inc.fault and inc.fault.get("target") in inc.scope):
            return
        margin = self.policy.cascade_s * 1000
        near = [f for f in self.known_faults if f["start_ms"] - margin <= inc.opened_ms <= f["end_ms"] + margin]
        if not near:
            return
        near.sort(key=lambda f: (not (f.get("target") and f["target"] in inc.scope), f["start_ms"]))
        inc.fault = {k: near[0].get(k) for k in ("kind", "target", "start_ms", "end_ms", "description")}

    def _attach_finding(self, inc: Incident, ts_ms: int, key: str, title: str, detail: dict) -> None:
        inc.findings += 1
        if key in inc.finding_keys:
            return
        inc.finding_keys.append(key)
        self._event(inc, ts_ms, "finding", title, detail.get("detector", "anomaly"), **detail)
        if not inc.first_finding_ms or ts_ms < inc.first_finding_ms:
            inc.first_finding_ms = ts_ms
        if not inc.first_signal_ms or ts_ms < inc.first_signal_ms:
            inc.first_signal_ms = ts_ms

    # -- inputs (the engine calls these)
    @_locked
    def on_finding(self, f) -> None:
        ts_ms = int(round(float(f.ts) * 1000))
        labels = {str(k): str(v) for k, v in dict(f.labels).items()}
        scope = self.policy.scope_of(labels)
        key = f"{f.kind}|{f.metric}|{sorted(labels.items())}"
        tte = _num(getattr(f, "time_to_exhaustion_s", None))
        what = f"{f.kind} on {f.metric}" + (f" ({_scope_text(labels)})" if labels else "")
        title = what + (f": runs out in {tte / 60:.1f} min" if tte and tte > 0 else "") + f", score {float(f.score):.2f}"
        detail = {"detector": f.detector, "finding_kind": f.kind, "metric": f.metric, "labels": labels,
                  "score": _num(f.score), "value": _num(f.value), "time_to_exhaustion_s": tte if tte and tte > 0 else None}
        self._findings.append((ts_ms, key, scope, title, detail))
        horizon = ts_ms - self.policy.finding_lookback_s * 1000
        while self._findings and self._findings[0][0] < horizon:
            self._findings.popleft()
        if not scope:
            return
        for inc in self._open():
            if scope & set(inc.scope):
                self._attach_finding(inc, ts_ms, key, title, detail)
                self._save(inc)

    @_locked
    def on_transitions(self, transitions: list[dict]) -> None:
        for t in transitions:
            if not t.get("event", True) or t["state"] not in ("firing", "resolved"):
                continue
            a = t["alert"]
            ts_ms = int(round(float(t["ts"]) * 1000))
            if t["state"] == "firing":
                self._fired(a, ts_ms)
            elif t["previous_state"] == "firing":
                self._resolved(a, ts_ms)
        self._count_open()

    def _fired(self, a, ts_ms: int) -> None:
        scope = self.policy.scope_of(a.labels)
        iid = self.by_alert.get(a.fingerprint)
        inc = self.incidents.get(iid) if iid else None
        if inc is None or inc.state == RESOLVED:
            inc = self._pick(scope, ts_ms)
        opened = inc is None
        if opened:
            inc = self._new_incident(a.fingerprint, ts_ms)
        self.by_alert[a.fingerprint] = inc.incident_id
        again = a.fingerprint in inc.alerts
        inc.alerts[a.fingerprint] = {"rule": a.rule, "labels": dict(a.labels), "severity": a.severity, "state": "firing",
                                     "active_since_ms": int(round(a.active_since * 1000)), "fired_ms": ts_ms, "resolved_ms": 0,
                                     "summary": a.annotations.get("summary", "")}
        signal = int(round(a.active_since * 1000))
        if not inc.first_signal_ms or signal < inc.first_signal_ms:
            inc.first_signal_ms = signal
        # the title names the most urgent alert, and among equals the first one that names a resource
        named = bool(self.policy.scope_of(a.labels))
        if not inc.title or (severity_rank(a.severity), named) > (severity_rank(inc.severity), inc.title_names_resource):
            inc.severity = a.severity if severity_rank(a.severity) >= severity_rank(inc.severity) else inc.severity
            where = ", ".join(f"{k}={a.labels[k]}" for k in self.policy.scope_labels if a.labels.get(k))
            inc.title = a.rule + (f" ({where})" if where else "")
            inc.title_names_resource = named
        inc.last_change_ms = max(inc.last_change_ms, ts_ms)
        inc.cleared_ms = 0
        if opened:
            self._event(inc, ts_ms, "opened", f"incident opened by {a.rule}", SYSTEM_ACTOR,
                        rules=self.policy.describe()[0])
        summary = a.annotations.get("summary", "")
        self._event(inc, ts_ms, "alert", f"{a.rule} {'fired again' if again else 'firing'} [{a.severity}]"
                    + (f" ({_scope_text(a.labels)})" if _scope_text(a.labels) else "") + (f": {summary}" if summary else ""),
                    a.rule, fingerprint=a.fingerprint, state="firing", severity=a.severity, labels=dict(a.labels),
                    value=_num(a.value), pending_since_ms=signal)
        self._widen(inc, scope)
        if opened:
            self._observe(inc, "detect")
        self._save(inc)

    def _resolved(self, a, ts_ms: int) -> None:
        iid = self.by_alert.get(a.fingerprint)
        inc = self.incidents.get(iid) if iid else None
        if inc is None or a.fingerprint not in inc.alerts:
            return
        inc.alerts[a.fingerprint].update(state="resolved", resolved_ms=ts_ms)
        inc.last_change_ms = max(inc.last_change_ms, ts_ms)
        self._event(inc, ts_ms, "alert", f"{a.rule} resolved" + (f" ({_scope_text(a.labels)})" if _scope_text(a.labels) else ""),
                    a.rule, fingerprint=a.fingerprint, state="resolved", severity=a.severity, value=_num(a.value))
        self._check_clear(inc, ts_ms)
        self._save(inc)

    def _check_clear(self, inc: Incident, ts_ms: int) -> None:
        inc.cleared_ms = ts_ms if not inc.firing() and not inc.active_actions() else 0

    @_locked
    def on_notification(self, row: dict) -> None:
        """A notification attempt (the `notifications` row the retry stage records)."""
        if row.get("integration") == "action" or row.get("result") == "deduplicated":
            return
        ids = {self.by_alert.get(fp) for fp in row.get("alert_fingerprints", [])} - {None}
        for iid in sorted(ids):
            inc = self.incidents.get(iid)
            if inc is None:
                continue
            ts_ms, receiver, result = int(row["ts_ms"]), str(row["receiver"]), str(row["result"])
            http = int(row.get("http_status") or 0)
            title = (f"page {row.get('status', '')} to {receiver}: {result}" + (f" (HTTP {http})" if http else "")
                     + (f", attempt {row['attempt']}" if int(row.get("attempt") or 1) > 1 else "")
                     + (f": {row['error']}" if row.get("error") and result != "delivered" else ""))
            self._event(inc, ts_ms, "page", title, receiver, receiver=receiver, integration=row.get("integration"),
                        status=row.get("status"), result=result, http_status=http, attempt=row.get("attempt"),
                        notification_id=row.get("notification_id"))
            if result == "delivered" and row.get("status") == "firing":
                if receiver not in inc.paged:
                    inc.paged.append(receiver)
                if not inc.first_page_ms:
                    inc.first_page_ms = ts_ms
                    self._observe(inc, "page")
            self._save(inc)

    @_locked
    def on_actions(self, history: list[dict]) -> None:
        """New rows of the action controller's history (requested, applied, observed, reverted, refused)."""
        for row in history[self._actions_seen:]:
            self.on_action(row)
        self._actions_seen = len(history)

    def _incident_of_rule(self, rule: str, region: str) -> Incident | None:
        best = None
        for inc in self.incidents.values():
            for a in inc.alerts.values():
                if a["rule"] == rule and (not region or a["labels"].get("region", region) == region):
                    if best is None or (best.state == RESOLVED and inc.state != RESOLVED) or inc.last_change_ms > best.last_change_ms:
                        best = inc
        return best

    @_locked
    def on_action(self, row: dict) -> None:
        phase = row["phase"]
        if phase == "requested":
            return  # 'applied' or 'refused' follows at the same instant
        inc = self._incident_of_rule(str(row.get("rule", "")), str(row.get("region", "") or ""))
        if inc is None:
            return
        ts_ms, aid = int(row["ts_ms"]), str(row["action_id"])
        metric = str(row.get("effect_metric") or "")
        value = _num(row.get("effect_value"))
        act = inc.actions.setdefault(aid, {"level": row["level"], "region": row.get("region", ""), "rule": row.get("rule", ""),
                                           "effect_metric": metric, "before": None, "after": None,
                                           "applied_ms": 0, "observed_ms": 0, "reverted_ms": 0, "refused_ms": 0})
        where = f" in {row['region']}" if row.get("region") else ""
        if phase == "applied":
            act.update(applied_ms=ts_ms, before=value)
            title = f"action applied: {row['level']}{where} (rule {row.get('rule')})" + (
                f"; {metric} was {value:.3g}" if metric and value is not None else "")
        elif phase == "observed":
            act.update(observed_ms=ts_ms, after=value)
            before = act.get("before")
            change = (f" ({(value - before) / abs(before):+.0%})" if before and value is not None else "")
            title = (f"effect of {act['level']}{where}: {metric} {before:.3g} -> {value:.3g}{change}"
                     if metric and value is not None and before is not None else f"effect of {act['level']}{where} measured")
            if not inc.mitigated_ms:
                inc.mitigated_ms = ts_ms
                self._observe(inc, "mitigate")
        elif phase == "reverted":
            act.update(reverted_ms=ts_ms)
            title = f"action reverted: back to {row['level']}{where} ({row.get('reason', '')})"
        elif phase == "refused":
            act.update(refused_ms=ts_ms)
            title = f"action refused: {row['level']}{where}: {row.get('reason', '')}"
        else:
            title = f"action {phase}: {row['level']}{where}"
        self._event(inc, ts_ms, "action", title, str(row.get("rule", "")), action_id=aid, phase=phase, level=row["level"],
                    region=row.get("region") or None, effect_metric=metric or None, effect_value=value,
                    before=act.get("before"), after=act.get("after"))
        inc.last_change_ms = max(inc.last_change_ms, ts_ms)
        if phase in ("reverted", "refused"):
            self._check_clear(inc, ts_ms)
        else:
            inc.cleared_ms = 0
        self._save(inc)

    @_locked
    def on_silences(self, silences) -> list[str]:
        """Silencing an open incident's firing alerts (every one of them, Alertmanager's way of saying
        'someone is on it') acknowledges it, by whoever created the silence. Returns the ids acknowledged."""
        done = []
        for inc in self._open():
            firing = [inc.alerts[fp] for fp in inc.firing()]
            if inc.state != OPEN or not firing:
                continue
            muted = [silences.mutes({**a["labels"]}) for a in firing]
            if not all(muted):
                continue
            s = silences.get(muted[0][0])
            self.acknowledge(inc.incident_id, f"{s.created_by or 'someone'} (silence {s.silence_id})",
                             f"alerts silenced: {s.comment}" if s.comment else "alerts silenced")
            done.append(inc.incident_id)
        return done

    @_locked
    def tick(self, now: float | None = None) -> list[str]:
        """Resolve incidents that stayed clear for `quiet_s`; returns their ids."""
        now_ms = self.now_ms() if now is None else int(round(now * 1000))
        done = []
        for inc in self._open():
            if inc.cleared_ms and now_ms - max(inc.cleared_ms, inc.last_change_ms) >= self.policy.quiet_s * 1000:
                self._resolve(inc, inc.cleared_ms, SYSTEM_ACTOR,
                              f"every alert resolved and every action reverted; quiet for {self.policy.quiet_s / 60:g} min")
                done.append(inc.incident_id)
        if done:
            self._count_open()
        for iid, inc in list(self.incidents.items()):  # the store keeps resolved incidents; memory keeps a day
            if inc.state == RESOLVED and now_ms - inc.resolved_ms > 86_400_000:
                del self.incidents[iid]
        return done

    # -- people (through the API)
    @_locked
    def get(self, incident_id: str) -> Incident | None:
        inc = self.incidents.get(incident_id)
        if inc is None and self.store is not None:
            inc = incident_store.load_incident(self.store, incident_id)
        return inc

    def _need(self, incident_id: str) -> Incident:
        inc = self.get(incident_id)
        if inc is None:
            raise IncidentError(f"no incident with id {incident_id!r}", not_found=True)
        return inc

    @_locked
    def incident_of_alert(self, fingerprint: str) -> str | None:
        """The incident holding an alert: the open one, else the newest that ever held it."""
        if fingerprint in self.by_alert:
            return self.by_alert[fingerprint]
        held = [i for i in self.incidents.values() if fingerprint in i.alerts]
        if not held and self.store is not None:
            held = [i for i in incident_store.list_incidents(self.store, limit=10_000) if fingerprint in i.alerts]
        return max(held, key=lambda i: i.opened_ms).incident_id if held else None

    @_locked
    def acknowledge(self, incident_id: str, by: str, note: str = "") -> Incident:
        inc = self._need(incident_id)
        if inc.state == RESOLVED:
            raise IncidentError(f"incident {incident_id} is resolved; it cannot be acknowledged")
        if inc.state == ACKNOWLEDGED:
            raise IncidentError(f"incident {incident_id} was already acknowledged by {inc.acknowledged_by}")
        now = max(self.now_ms(), inc.opened_ms)
        inc.state, inc.acknowledged_ms, inc.acknowledged_by = ACKNOWLEDGED, now, by
        self.incidents.setdefault(inc.incident_id, inc)  # loaded from the store: this process holds it now
        self._event(inc, now, "acknowledged", f"acknowledged by {by}" + (f": {note}" if note else ""), by, note=note or None)
        self._observe(inc, "acknowledge")
        self._save(inc)
        return inc

    @_locked
    def resolve(self, incident_id: str, by: str, note: str = "") -> Incident:
        inc = self._need(incident_id)
        if inc.state == RESOLVED:
            raise IncidentError(f"incident {incident_id} is already resolved")
        self._resolve(inc, max(self.now_ms(), inc.opened_ms), by, note)
        self._count_open()
        return inc

    def _resolve(self, inc: Incident, ts_ms: int, by: str, note: str) -> None:
        inc.state, inc.resolved_ms, inc.resolved_by = RESOLVED, ts_ms, by
        self._event(inc, ts_ms, "resolved", f"resolved by {by}" + (f": {note}" if note else ""), by, note=note or None)
        for fp in list(inc.alerts):
            if self.by_alert.get(fp) == inc.incident_id:
                del self.by_alert[fp]
        self._observe(inc, "resolve")
        self._save(inc)
        self.incidents.setdefault(inc.incident_id, inc)

    @_locked
    def add_note(self, incident_id: str, by: str, text: str) -> Incident:
        if not text.strip():
            raise IncidentError("a note needs some text")
        inc = self._need(incident_id)
        now = max(self.now_ms(), inc.opened_ms)
        self._event(inc, now, "note", text.strip()[:2000], by)
        self.incidents.setdefault(inc.incident_id, inc)
        self._save(inc)
        return inc

    @_locked
    def list(self, start_ms: int | None = None, end_ms: int | None = None, state: str | None = None, limit: int = 200) -> list[Incident]:
        """Incidents alive in the range: this process's own (fresh) over the store's."""
        found: dict[str, Incident] = {}
        if self.store is not None:
            for inc in incident_store.list_incidents(self.store, start_ms, end_ms, limit=limit * 2):
                found[inc.incident_id] = inc
        for inc in self.incidents.values():
            if end_ms is not None and inc.opened_ms > end_ms:
                continue
            if start_ms is not None and inc.resolved_ms and inc.resolved_ms < start_ms:
                continue
            found[inc.incident_id] = inc
        out = [i for i in found.values() if not state or i.state == state]
        return sorted(out, key=lambda i: -i.opened_ms)[:limit]

    # -- restart
    @_locked
    def restore(self) -> int:
        if self.store is None:
            return 0
        t0 = time.perf_counter()
        n = 0
        for inc in incident_store.open_incidents(self.store):
            self.incidents[inc.incident_id] = inc
            for fp, a in inc.alerts.items():
                if a.get("state") == "firing" or inc.state != RESOLVED:
                    self.by_alert[fp] = inc.incident_id
            n += 1
        log.debug("took back %d open incidents in %.3f s", n, time.perf_counter() - t0)
        return n


__all__ = ["OPEN", "IncidentError", "IncidentTracker"]
