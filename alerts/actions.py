"""Degradation actions: rules name a level, the action receiver asks the pipeline for it through an
`ActionSink`, records what it asked and what happened, and reverts when the alert has resolved.

The pipeline's levels form a ladder (each includes those below), so with several actions active
the pipeline is asked for the highest one; reverting one action asks for the highest of the rest.
Hysteresis: an action stays at least `min_hold`, its alert must stay resolved `revert_after`, and an
action re-applied soon after a revert doubles its next `revert_after` (up to 8x), so it cannot flap.

alerts/ never imports pipeline/: `CallableActionSink` wraps the in-process controller the
composition root passes in, `HttpActionSink` calls the pipeline's control API (PUT /v1/degradation).
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from alerts import tables
from alerts.evaluate import aggregate
from alerts.model import DEFAULT_LADDER
from alerts.receivers.base import DeliveryResult
from alerts.ruleset import Selector

log = logging.getLogger(__name__)

REGION_LEVELS = {"REGION_FAILOVER"}
FLAP_WINDOW_S = 900.0


class ActionSink(Protocol):
    """How alerts ask the pipeline to change its degradation level. Returns the pipeline's answer
    (a dict with at least `phase`: applied | reverted | refused); may be sync or async."""

    def request(self, level: str, reason: str, region: str | None = None, rule: str = "") -> Any: ...

    def state(self) -> Any: ...


class CallableActionSink:
    """An in-process sink: `request_fn(level, reason, region=..., rule=...) -> dict`."""

    def __init__(self, request_fn, state_fn=None) -> None:
        self.request_fn = request_fn
        self.state_fn = state_fn

    def request(self, level, reason, region=None, rule=""):
        # one call, never retried: a TypeError raised inside the controller is its bug, not a
        # signature mismatch, and a second call could apply the level twice
        return self.request_fn(level, reason, region=region, rule=rule)

    def state(self):
        return self.state_fn() if self.state_fn else {}


class HttpActionSink:
    """The pipeline's control API: PUT {base}/v1/degradation {level, reason, region, rule}.

    Changing the degradation level needs an admin-scoped API token (`token`)."""

    def __init__(self, base_url: str, timeout: float = 2.0, client: httpx.AsyncClient | None = None,
                 token: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._client = client
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(headers=self.headers)
        return self._client

    async def request(self, level, reason, region=None, rule=""):
        r = await self.client().put(
            f"{self.base_url}/v1/degradation",
            json={"level": level, "reason": reason, "region": region, "rule": rule},
            timeout=self.timeout,
        )
        try:
            body = r.json()
        except ValueError:
            body = {}
        if r.status_code >= 400:
            return {"phase": "refused", "error": f"HTTP {r.status_code}", **(body if isinstance(body, dict) else {})}
        return body if isinstance(body, dict) else {"phase": "applied"}

    async def state(self):
        r = await self.client().get(f"{self.base_url}/v1/degradation", timeout=self.timeout)
        return r.json()


async def _maybe_await(v):
    return await v if inspect.isawaitable(v) else v


@dataclass
class ActiveAction:
    key: tuple[str, str, str]  # (rule, level, region)
    action_id: str
    rule: str
    level: str
    region: str
    spec: Any
    applied_at: float
    alerts: set[str] = field(default_factory=set)  # firing alert fingerprints that hold it
    resolved_since: float | None = None
    observed: bool = False
    baseline_effect: float = float("nan")
    labels: dict = field(default_factory=dict)  # the alert's labels when it was applied


_ids = itertools.count(1)


class ActionController:
    """The action receiver's brain: apply on firing, revert after resolution with hysteresis."""

    integration = "action"
    send_resolved = True

    def __init__(self, sink: ActionSink, clock, writer=None, view=None, name: str = "actions", ladder=DEFAULT_LADDER, effect_delay: float = 60.0) -> None:
        self.sink = sink
        self.clock = clock
        self.writer = writer
        self.view = view  # alerts.series.MetricView, to read effect metrics
        self.name = name
        self.ladder = list(ladder)
        self.effect_delay = effect_delay
        self.active: dict[tuple[str, str, str], ActiveAction] = {}
        self.reverted_at: dict[tuple[str, str, str], float] = {}
        self.flaps: dict[tuple[str, str, str], int] = {}
        self.requested: tuple[str, str] = ("NORMAL", "")
        self.history: list[dict] = []
        self._lock = asyncio.Lock()

    # -- recording
    def _effect(self, spec) -> float:
        if self.view is None or spec is None or not spec.effect_metric:
            return float("nan")
        sel = Selector(metric=spec.effect_metric, match=spec.effect_match)
        agg = "quantile" if spec.effect_quantile else "last"
        try:
            vals = aggregate(self.view, sel, agg, [], self.clock.now(), spec.effect_window, spec.effect_quantile)
        except Exception:
            return float("nan")
        return max(vals.values()) if vals else float("nan")

    def _record(self, phase: str, a: ActiveAction | None, level: str, previous: str, region: str, rule: str, reason: str, effect: float = float("nan")) -> dict:
        row = {
            "ts_ms": int(round(self.clock.now() * 1000)),
            "action_id": a.action_id if a else f"act-{next(_ids)}",
            "phase": phase,
            "level": level,
            "previous_level": previous,
            "region": region or "",
            "rule": rule,
            "reason": reason[:500],
            "effect_metric": (a.spec.effect_metric or "") if a and a.spec else "",
            "effect_value": effect if effect == effect else 0.0,
        }
        self.history.append(row)
        if self.writer is not None:
            try:
                self.writer.write("degradation_actions", [row])
            except Exception:
                log.exception("could not record a degradation action")
        return row

    # -- the ladder
    def _rank(self, level: str) -> int:
        try:
            return self.ladder.index(level)
        except ValueError:
            return len(self.ladder)  # a level this side does not know: keep it above the known ones

    def desired(self) -> tuple[str, str]:
        if not self.active:
            return "NORMAL", ""
        top = max(self.active.values(), key=lambda a: (self._rank(a.level), a.applied_at))
        region = top.region if top.level in REGION_LEVELS or self._rank(top.level) >= self._rank("REGION_FAILOVER") else ""
        if not region:
            regional = [a for a in self.active.values() if a.level in REGION_LEVELS and a.region]
            region = regional[0].region if regional else ""
        return top.level, region

    async def _converge(self, reason: str, rule: str) -> dict | None:
        level, region = self.desired()
        if (level, region) == self.requested:
            return None
        previous = self.requested[0]
        try:
            answer = await _maybe_await(self.sink.request(level, reason, region or None, rule))
        except Exception as exc:
            log.warning("action sink failed: %s", exc)
            return {"phase": "refused", "error": f"{type(exc).__name__}: {exc}", "previous": previous}
        answer = answer if isinstance(answer, dict) else {}
        if answer.get("phase") != "refused" or "already" in str(answer.get("reason", "")):
            self.requested = (level, region)
        return {**answer, "previous": previous}

    # -- the receiver interface
    async def send(self, ctx, alerts: list) -> DeliveryResult:
        async with self._lock:
            return await self._handle(alerts)

    async def _handle(self, alerts: list) -> DeliveryResult:
        now = self.clock.now()
        errors = []
        changes = []
        for al in alerts:
            spec = al.action
            if spec is None:
                continue
            region = spec.region or (al.labels.get(spec.region_label, "") if spec.region_label else "")
            key = (al.rule, spec.level, region)
            act = self.active.get(key)
            if al.status == "firing":
                if act is not None:
                    if act.resolved_since is not None:
                        changes.append({"action_id": act.action_id, "change": "resolution cancelled", "alert": al.fingerprint})
                    act.alerts.add(al.fingerprint)
                    act.resolved_since = None
                    continue
                # re-applied soon after a revert: this action flaps, so hold the next revert longer
                if now - self.reverted_at.get(key, -1e18) < FLAP_WINDOW_S:
                    self.flaps[key] = min(self.flaps.get(key, 0) + 1, 3)
                act = ActiveAction(key, f"act-{int(now * 1000)}-{next(_ids)}", al.rule, spec.level, region, spec, now, {al.fingerprint}, labels=dict(al.labels))
                act.baseline_effect = self._effect(spec)
                reason = al.annotations.get("summary") or f"{al.rule} firing"
                self._record("requested", act, spec.level, self.requested[0], region, al.rule, reason, act.baseline_effect)
                self.active[key] = act
                answer = await self._converge(reason, al.rule)
                phase = (answer or {}).get("phase", "applied")
                if answer is not None and phase == "refused" and "already" not in str(answer.get("reason", "")):
                    del self.active[key]
                    errors.append(str(answer.get("error") or answer.get("reason") or "refused"))
                    self._record("refused", act, spec.level, answer.get("previous", ""), region, al.rule, str(answer.get("error") or answer.get("reason", "")))
                else:
                    prev = answer.get("previous", "") if answer else self.requested[0]
                    self._record("applied", act, spec.level, prev, region, al.rule, reason, act.baseline_effect)
                    changes.append({"action_id": act.action_id, "change": "applied", "level": spec.level, "region": region})
            elif act is not None:
                act.alerts.discard(al.fingerprint)
                if not act.alerts and act.resolved_since is None:
                    act.resolved_since = now
                    changes.append({"action_id": act.action_id, "change": "alert resolved", "alert": al.fingerprint})
        if errors:
            # the pipeline refused (or was unreachable): worth another try on the next flush
            return DeliveryResult(False, True, 0, "; ".join(errors), payload=json.dumps(changes))
        # the receiver sees every alert every second: only a change is worth a notifications row
        return DeliveryResult(True, payload=json.dumps(changes), record=bool(changes))

    def _released(self, act: ActiveAction, now: float) -> bool:
        """True once the cause (the release metric, averaged over the release window, worst series
        of the alert's label values) is below the low-water mark. Averaged, because a saturation
        gauge read once a second touches 1.0 now and then even on a calm day."""
        rel = act.spec.release
        if rel is None or self.view is None:
            return True
        if now - act.applied_at < rel.for_:
            return False
        match = {k: act.labels.get(k, "") for k in rel.same_labels}
        means = []
        for s in self.view.select(rel.metric, match):
            vals = s.window(now - rel.for_, now)
            if vals:
                means.append(sum(vals) / len(vals))
        return bool(means) and max(means) < rel.below

    async def tick(self) -> list[dict]:
        """Revert actions whose alerts stayed resolved long enough; record observed effects."""
        now = self.clock.now()
        done = []
        async with self._lock:
            for key, act in list(self.active.items()):
                if not act.observed and now - act.applied_at >= self.effect_delay:
                    act.observed = True
                    self._record("observed", act, act.level, act.level, act.region, act.rule, "effect after apply", self._effect(act.spec))
                released = self._released(act, now)
                if act.resolved_since is None:
                    continue
                hold = act.spec.revert_after * (2 ** self.flaps.get(key, 0))
                if now - act.resolved_since < hold or now - act.applied_at < act.spec.min_hold or not released:
                    continue
                del self.active[key]
                self.reverted_at[key] = now
                reason = f"{act.rule} resolved for {now - act.resolved_since:.0f}s"
                answer = await self._converge(reason, act.rule)
                prev = answer.get("previous", act.level) if answer else act.level
                done.append(self._record("reverted", act, self.requested[0], prev, act.region, act.rule, reason, self._effect(act.spec)))
        return done

    def restore(self, store, ruleset) -> int:
        """Take back the actions that were applied and not reverted before a restart."""
        df = tables.action_rows(store)
        n = 0
        now = self.clock.now()
        for r in df.itertuples(index=False):
            if r.a_phase not in ("applied", "requested"):
                continue
            try:
                rule = ruleset.rule(r.a_rule)
            except KeyError:
                rule = None
            spec = rule.action if rule is not None else None
            if spec is None:
                continue
            key = (r.a_rule, r.a_level, r.a_region)
            # assume resolved until a firing alert claims it (the action route flushes within seconds)
            self.active[key] = ActiveAction(key, r.action_id, r.a_rule, r.a_level, r.a_region, spec, r.a_first_ms / 1000.0, set(), now, observed=True)
            n += 1
        if n:
            self.requested = self.desired()
        return n
