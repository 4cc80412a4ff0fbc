"""Scenario files: traffic shape, regions, pools, engine latency models and timed faults, as YAML
validated with pydantic. A bad file fails at load with the file, the field and the problem.

Every fault states its ground truth (start and end, seconds from the scenario start), so detectors
and alert rules can be scored against it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

SCENARIO_DIR = Path(__file__).resolve().parent.parent / "scenarios"


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message names the file and the field."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Latency(Strict):
    """Lognormal latency: `median_ms` is exp(mu); `sigma` is the log-space spread."""

    median_ms: float = Field(gt=0)
    sigma: float = Field(default=0.35, ge=0, le=3)

    @property
    def mu(self) -> float:
        return math.log(self.median_ms / 1000.0)


class EngineModel(Strict):
    latency: Latency
    error_rate: float = Field(default=0.0, ge=0, le=1)


class LLMModel(Strict):
    # the LLM is the widest stage (provider queueing, prompt length): its spread makes most of the
    # turn latency's tail (see `Engines` for the calibration)
    ttft: Latency = Latency(median_ms=70, sigma=0.3)
    tokens_per_s: float = Field(default=90.0, gt=0)
    completion_tokens_mean: float = Field(default=45.0, gt=0)
    prompt_tokens_mean: float = Field(default=420.0, gt=0)
    error_rate: float = Field(default=0.002, ge=0, le=1)


class ConnectorModel(Strict):
    # an indexed read or write on an internal service in the same region; the time a request holds
    # its pool connection, so it sets both the caller's wait and the pool's occupancy
    latency: Latency = Latency(median_ms=22, sigma=0.3)
    error_rate: float = Field(default=0.002, ge=0, le=1)
    timeout_s: float = Field(default=3.0, gt=0)
    # how long the connection stays checked out after the answer is back, on work nobody waits for
    # (the handler's write-behind on the same connection: an audit row, the commit). It fills the
    # pool without showing in turn latency: a bottleneck that hides until the pool runs out.
    # None: released with the answer. Faults that slow the service stretch it too.
    after_reply: Latency | None = None


class Engines(Strict):
    """Stage latency models, calibrated so a healthy pipeline meets the source article's figures.

    A turn (end of the caller's speech to the reply's first audio) is edge + STT finalisation + NLU
    + the answer (cache or template, or the LLM's time to first token, after any CRM/orders/catalog
    lookups) + actions + TTS first audio. The article's normal day: turn latency P50 147 ms, P95
    203 ms, P99 289 ms, against a ~300 ms budget. With these models `baseline` measures about P50
    145, P95 220, P99 250 ms in every minute (the mix of cached answers and LLM answers makes the
    body a little wider than the article's, the tail a little shorter), which leaves the 300 ms budget
    for what the incident adds: waiting on a saturated pool. The earlier models (STT 45 ms, LLM 90 ms
    at sigma 0.35, connectors 35 ms at sigma 0.45) summed to a P99 of ~355 ms on a normal day, above
    the budget before anything went wrong.
    """

    edge: EngineModel = EngineModel(latency=Latency(median_ms=8, sigma=0.3))
    stt: EngineModel = EngineModel(latency=Latency(median_ms=40, sigma=0.2), error_rate=0.001)  # streaming: only finalisation is waited
    nlu: EngineModel = EngineModel(latency=Latency(median_ms=6, sigma=0.3), error_rate=0.0005)
    template: EngineModel = EngineModel(latency=Latency(median_ms=4, sigma=0.3))
    tts: EngineModel = EngineModel(latency=Latency(median_ms=25, sigma=0.2), error_rate=0.0005)  # first audio chunk
    llm: LLMModel = LLMModel()
    connectors: dict[str, ConnectorModel] = Field(
        default_factory=lambda: {s: ConnectorModel() for s in ("crm", "orders", "ticketing", "catalog")}
    )
    stt_confidence_mean: float = Field(default=0.9, gt=0, le=1)
    fallback_rate: float = Field(default=0.04, ge=0, le=1)  # turns the classifier cannot place


class Traffic(Strict):
    shape: Literal["steady", "daily", "promotion_ramp", "spike"] = "steady"
    concurrent_calls: int = Field(default=15_000, gt=0)  # peak concurrency the shape is scaled to
    base: float = Field(default=1.0, gt=0, le=1)  # fraction of peak outside the ramp/spike
    ramp_start_s: float = Field(default=0, ge=0)
    ramp_end_s: float = Field(default=0, ge=0)
    spike_at_s: float = Field(default=0, ge=0)
    spike_duration_s: float = Field(default=300, gt=0)
    spike_factor: float = Field(default=1.5, gt=0)
    day_period_s: float = Field(default=86_400, gt=0)  # daily curve: one period of the sine
    peak_at_s: float = Field(default=0, ge=0)  # daily curve: where the peak lies
    # intents whose share grows with the ramp (a promotion brings order and return questions)
    ramp_intent_boost: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _ramp_order(self):
        if self.shape == "promotion_ramp" and self.ramp_end_s <= self.ramp_start_s:
            raise ValueError("ramp_end_s must be after ramp_start_s for a promotion_ramp")
        return self

    def factor(self, t: float) -> float:
        """Concurrency at second t as a fraction of `concurrent_calls`."""
        if self.shape == "steady":
            return self.base
        if self.shape == "promotion_ramp":
            return self.base + (1.0 - self.base) * self.ramp_progress(t)
        if self.shape == "spike":
            in_spike = self.spike_at_s <= t < self.spike_at_s + self.spike_duration_s
            return min(1.0, self.base * (self.spike_factor if in_spike else 1.0))
        # daily: a cosine between base and 1 with its top at peak_at_s
        phase = 2 * math.pi * (t - self.peak_at_s) / self.day_period_s
        return self.base + (1.0 - self.base) * 0.5 * (1 + math.cos(phase))

    def ramp_progress(self, t: float) -> float:
        if self.shape != "promotion_ramp":
            return 0.0
        if t <= self.ramp_start_s:
            return 0.0
        if t >= self.ramp_end_s:
            return 1.0
        return (t - self.ramp_start_s) / (self.ramp_end_s - self.ramp_start_s)


class Caller(Strict):
    turns_mean: float = Field(default=9.0, ge=1)
    utterance: Latency = Latency(median_ms=2600, sigma=0.35)  # caller speech per turn
    reply_audio: Latency = Latency(median_ms=4500, sigma=0.35)  # agent speech per turn
    pause: Latency = Latency(median_ms=1500, sigma=0.5)  # silence before the caller speaks again
    hangup_rate: float = Field(default=0.01, ge=0, le=1)  # chance per turn the caller hangs up
    impatience_s: float = Field(default=4.0, gt=0)  # a reply slower than this makes hang-ups likelier
    impatient_hangup_rate: float = Field(default=0.15, ge=0, le=1)
    silence_rate: float = Field(default=0.003, ge=0, le=1)  # calls where the caller never speaks
    customers: int = Field(default=2_000_000, gt=0)  # distinct callers (repeat callers hit caches)
    languages: dict[str, float] = Field(default_factory=lambda: {"en": 0.62, "es": 0.18, "fr": 0.06, "de": 0.05, "pt": 0.04, "it": 0.05})


DEFAULT_INTENT_MIX = {
    "greeting": 0.06,
    "order_status": 0.22,
    "return_request": 0.08,
    "return_policy": 0.08,
    "shipping_info": 0.08,
    "store_hours": 0.07,
    "billing": 0.08,
    "product_question": 0.15,
    "account_update": 0.04,
    "complaint": 0.04,
    "cancel_order": 0.02,
    "talk_to_human": 0.008,
    "goodbye": 0.07,
}


class RegionSpec(Strict):
    name: str = Field(min_length=1)
    secondary: str | None = None
    weight: float = Field(default=1.0, gt=0)
    capacity: int = Field(default=20_000, gt=0)  # concurrent calls the region is provisioned for


class PoolSpec(Strict):
    size: int = Field(gt=0)
    max_size: int | None = None
    acquire_timeout_s: float = Field(default=5.0, gt=0)
    grow_step: int = Field(default=10, ge=0)
    grow_after_s: float = Field(default=10.0, gt=0)
    shed_waiters: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _max(self):
        if self.max_size is None:
            self.max_size = self.size
        if self.max_size < self.size:
            raise ValueError("max_size must be at least size")
        return self


class CacheSpec(Strict):
    capacity: int = Field(gt=0)
    ttl_s: float = Field(gt=0)


class Handoff(Strict):
    # The staffing plan: about 10% of calls end with a human (asked for one, or misunderstood twice)
    # and each holds an agent for `handle_time_s`, so a 15,000-call peak offers about 3,900 Erlangs.
    # 6,000 agents staff that peak at ~65% occupancy: the margin is for the degradation ladder's
    # last step (handing calls to humans when the pipeline cannot answer) and for surges, and on a
    # normal day the agents never trend towards running out (4,500 reached 86% at the peak and the
    # saturation detector, rightly, forecast their exhaustion). Scales with the calls like the pools.
    agents: int = Field(default=6000, ge=0)
    handle_time_s: float = Field(default=180, gt=0)
    patience_s: float = Field(default=120, gt=0)  # callers waiting longer for a human hang up


class ActionQueueSpec(Strict):
    capacity: int = Field(default=200_000, gt=0)  # actions held before new ones are dropped
    max_attempts: int = Field(default=6, ge=1)


class TelemetrySpec(Strict):
    # share of calls whose spans are stored; None: enough for about 500 traced calls at any time
    trace_sample_rate: float | None = Field(default=None, ge=0, le=1)


class _Fault(Strict):
    start_s: float = Field(ge=0)
    end_s: float | None = None  # None: until the scenario ends
    description: str = ""

    @model_validator(mode="after")
    def _order(self):
        if self.end_s is not None and self.end_s <= self.start_s:
            raise ValueError("end_s must be after start_s")
        return self

    def active(self, t: float) -> bool:
        return self.start_s <= t and (self.end_s is None or t < self.end_s)


class PoolLeak(_Fault):
    kind: Literal["pool_leak"]
    pool: str
    region: str | None = None  # None: every region
    per_minute: float = Field(gt=0)  # connections lost per minute while active


class DemandGrowth(_Fault):
    """Integration calls to `pool` get slower to return (hold time grows linearly to `factor`)."""

    kind: Literal["downstream_slowdown"]
    pool: str
    region: str | None = None
    factor: float = Field(gt=1)
    ramp_s: float = Field(default=0, ge=0)


class LLMLatencySpike(_Fault):
    kind: Literal["llm_latency"]
    factor: float = Field(gt=1)
    ramp_s: float = Field(default=0, ge=0)
    region: str | None = None


class IntegrationFailure(_Fault):
    kind: Literal["integration_failure"]
    system: str
    error_rate: float = Field(ge=0, le=1)
    timeout_rate: float = Field(default=0.0, ge=0, le=1)  # calls that hang until the connector timeout
    region: str | None = None


class RegionOutage(_Fault):
    kind: Literal["region_outage"]
    region: str


class CompleteOutage(_Fault):
    kind: Literal["complete_outage"]


Fault = Annotated[
    PoolLeak | DemandGrowth | LLMLatencySpike | IntegrationFailure | RegionOutage | CompleteOutage,
    Field(discriminator="kind"),
]


class Scenario(Strict):
    name: str = Field(min_length=1)
    description: str = ""
    duration_s: float = Field(default=3600, gt=0)
    start: float = Field(default=1_696_323_600.0)  # epoch seconds of t=0 (2023-10-03 09:00 UTC)
    seed: int = 1
    tick_s: float = Field(default=1.0, gt=0, le=10)
    traffic: Traffic = Traffic()
    caller: Caller = Caller()
    intents: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_INTENT_MIX))
    response_variants: dict[str, int] = Field(default_factory=lambda: {"greeting": 5, "goodbye": 5, "return_policy": 40, "shipping_info": 40, "store_hours": 30})
    products: int = Field(default=30_000, gt=0)
    regions: list[RegionSpec] = Field(default_factory=lambda: [RegionSpec(name="us-east", secondary="us-west", weight=0.6), RegionSpec(name="us-west", secondary="us-east", weight=0.4)], min_length=1)
    pools: dict[str, PoolSpec] = Field(
        default_factory=lambda: {
            "crm": PoolSpec(size=150, max_size=200),
            "orders": PoolSpec(size=150, max_size=200),
            "ticketing": PoolSpec(size=60, max_size=80),
            "catalog": PoolSpec(size=80, max_size=100),
            "llm": PoolSpec(size=1200, max_size=1500, acquire_timeout_s=10),
        }
    )
    caches: dict[str, CacheSpec] = Field(
        default_factory=lambda: {
            "responses": CacheSpec(capacity=2_000, ttl_s=300),  # answers to common questions refresh every 5 min
            "customer_history": CacheSpec(capacity=200_000, ttl_s=1800),
            "product_info": CacheSpec(capacity=20_000, ttl_s=3600),
        }
    )
    engines: Engines = Engines()
    handoff: Handoff = Handoff()
    actions: ActionQueueSpec = ActionQueueSpec()
    telemetry: TelemetrySpec = TelemetrySpec()
    faults: list[Fault] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references(self):
        names = {r.name for r in self.regions}
        for i, r in enumerate(self.regions):
            if r.secondary is not None and r.secondary not in names:
                raise ValueError(f"regions[{i}].secondary: unknown region {r.secondary!r}")
        for needed in ("crm", "orders", "ticketing", "catalog", "llm"):
            if needed not in self.pools:
                raise ValueError(f"pools: missing pool {needed!r}")
        for needed in ("responses", "customer_history", "product_info"):
            if needed not in self.caches:
                raise ValueError(f"caches: missing cache {needed!r}")
        if not self.intents or sum(self.intents.values()) <= 0:
            raise ValueError("intents: the mix needs at least one positive weight")
        for i, f in enumerate(self.faults):
            region = getattr(f, "region", None)
            if region is not None and region not in names:
                raise ValueError(f"faults[{i}].region: unknown region {region!r}")
            pool = getattr(f, "pool", None)
            if pool is not None and pool not in self.pools:
                raise ValueError(f"faults[{i}].pool: unknown pool {pool!r}")
            system = getattr(f, "system", None)
            if system is not None and system not in self.engines.connectors:
                raise ValueError(f"faults[{i}].system: unknown system {system!r}")
        return self

    def ground_truth(self) -> list[dict]:
        """Each fault's window in epoch ms and scenario seconds, for scoring detectors and rules."""
        out = []
        for i, f in enumerate(self.faults):
            end = self.duration_s if f.end_s is None else min(f.end_s, self.duration_s)
            target = getattr(f, "pool", None) or getattr(f, "system", None) or getattr(f, "region", None) or ""
            out.append(
                {
                    "fault": i,
                    "kind": f.kind,
                    "target": target,
                    "region": getattr(f, "region", None) or "",
                    "start_s": f.start_s,
                    "end_s": end,
                    "start_ms": int((self.start + f.start_s) * 1000),
                    "end_ms": int((self.start + end) * 1000),
                    "description": f.description,
                }
            )
        return out

    def scaled(self, *, calls: int | None = None, duration_s: float | None = None) -> Scenario:
        """The same scenario at another scale: fault times stretch with the duration; pools, agents
        and cache sizes scale with the calls, so saturation happens at the same point of the story."""
        data = self.model_dump()
        if duration_s is not None and duration_s != self.duration_s:
            k = duration_s / self.duration_s
            data["duration_s"] = duration_s
            t = data["traffic"]
            for key in ("ramp_start_s", "ramp_end_s", "spike_at_s", "spike_duration_s", "peak_at_s", "day_period_s"):
                t[key] = t[key] * k
            for f in data["faults"]:
                f["start_s"] *= k
                if f.get("end_s") is not None:
                    f["end_s"] *= k
                if "per_minute" in f:
                    f["per_minute"] /= k
                if f.get("ramp_s"):
                    f["ramp_s"] *= k
        if calls is not None and calls != self.traffic.concurrent_calls:
            k = calls / self.traffic.concurrent_calls
            data["traffic"]["concurrent_calls"] = calls
            for p in data["pools"].values():
                p["size"] = max(1, round(p["size"] * k))
                p["max_size"] = max(p["size"], round(p["max_size"] * k))
                p["grow_step"] = max(1 if p["grow_step"] else 0, round(p["grow_step"] * k))
                p["shed_waiters"] = round(p["shed_waiters"] * k)
            for f in data["faults"]:
                if f.get("kind") == "pool_leak":
                    f["per_minute"] *= k
            data["handoff"]["agents"] = max(1, round(data["handoff"]["agents"] * k))
            data["actions"]["capacity"] = max(10, round(data["actions"]["capacity"] * k))
            for r in data["regions"]:
                r["capacity"] = max(1, round(r["capacity"] * k))
            # the customer base scales with the calls; responses and products do not
            c = data["caches"]["customer_history"]
            c["capacity"] = max(10, round(c["capacity"] * k))
            data["caller"]["customers"] = max(100, round(data["caller"]["customers"] * k))
        return Scenario.model_validate(data)


def _format_errors(path: str, exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        parts.append(f"{loc}: {err['msg']}")
    return f"{path}: " + "; ".join(parts)


def scenario_names() -> list[str]:
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Load a shipped scenario by name (`october-3`) or any YAML file by path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = SCENARIO_DIR / f"{name_or_path}.yaml"
        if not path.exists():
            raise ScenarioError(f"unknown scenario {str(name_or_path)!r}; shipped: {', '.join(scenario_names())}")
    if not path.exists():
        raise ScenarioError(f"{path}: no such scenario file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}: expected a mapping of scenario fields at the top level")
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(_format_errors(str(path), exc)) from None
