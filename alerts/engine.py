"""The alert engine: evaluates the rule set on the injected clock, moves each alert through
inactive -> pending -> firing -> resolved, persists every transition (`alert_events`) and the current
state (`alert_state`), and hands firing and resolved alerts to the notification dispatcher.

Feed it metrics (`ingest`, `scrape`) and findings (`on_finding`), then call `tick()` once per
(simulated) second. After a restart, `AlertEngine(..., store=store)` takes back the alerts and the
notification log, so nothing already paged is paged again and nothing firing is forgotten.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Iterable
from pathlib import Path

from alerts import tables
from alerts.actions import ActionController, ActionSink
from alerts.evaluate import FindingLog, evaluate, metrics_of
from alerts.incidents import GroupingPolicy, IncidentTracker
from alerts.model import FIRING, INACTIVE, PENDING, RESOLVED, Alert, alert_fingerprint
from alerts.notify.dispatch import Dispatcher
from alerts.notify.nflog import NFLOG_RULE, NotificationLog
from alerts.notify.silences import Silences
from alerts.notify.stages import Inhibitor, Parked, receiver_pipeline
from alerts.receivers.alertmanager import AlertmanagerPusher
from alerts.receivers.pagerduty import PagerDutyReceiver
from alerts.receivers.webhook import WebhookReceiver
from alerts.ruleset import RuleFileError, RuleSet, load_rules
from alerts.series import MetricView, sample_names_for
from alerts.templates import render

log = logging.getLogger(__name__)

# receivers that get notifications (grouped, deduplicated); alertmanager receivers are pushers instead
RECEIVER_TYPES = {"webhook": WebhookReceiver, "pagerduty": PagerDutyReceiver}


class AlertEngine:
    def __init__(
        self,
        ruleset: RuleSet,
        clock,
        *,
        writer=None,
        store=None,
        view: MetricView | None = None,
        silences: Silences | None = None,
        action_sink: ActionSink | None = None,
        external_url: str = "",
        notify: bool = True,
        deliver: bool = True,
        resolved_retention: float = 900.0,
        on_attempt=None,
        incident_policy: GroupingPolicy | None = None,
    ) -> None:
        self.ruleset = ruleset
        self.clock = clock
        self.writer = writer
        self.store = store
        self.view = view or MetricView()
        self.external_url = external_url
        self.notify = notify
        self.resolved_retention = resolved_retention
        self.on_attempt = on_attempt
        # deliver=False (backtests): receivers record what they would have sent here instead
        self.would_send: list[dict] | None = None if deliver else []
        self.pushers: dict[str, AlertmanagerPusher] = {}
        self._closing: list = []
        self.findings = FindingLog(retention=self._finding_retention())
        self.alerts: dict[str, Alert] = {}
        self._last_eval: dict[str, float] = {}
        self.transitions: list[dict] = []
        self.rule_errors: dict[str, str] = {}
        self._scrape_names: dict[tuple, list[str]] = {}
        self._effects_scraped = -1e18
        self._action_task = None
        self.last_reload_error: str | None = None
        # incidents: every notification attempt also lands on the timeline of the incident it pages for
        self.incidents = IncidentTracker(clock, writer, store, policy=incident_policy)
        self.on_attempt = self._attempted if on_attempt is None else self._chained(on_attempt)
        self.nflog = NotificationLog(clock, writer, store)
        self.silences = silences if silences is not None else Silences(clock, writer, store)
        self.actions = ActionController(action_sink, clock, writer, self.view) if action_sink is not None else None
        self._build_notifier()
        if store is not None:
            self.restore()

    # -- wiring
    def _finding_retention(self) -> float:
        windows = [r.window for r in self.ruleset.rules() if r.type in ("anomaly", "predictive")]
        return max(windows, default=600.0) + 60.0

    def _build_notifier(self) -> None:
        self.receivers: dict = {}
        self.parked = Parked()
        old_pushers, self.pushers = self.pushers, {}
        eval_interval = max((g.interval for g in self.ruleset.groups), default=0.0)
        for rc in self.ruleset.receivers:
            if rc.type == "action":
                if self.actions is not None:
                    self.actions.name = rc.name
                    self.receivers[rc.name] = (self.actions, rc)
                continue
            if rc.type in ("webhook", "alertmanager") and not rc.all_urls():
                continue  # no URL configured: the receiver is off (its routes deliver nowhere)
            if rc.type == "pagerduty" and not rc.routing_key:
                continue  # no routing key (in the file or $PAGERDUTY_ROUTING_KEY): off
            if rc.type == "alertmanager":
                pusher = AlertmanagerPusher(rc, self.clock, writer=self.writer, on_attempt=self.on_attempt,
                                            eval_interval=eval_interval, dry_run=self.would_send)
                if rc.name in old_pushers:
                    pusher.adopt(old_pushers.pop(rc.name))
                self.pushers[rc.name] = pusher
                continue
            self.receivers[rc.name] = (RECEIVER_TYPES[rc.type](rc, dry_run=self.would_send), rc)
        for gone in old_pushers.values():  # a removed Alertmanager receiver: close its client later
            self._closing.append(gone)
        inhibitor = Inhibitor(self.ruleset.inhibit_rules, lambda: list(self.alerts.values()))
        pipelines = {
            name: receiver_pipeline(
                recv, rc, inhibitor=inhibitor, silences=self.silences, nflog=self.nflog, writer=self.writer,
                dedup=rc.type != "action", on_attempt=self.on_attempt, parked=self.parked,
            )
            for name, (recv, rc) in self.receivers.items()
        }
        self.inhibitor = inhibitor
        self.dispatcher = Dispatcher(self.ruleset.route, pipelines, self.clock, self.external_url, pushers=self.pushers)

    def _attempted(self, row: dict) -> None:
        self.incidents.on_notification(row)

    def _chained(self, on_attempt):
        def both(row: dict) -> None:
            self.incidents.on_notification(row)
            on_attempt(row)

        return both

    def wanted_sample_names(self, groups=None) -> list[str]:
        """Sample names the rules of `groups` (default: all) read, for a restricted registry scrape."""
        names: set[str] = set()
        for g in self.ruleset.groups if groups is None else groups:
            for r in g.rules:
                for m in metrics_of(r):
                    names.update(sample_names_for(m))
        if groups is None:
            names.update(self._effect_names())
        return sorted(names)

    def _effect_names(self) -> set[str]:
        names: set[str] = set()
        for r in self.ruleset.rules():
            if r.action is not None and r.action.effect_metric:
                names.update(sample_names_for(r.action.effect_metric))
            if r.action is not None and r.action.release is not None:
                names.update(sample_names_for(r.action.release.metric))
        return names

    def _due_groups(self, now: float) -> list:
        return [g for g in self.ruleset.groups
                if self._last_eval.get(g.name) is None or now - self._last_eval[g.name] + 1e-9 >= g.interval]

    # -- inputs
    def ingest(self, samples: Iterable[tuple], ts: float | None = None) -> int:
        return self.view.ingest(self.clock.now() if ts is None else ts, samples)

    def scrape(self, registry) -> int:
        """Read the metrics of the rule groups due now from a prometheus-client registry (like a
        Prometheus scrape per group interval); action effect metrics are read every 5 s."""
        now = self.clock.now()
        due = self._due_groups(now)
        key = tuple(g.name for g in due)
        names = self._scrape_names.get(key)
        if names is None:
            names = self._scrape_names[key] = self.wanted_sample_names(due)
        names = list(names)
        if now - self._effects_scraped >= 5.0:
            self._effects_scraped = now
            names = sorted(set(names) | self._effect_names())
        if not names:
            return 0
        return self.view.scrape_registry(registry, now, names)

    def on_finding(self, finding) -> None:
        self.incidents.on_finding(self.findings.add(finding))  # the record: findings come as objects, dicts or rows

    # -- evaluation
    def evaluate(self, now: float | None = None) -> list[dict]:
        """Evaluate the rule groups that are due; returns this round's transitions."""
        now = self.clock.now() if now is None else now
        out: list[dict] = []
        for group in self.ruleset.groups:
            last = self._last_eval.get(group.name)
            if last is not None and now - last + 1e-9 < group.interval:
                continue
            self._last_eval[group.name] = now
            for rule in group.rules:
                try:
                    holding = evaluate(rule, self.view, self.findings, now)
                    self.rule_errors.pop(rule.name, None)
                except Exception as exc:  # one broken rule must not stop the others
                    if rule.name not in self.rule_errors:
                        log.exception("rule %s failed", rule.name)
                    self.rule_errors[rule.name] = f"{type(exc).__name__}: {exc}"
                    continue
                out.extend(self._advance(rule, holding, now))
        self._persist(out, now)
        self.incidents.on_transitions(out)
        self.transitions.extend(out)
        if len(self.transitions) > 100_000:
            del self.transitions[:50_000]
        return out

    def _advance(self, rule, holding: dict, now: float) -> list[dict]:
        out = []
        seen = set()
        for ls, value in holding.items():
            labels = {"alertname": rule.name, "severity": rule.severity, **rule.labels, **dict(ls)}
            fp = alert_fingerprint(labels)
            seen.add(fp)
            a = self.alerts.get(fp)
            if a is None or a.state == RESOLVED:
                prev = a.state if a is not None else INACTIVE
                a = Alert(rule.name, fp, labels, {}, PENDING, float(value), now, now, action=rule.action,
                          generator_url=f"{self.external_url}/alerts/{rule.name}" if self.external_url else "")
                self.alerts[fp] = a
                out.append(self._transition(a, prev))
            a.value = float(value)
            a.last_held = now
            a.annotations = {k: render(v, labels, a.value, self.external_url) for k, v in rule.annotations.items()}
            if a.state == PENDING and now - a.active_since + 1e-9 >= rule.for_:
                a.state, a.fired_at = FIRING, now
                out.append(self._transition(a, PENDING))
        for fp, a in list(self.alerts.items()):
            if a.rule != rule.name or fp in seen:
                continue
            if a.state == PENDING:
                a.state = INACTIVE
                del self.alerts[fp]
                out.append(self._transition(a, PENDING))
            elif a.state == FIRING and now - a.last_held + 1e-9 >= rule.keep_firing_for:
                a.state, a.resolved_at = RESOLVED, now
                out.append(self._transition(a, FIRING))
            elif a.state == RESOLVED and now - (a.resolved_at or now) > self.resolved_retention:
                a.state = INACTIVE
                del self.alerts[fp]
                out.append(self._transition(a, RESOLVED, event=False))
        return out

    def _transition(self, a: Alert, previous: str, event: bool = True) -> dict:
        return {"ts": self.clock.now(), "rule": a.rule, "fingerprint": a.fingerprint, "state": a.state,
                "previous_state": previous, "labels": dict(a.labels), "value": a.value, "alert": a, "event": event}

    def _persist(self, transitions: list[dict], now: float) -> None:
        if self.writer is None or not transitions:
            return
        ms = int(round(now * 1000))
        events, states = [], {}
        for t in transitions:
            a: Alert = t["alert"]
            if t["event"]:
                events.append({
                    "ts_ms": ms, "rule": a.rule, "alert_fingerprint": a.fingerprint, "state": t["state"],
                    "previous_state": t["previous_state"], "severity": a.severity,
                    "label_keys": list(a.labels), "label_values": list(a.labels.values()),
                    "annotation_keys": list(a.annotations), "annotation_values": list(a.annotations.values()),
                    "value": a.value if math.isfinite(a.value) else 0.0,
                    "active_since_ms": int(round(a.active_since * 1000)),
                })
            states[a.fingerprint] = {
                "rule": a.rule, "alert_fingerprint": a.fingerprint, "updated_ms": ms, "state": t["state"],
                "active_since_ms": int(round(a.active_since * 1000)),
                "fired_ms": int(round(a.fired_at * 1000)) if a.fired_at is not None else 0,
                "resolved_ms": int(round(a.resolved_at * 1000)) if a.resolved_at is not None else 0,
                "last_notified_ms": 0, "payload_json": json.dumps({**a.to_json(), "state": t["state"]}),
            }
        try:
            if events:
                self.writer.write("alert_events", events)
            self.writer.write("alert_state", list(states.values()))
        except Exception:
            log.exception("could not persist alert transitions")

    def restore(self) -> int:
        """Take back pending, firing and recently resolved alerts from the store."""
        df = tables.alert_states(self.store, except_rule=NFLOG_RULE)
        n = 0
        now = self.clock.now()
        for state, payload in zip(df["s_state"], df["s_payload"]):
            if state not in (PENDING, FIRING, RESOLVED):
                continue
            d = json.loads(payload)
            try:
                rule = self.ruleset.rule(d["rule"])
            except KeyError:
                continue
            a = Alert.from_json(d, action=rule.action)
            if a.state == RESOLVED and now - (a.resolved_at or now) > self.resolved_retention:
                continue
            self.alerts[a.fingerprint] = a
            n += 1
        if self.actions is not None:
            self.actions.restore(self.store, self.ruleset)
        self.incidents.restore()
        return n

    # -- the loop
    def step(self) -> list[dict]:
        """Evaluate, hand alerts to the dispatcher and start due flushes (needs a running loop to notify)."""
        out = self.evaluate()
        if self.actions is not None:
            self.incidents.on_actions(self.actions.history)
        if self.silences.list():  # a silence over an incident's alerts acknowledges it
            self.incidents.on_silences(self.silences)
        self.incidents.tick()
        if self.notify:
            current = [a for a in self.alerts.values() if a.state in (FIRING, RESOLVED)]
            self.dispatcher.update(current)
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return out
            self.dispatcher.tick()
            if self.actions is not None and self.actions.active and (self._action_task is None or self._action_task.done()):
                # one revert check at a time, and a reference kept so the task is not collected
                self._action_task = asyncio.get_running_loop().create_task(self.actions.tick())
        return out

    async def run(self, registry=None, stop: asyncio.Event | None = None, interval: float = 1.0) -> None:
        """Live mode: scrape `registry` (a prometheus-client registry) and tick every `interval`
        seconds on the engine's clock until `stop` is set."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            if registry is not None:
                self.scrape(registry)
            await self.tick()
            await self.clock.sleep(interval)

    async def tick(self) -> list[dict]:
        out = self.step()
        # let flushes that need no I/O (in-process actions) finish within this tick
        for _ in range(3):
            await asyncio.sleep(0)
        return out

    async def settle(self, timeout: float = 5.0) -> bool:
        """Wait (real time, at most `timeout`) until every delivery in flight has finished or is
        parked on the clock waiting for a retry. On a virtual clock this keeps real network time
        out of simulated time: a replay can call it after each tick."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            busy = sum(1 for g in self.dispatcher.groups.values() if g.task is not None and not g.task.done())
            busy += sum(p.busy() for p in self.pushers.values())
            if busy <= self.parked.n:
                return True
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.001)

    async def drain(self, timeout: float = 10.0) -> None:
        await self.dispatcher.drain(timeout)
        for p in self.pushers.values():
            await p.drain(timeout)

    async def aclose(self) -> None:
        await self.drain(2.0)
        for recv in [r for r, _ in self.receivers.values()] + list(self.pushers.values()) + self._closing:
            close = getattr(recv, "aclose", None)
            if close is not None:
                await close()
        self._closing.clear()

    # -- rule changes
    def reload(self, paths: Iterable[str | Path]) -> RuleSet:
        """Load new rule files; an invalid set is refused (RuleFileError) and the current one keeps running."""
        try:
            new = load_rules(paths)
        except RuleFileError as exc:
            self.last_reload_error = str(exc)
            raise
        self.last_reload_error = None
        self.apply_ruleset(new)
        return new

    def apply_ruleset(self, new: RuleSet) -> None:
        now = self.clock.now()
        names = {r.name: r for r in new.rules()}
        gone = []
        for fp, a in list(self.alerts.items()):
            rule = names.get(a.rule)
            if rule is None:
                if a.state == FIRING:
                    a.state, a.resolved_at = RESOLVED, now
                    gone.append(self._transition(a, FIRING))
                elif a.state == PENDING:
                    del self.alerts[fp]
            else:
                a.action = rule.action
        self._persist(gone, now)
        self.ruleset = new
        self.findings.retention = self._finding_retention()
        self._scrape_names.clear()
        self._build_notifier()

    # -- reading
    def firing(self) -> list[Alert]:
        return [a for a in self.alerts.values() if a.state == FIRING]

    def state(self) -> list[dict]:
        return [a.to_json() for a in sorted(self.alerts.values(), key=lambda a: (a.rule, a.fingerprint))]


def build_engine(paths=None, clock=None, **kw) -> AlertEngine:
    from telemetry.clock import WallClock

    return AlertEngine(load_rules(paths), clock or WallClock(), **kw)
