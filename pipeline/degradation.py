"""The pipeline's degradation level: what it is, what each level changes, and who may change it.

Levels form a ladder; each includes the ones below it (cumulative), so "raise one step" is always a
safe request:

- NORMAL: every stage does its full work.
- CACHED_RESPONSES: common intents are answered from the response cache / templates, without the
  LLM backend (cuts LLM calls and their latency).
- INTEGRATIONS_QUEUED: integration actions and lookups that the answer does not strictly need go to
  the integration queue and are retried asynchronously; the turn no longer waits on the pools.
- REGION_FAILOVER: the named region's calls move to its secondary region (failover under 3 s).
- HUMAN_HANDOFF: every call is handed to the human queue with its context.

The control surface is dict-shaped on purpose: alerts ask through an ActionSink (HTTP in production,
an in-process callable in the demo) and never import this package.
"""

from __future__ import annotations

import enum
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from telemetry.catalog import default_catalog

log = logging.getLogger(__name__)


class _Ladder(enum.IntEnum):
    """What every degradation level can do; the levels themselves come from the catalog (below)."""

    @classmethod
    def parse(cls, value: Any) -> DegradationLevel:
        """Accept a level, its name in any case (`cached_responses`, `CACHED-RESPONSES`) or its number."""
        if isinstance(value, DegradationLevel):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return cls(value)
        if isinstance(value, str):
            key = value.strip().upper().replace("-", "_").replace(" ", "_")
            if key in cls.__members__:
                return cls[key]
            if key.isdigit():
                return cls(int(key))
        known = ", ".join(m.name for m in cls)
        raise ValueError(f"unknown degradation level {value!r}; known: {known}")


# The ladder is written once, in the catalog (the states of voxwatch_degradation_level, lowest first,
# valued 0, 1, 2, ...), where alerts reads it too; the policy below gives each named level its meaning.
DegradationLevel = _Ladder(
    "DegradationLevel",
    [(name, value) for value, name in enumerate(default_catalog().states("voxwatch_degradation_level"))],
    module=__name__, qualname="DegradationLevel",
)


@dataclass(frozen=True)
class DegradationPolicy:
    """What a level means for the stages. Stages consult this, never the raw level."""

    level: DegradationLevel
    cached_intents: frozenset[str]  # intents answered without the LLM at CACHED_RESPONSES and above
    failover_region: str | None = None  # the region evacuated at REGION_FAILOVER and above

    @property
    def serve_common_from_cache(self) -> bool:
        return self.level >= DegradationLevel.CACHED_RESPONSES

    @property
    def integrations_queued(self) -> bool:
        return self.level >= DegradationLevel.INTEGRATIONS_QUEUED

    @property
    def region_failover(self) -> bool:
        return self.level >= DegradationLevel.REGION_FAILOVER

    @property
    def handoff_everything(self) -> bool:
        return self.level >= DegradationLevel.HUMAN_HANDOFF

    def answers_without_llm(self, intent: str) -> bool:
        return self.serve_common_from_cache and intent in self.cached_intents


DEFAULT_CACHED_INTENTS = frozenset(
    {"order_status", "store_hours", "return_policy", "shipping_info", "billing", "greeting", "goodbye"}
)

_action_ids = itertools.count(1)


class DegradationController:
    """Owns the level. `request` applies a change at once and records it; `state` reports it.

    Listeners (`subscribe`) are told of every applied change; the region router uses this to fail
    over. Each request is written to the `degradation_actions` table through the sink, when given.
    """

    def __init__(
        self,
        clock,
        *,
        sink=None,
        metrics=None,
        cached_intents: frozenset[str] = DEFAULT_CACHED_INTENTS,
        default_region: str | None = None,
    ) -> None:
        self.clock = clock
        self.sink = sink
        self.metrics = metrics  # pipeline.observe.PipelineMetrics (optional)
        self.cached_intents = frozenset(cached_intents)
        self.default_region = default_region
        self._policy = DegradationPolicy(DegradationLevel.NORMAL, self.cached_intents)
        self.reason = "start"
        self.rule = ""
        self.since = clock.now()
        self.history: list[dict] = []
        self._listeners: list[Callable[[DegradationPolicy, DegradationPolicy], None]] = []
        if metrics is not None:
            metrics.degradation_level(self._policy.level, self.since, changed=False)

    # -- what stages read
    @property
    def policy(self) -> DegradationPolicy:
        return self._policy

    @property
    def level(self) -> DegradationLevel:
        return self._policy.level

    def subscribe(self, listener: Callable[[DegradationPolicy, DegradationPolicy], None]) -> None:
        self._listeners.append(listener)

    # -- the control surface (dict in, dict out)
    def request(self, level: Any, reason: str = "", region: str | None = None, rule: str = "") -> dict:
        """Move to `level` (name or number). Returns the action as a dict: applied or refused, and why."""
        now = self.clock.now()
        action_id = f"deg-{int(now * 1000)}-{next(_action_ids)}"
        previous = self._policy
        try:
            new_level = DegradationLevel.parse(level)
        except ValueError as exc:
            action = self._action(action_id, "refused", str(level), previous, region, rule, f"{reason}: {exc}", now)
            return {**action, "error": str(exc), "state": self.state()}
        if new_level >= DegradationLevel.REGION_FAILOVER:
            region = region or previous.failover_region or self.default_region
        else:
            region = None
        self._action(action_id, "requested", new_level.name, previous, region, rule, reason, now)
        if new_level == previous.level and region == previous.failover_region:
            action = self._action(action_id, "refused", new_level.name, previous, region, rule, "already at this level", now)
            return {**action, "state": self.state()}
        self._policy = DegradationPolicy(new_level, self.cached_intents, region)
        self.reason, self.rule, self.since = reason, rule, now
        phase = "reverted" if new_level < previous.level else "applied"
        action = self._action(action_id, phase, new_level.name, previous, region, rule, reason, now)
        if self.metrics is not None:
            self.metrics.degradation_level(new_level, now, changed=True, previous=previous.level)
        for listener in self._listeners:
            try:
                listener(previous, self._policy)
            except Exception:  # a listener must not undo a decision already recorded
                log.exception("degradation listener failed")
        return {**action, "state": self.state()}

    def state(self) -> dict:
        p = self._policy
        return {
            "level": p.level.name,
            "level_value": int(p.level),
            "region": p.failover_region,
            "reason": self.reason,
            "rule": self.rule,
            "since_ms": int(self.since * 1000),
            "cached_intents": sorted(p.cached_intents),
            "levels": [m.name for m in DegradationLevel],
        }

    def _action(self, action_id, phase, level, previous, region, rule, reason, now) -> dict:
        row = {
            "ts_ms": int(now * 1000),
            "action_id": action_id,
            "phase": phase,
            "level": level,
            "previous_level": previous.level.name,
            "region": region or "",
            "rule": rule or "",
            "reason": reason or "",
            "effect_metric": "",
            "effect_value": 0.0,
        }
        self.history.append(row)
        if self.sink is not None:
            self.sink.write("degradation_actions", [row])
        if self.metrics is not None:
            self.metrics.degradation_action(phase, level, "alerts" if rule else "operator")
        return row
