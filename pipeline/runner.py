"""The turn runner: a list of stages that reads like the call flow, and the runner that owns the wiring.

    edge -> stt -> nlu -> response -> integrations -> speech -> handoff

A stage gets the turn and the pipeline's services and fills in its part; it never calls the next
stage. The runner times every stage, records its metric and span, turns an exception into a failed
stage (the turn fails, not the call or the process), and skips the remaining stages once a stage
ends the turn early (a handoff), except stages marked `always` (handoff). The degradation policy is
read once per turn, so a change applies from the next turn on.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from pipeline.actions import IntegrationQueue
from pipeline.caches import CacheSet, TTLCache
from pipeline.circuit import CircuitBreaker
from pipeline.context import CallContext, TurnRecord
from pipeline.degradation import DegradationController, DegradationPolicy
from pipeline.engines import (
    HUMAN_INTENT,
    EngineError,
    Engines,
    IntegrationAction,
    IntegrationResult,
    IntentResult,
    ResponseRequest,
    ResponseText,
    SpokenReply,
    Transcript,
    Utterance,
)
from pipeline.handoff import HandoffQueue, HandoffRequest
from pipeline.intents import spec
from pipeline.observe import NullMetrics
from pipeline.pools import ConnectionPool, PoolConfig, PoolSet, PoolTimeout
from pipeline.regions import Region, RegionRouter
from pipeline.tracing import CallTrace, OtelCallTrace
from pipeline.work import begin_turn_work, current_work, end_turn_work

log = logging.getLogger(__name__)

MISUNDERSTANDINGS_BEFORE_HANDOFF = 2


@dataclass
class Turn:
    ctx: CallContext
    utterance: Utterance
    policy: DegradationPolicy
    started_at: float
    region: str = ""
    transcript: Transcript | None = None
    intent: IntentResult | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    reply: ResponseText | None = None
    reply_source: str = ""  # cache | template | llm | handoff | apology
    queued_actions: int = 0
    spoken: SpokenReply | None = None
    handoff_reason: str = ""
    failed_stage: str = ""
    error: str = ""
    stage_s: dict[str, float] = field(default_factory=dict)
    done: bool = False  # set by a stage that ends the turn early

    @property
    def intent_name(self) -> str:
        return self.intent.intent if self.intent else ""


@dataclass
class TurnResult:
    call_id: str
    turn: int
    transcript: str
    intent: str
    intent_confidence: float
    reply: str
    reply_source: str
    spoken: SpokenReply | None
    handoff_reason: str
    status: str  # ok | error | handoff
    failed_stage: str
    error: str
    latency_s: float  # end of speech -> reply ready (speech synthesised)
    stage_s: dict[str, float]
    degradation_level: str


class Stage:
    """One step of a turn. Subclasses set `name` and implement `run`."""

    name = "stage"
    always = False  # runs even after an earlier stage ended the turn

    async def run(self, turn: Turn, pipe: Pipeline) -> None:  # pragma: no cover - interface
        raise NotImplementedError


class EdgeStage(Stage):
    """Routes the turn to the region serving the call; hands everything off when told to."""

    name = "edge"

    async def run(self, turn: Turn, pipe: Pipeline) -> None:
        serving = pipe.regions.serving(turn.ctx.origin_region)
        if serving is None or not pipe.regions.is_up(serving):
            raise EngineError(f"no region can serve {turn.ctx.origin_region}", kind="unavailable")
        turn.ctx.region = turn.region = serving
        if turn.policy.handoff_everything:
            turn.handoff_reason = "degradation"
            turn.done = True


class SpeechToTextStage(Stage):
    name = "stt"

    async def run(self, turn: Turn, pipe: Pipeline) -> None:
        turn.transcript = await pipe.engines.stt.transcribe(turn.utterance)
        pipe.metrics.stt_result(turn.region, turn.transcript)


class UnderstandingStage(Stage):
    name = "nlu"

    async def run(self, turn: Turn, pipe: Pipeline) -> None:
        text = turn.transcript.text if turn.transcript else ""
        turn.intent = await pipe.engines.nlu.classify(text, language=turn.ctx.language)
        pipe.metrics.intent_result(turn.region, turn.intent)
        if turn.intent.intent == HUMAN_INTENT:
            turn.handoff_reason = "caller_request"
            turn.done = True
        elif turn.intent.fallback:
            turn.ctx.misunderstandings += 1
            if turn.ctx.misunderstandings >= MISUNDERSTANDINGS_BEFORE_HANDOFF:
                turn.handoff_reason = "misunderstanding"
                turn.done = True


class ResponseStage(Stage):
    """Caches first (customer history, product info, common responses), the LLM only for reasoning."""

    name = "response"

    async def run(self, turn: Turn, pipe: Pipeline) -> None:
        intent = turn.intent_name
        s = spec(intent)
        now = pipe.clock.now
        for lookup in s.lookups:
            if lookup.cache:
                key = turn.ctx.customer_id if lookup.cache == "customer_history" else turn.transcript.text.lower()
                if lookup.cache in turn.ctx.facts and lookup.cache == "customer_history":
                    turn.facts[lookup.operation] = turn.ctx.facts[lookup.cache]
                    continue
                hit = pipe.caches[lookup.cache].get(key, now(), intent)
                if hit is not None:
                    turn.facts[lookup.operation] = hit
                    continue
            if not lookup.required and (turn.policy.integrations_queued or pipe.pool(turn.region, lookup.system).should_shed()):
                continue  # degraded: answer without the optional fact
            if lookup.required and turn.policy.integrations_queued:
                pipe.queue.enqueue(IntegrationAction(lookup.system, lookup.operation, turn.ctx.call_id, {"customer_id": turn.ctx.customer_id}, f"{turn.ctx.call_id}:{turn.utterance.turn}:{lookup.operation}"))
                turn.queued_actions += 1
                turn.facts[lookup.operation] = {"deferred": True}
                continue
            result = await pipe.call_integration(turn.region, IntegrationAction(lookup.system, lookup.operation, turn.ctx.call_id, {"customer_id": turn.ctx.customer_id}))
            if result.ok:
                turn.facts[lookup.operation] = result.data
                if lookup.cache:
                    pipe.caches[lookup.cache].put(key, result.data, now())
                    if lookup.cache == "customer_history":
                        turn.ctx.facts[lookup.cache] = result.data
        # the answer
        text = turn.transcript.text if turn.transcript else ""
        cache_key = (intent, turn.ctx.language, text.lower().strip())
        if s.cacheable:
            cached = pipe.caches["responses"].get(cache_key, now(), intent)
            if cached is not None:
                turn.reply, turn.reply_source = ResponseText(cached), "cache"
                pipe.metrics.response_source(turn.region, intent, "cache")
                return
        if turn.policy.answers_without_llm(intent):
            turn.reply, turn.reply_source = ResponseText(pipe.template(intent, turn.facts)), "template"
            pipe.metrics.response_source(turn.region, intent, "template")
            return
        request = ResponseRequest(turn.ctx.call_id, intent, text, turn.ctx.history(), turn.facts, turn.ctx.language)
        pool = pipe.pool(turn.region, "llm")
        t0 = now()
        async with pool.connection():
            turn.reply = await pipe.engines.llm.generate(request)
        turn.reply_source = "llm"
        pipe.metrics.llm_result(turn.region, turn.reply, now() - t0)
        pipe.metrics.response_source(turn.region, intent, "llm")
        if s.cacheable:
            pipe.caches["responses"].put(cache_key, turn.reply.text, now())


class IntegrationStage(Stage):
    """Actions after the answer: done now through the pool, or queued; a failure is queued for retry."""

    name = "integrations"

    async def run(self, turn: Turn, pipe: Pipeline) -> None:
        for system, operation in spec(turn.intent_name).actions:
            action = IntegrationAction(system, operation, turn.ctx.call_id, {"customer_id": turn.ctx.customer_id}, f"{turn.ctx.call_id}:{turn.utterance.turn}:{operation}")
            if turn.policy.integrations_queued or pipe.pool(turn.region, system).should_shed():
                pipe.queue.enqueue(action)
                turn.queued_actions += 1
                continue
            result = await pipe.call_integration(turn.region, action)
            if not result.ok:
                pipe.queue.enqueue(action)  # a failed integration never fails the call
                turn.queued_actions += 1


class SpeechStage(Stage):
    name = "tts"

    async def run(self, turn: Turn, pipe: Pipeline) -> None:
        if turn.reply is None:
            return
        turn.spoken = await pipe.engines.tts.synthesize(turn.reply.text, language=turn.ctx.language)
        pipe.metrics.tts_result(turn.region, turn.spoken)


class HandoffStage(Stage):
    """Hands the call to a human with its context when a stage asked for it (or a stage failed twice)."""

    name = "handoff"
    always = True

    async def run(self, turn: Turn, pipe: Pipeline) -> None:
        if not turn.handoff_reason:
            return
        ctx = turn.ctx
        ctx.handoff_reason = ctx.handoff_reason or turn.handoff_reason
        pipe.handoff.enqueue(
            HandoffRequest(
                ctx.call_id,
                turn.handoff_reason,
                ctx.region,
                ctx.language,
                ctx.transcript() + [{"turn": turn.utterance.turn, "caller": turn.transcript.text if turn.transcript else "", "agent": "", "intent": turn.intent_name}],
                ctx.intents + ([turn.intent_name] if turn.intent_name else []),
                {"customer_id": ctx.customer_id, "facts": dict(ctx.facts), "degradation_level": turn.policy.level.name},
                pipe.clock.now(),
            )
        )
        turn.reply_source = turn.reply_source or "handoff"


DEFAULT_STAGES: tuple[type[Stage], ...] = (
    EdgeStage,
    SpeechToTextStage,
    UnderstandingStage,
    ResponseStage,
    IntegrationStage,
    SpeechStage,
    HandoffStage,
)

TEMPLATES = {
    "order_status": "I've checked your order: it is on its way. I'll text you the tracking details.",
    "store_hours": "Our stores are open from 9 am to 9 pm, Monday to Saturday, and 10 to 6 on Sunday.",
    "return_policy": "You can return most items within 30 days with the receipt.",
    "shipping_info": "Standard shipping takes three to five working days.",
    "billing": "I've noted your billing question; a specialist will follow up by email today.",
    "greeting": "Hello! How can I help you today?",
    "goodbye": "Thank you for calling. Goodbye!",
}


@dataclass
class PipelineConfig:
    """Sizes of the shared parts; scenarios and `voxwatch serve` fill this from their files."""

    regions: list[dict] = field(default_factory=lambda: [{"name": "primary", "secondary": "secondary"}, {"name": "secondary", "secondary": "primary"}])
    pools: dict[str, dict] = field(default_factory=lambda: {"crm": {}, "orders": {}, "ticketing": {}, "catalog": {}, "llm": {"size": 32, "max_size": 32}})
    caches: dict[str, dict] = field(default_factory=lambda: {"responses": {"capacity": 10_000, "ttl_s": 3600}, "customer_history": {"capacity": 50_000, "ttl_s": 900}, "product_info": {"capacity": 20_000, "ttl_s": 3600}})
    human_agents: int = 50
    handoff_handle_time_s: float = 240.0
    scenario: str = ""


class Pipeline:
    """Owns the stages and the services they share; `run_turn` is the whole of a turn."""

    def __init__(self, engines: Engines, *, clock, metrics=None, sink=None, config: PipelineConfig | None = None, stages: list[Stage] | None = None, controller: DegradationController | None = None, seed: int = 0, telemetry=None) -> None:
        self.engines = engines
        self.clock = clock
        if metrics is None and telemetry is not None:
            from pipeline.metrics import PipelineMetrics

            metrics = PipelineMetrics(telemetry, seed=seed)
        self.metrics = metrics or NullMetrics()
        # per-call traces through the Telemetry's OpenTelemetry tracer when there is one
        self.tracing = telemetry.traces if telemetry is not None and getattr(telemetry, "enabled", False) else None
        self.sink = sink
        self.config = config or PipelineConfig()
        self.stages: list[Stage] = stages if stages is not None else [cls() for cls in DEFAULT_STAGES]
        regions = [Region(r["name"], r.get("secondary"), r.get("weight", 1.0)) for r in self.config.regions]
        self.regions = RegionRouter(regions, clock, metrics=self.metrics)
        self.controller = controller or DegradationController(clock, sink=sink, metrics=self.metrics, default_region=regions[0].name)
        self.controller.subscribe(self.regions.on_degradation)
        # Downstream services (CRM, orders, LLM provider) are shared by the regions: one pool each.
        self.pools = PoolSet({svc: ConnectionPool(svc, PoolConfig(**cfg), clock, metrics=self.metrics) for svc, cfg in self.config.pools.items()})
        self.caches = CacheSet({name: TTLCache(name, cfg.get("capacity", 10_000), cfg.get("ttl_s", 600), metrics=self.metrics) for name, cfg in self.config.caches.items()})
        self.breakers = {svc: CircuitBreaker(svc, clock, metrics=self.metrics) for svc in self.config.pools if svc != "llm"}
        self.queue = IntegrationQueue(clock, metrics=self.metrics, seed=seed)
        self.handoff = HandoffQueue(clock, agents=self.config.human_agents, handle_time_s=self.config.handoff_handle_time_s, metrics=self.metrics)
        self.active: dict[str, CallContext] = {}
        self._traces: dict[str, CallTrace] = {}

    # ------------------------------------------------------------------ services for stages
    def pool(self, region: str, service: str) -> ConnectionPool:
        return self.pools[service]

    def template(self, intent: str, facts: dict) -> str:
        return TEMPLATES.get(intent, "Let me help you with that.")

    async def call_integration(self, region: str, action: IntegrationAction) -> IntegrationResult:
        """One connector call through the region's pool for that system; failures come back as results."""
        connector = self.engines.connectors.get(action.system)
        if connector is None:
            return IntegrationResult(False, error=f"no connector for {action.system}", status=503)
        pool = self.pool(region, action.system)
        breaker = self.breakers.get(action.system)
        if breaker is not None and not breaker.allow(1):
            self.metrics.integration_call(region, action.system, action.operation, 0.0, False)
            return IntegrationResult(False, error=f"{action.system}: circuit open", status=503)
        t0 = self.clock.now()
        try:
            async with pool.connection():
                result = await connector.execute(action)
        except PoolTimeout as exc:
            result = IntegrationResult(False, error=str(exc), status=504)
        except Exception as exc:
            result = IntegrationResult(False, error=f"{type(exc).__name__}: {exc}", status=502)
        if breaker is not None:
            breaker.record(int(result.ok), int(not result.ok))
        self.metrics.integration_call(region, action.system, action.operation, self.clock.now() - t0, result.ok)
        return result

    # ------------------------------------------------------------------ calls and turns
    def start_call(self, *, region: str | None = None, language: str = "en", customer_id: str = "", channel: str = "webrtc", call_id: str | None = None) -> CallContext:
        origin = region or self.regions.names[0]
        ctx = CallContext(call_id=call_id or uuid.uuid4().hex, origin_region=origin, region=origin, language=language, customer_id=customer_id or uuid.uuid4().hex[:12], channel=channel, scenario=self.config.scenario, started_at=self.clock.now())
        self.active[ctx.call_id] = ctx
        self._traces[ctx.call_id] = OtelCallTrace(self.tracing, ctx) if self.tracing is not None else CallTrace(ctx.call_id, ctx.trace_id, ctx.started_at)
        self.metrics.call_started(origin, channel)
        return ctx

    async def run_turn(self, ctx: CallContext, utterance: Utterance) -> TurnResult:
        clock = self.clock
        begin = utterance.ended_at or clock.now()
        turn = Turn(ctx, utterance, self.controller.policy, begin, region=ctx.region)
        ctx.levels_seen.add(turn.policy.level.name)
        trace = self._traces.get(ctx.call_id) or CallTrace(ctx.call_id, ctx.trace_id, ctx.started_at)
        turn_span = trace.begin_turn(utterance.turn, begin)
        # engines note when their work really ran (pipeline.work); a caller may have begun the notes
        work, work_token = current_work(), None
        if work is None:
            work, work_token = begin_turn_work()
        work.trace, work.turn_span = trace, turn_span
        for stage in self.stages:
            if turn.done and not stage.always:
                continue
            t0 = clock.now()
            work.stage = stage.name
            status = "ok"
            try:
                await stage.run(turn, self)
            except Exception as exc:
                status = "error"
                turn.failed_stage = turn.failed_stage or stage.name
                turn.error = f"{type(exc).__name__}: {exc}"
                turn.done = True
                log.debug("stage %s failed on call %s: %s", stage.name, ctx.call_id, exc)
            took = clock.now() - t0
            turn.stage_s[stage.name] = took
            spans = work.spans(stage.name, t0, took)
            self.metrics.stage(stage.name, turn.region or ctx.origin_region, sum(d for _, d, _ in spans), status)
            for start, dur, extra in spans:
                attrs = {"intent": turn.intent_name} if stage.name == "nlu" else {}
                trace.stage(turn_span, stage.name, start, dur, status, {**attrs, **extra} or None)
        work.stage = ""
        if work_token is not None:
            end_turn_work(work_token)
        latency = clock.now() - begin
        status = "error" if turn.failed_stage else ("handoff" if turn.handoff_reason else "ok")
        trace.end_turn(turn_span, latency, status, {"intent": turn.intent_name, "reply_source": turn.reply_source, "degradation_level": turn.policy.level.name})
        reply = turn.reply.text if turn.reply else ""
        ctx.turns.append(TurnRecord(utterance.turn, turn.transcript.text if turn.transcript else "", turn.intent_name, reply, latency * 1000, status, turn.policy.level.name))
        self.metrics.turn(turn.region or ctx.origin_region, latency, status, turn.policy.level.name)
        return TurnResult(ctx.call_id, utterance.turn, turn.transcript.text if turn.transcript else "", turn.intent_name, turn.intent.confidence if turn.intent else 0.0, reply, turn.reply_source, turn.spoken, turn.handoff_reason, status, turn.failed_stage, turn.error, latency, dict(turn.stage_s), turn.policy.level.name)

    def end_call(self, ctx: CallContext, outcome: str | None = None) -> dict:
        """Close the call and write its record (and spans) through the sink. Returns the record."""
        if ctx.ended:
            return {}
        ctx.ended = True
        self.active.pop(ctx.call_id, None)
        now = self.clock.now()
        if outcome is None:
            outcome = "handoff" if ctx.handoff_reason else ("completed" if ctx.turns else "silence")
        lat = sorted(t.latency_ms for t in ctx.turns)
        record = call_record(ctx, now, outcome, lat)
        trace = self._traces.pop(ctx.call_id, None)
        if isinstance(trace, OtelCallTrace):
            trace.finish_call(now, outcome, ctx, record["degradation_level"])  # writes the calls row
        elif self.sink is not None:
            self.sink.write("calls", [record])
            if trace is not None:
                self.sink.write("spans", trace.finish(now, outcome, ctx))
        self.metrics.call_ended(ctx.origin_region, ctx.channel, outcome, now - ctx.started_at, len(ctx.turns))
        return record

    async def run_background(self, interval_s: float = 1.0) -> None:
        """What a live pipeline runs beside its calls until cancelled: the once-a-second `tick`
        (health checks, pool saturation response, gauges) and the integration queue's worker."""
        import asyncio

        worker = asyncio.ensure_future(self.queue.run_worker(lambda action: self.call_integration(self.regions.names[0], action)))
        try:
            while True:
                self.tick()
                await self.clock.sleep(interval_s)
        finally:
            worker.cancel()

    def tick(self, now: float | None = None) -> None:
        """Once per second: health checks, pool saturation response, queue/handoff/cache gauges."""
        now = self.clock.now() if now is None else now
        self.regions.tick(now)
        self.pools.tick(now)
        self.handoff.tick(now)
        self.queue.publish(now)
        self.caches.publish()
        for b in self.breakers.values():
            b.publish()
        self.metrics.tick(now, self)


def _pct(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    k = min(len(sorted_values) - 1, max(0, int(round(q * (len(sorted_values) - 1)))))
    return float(sorted_values[k])


def call_record(ctx: CallContext, ended_at: float, outcome: str, sorted_latency_ms: list[float]) -> dict:
    return {
        "call_id": ctx.call_id,
        "started_ms": int(ctx.started_at * 1000),
        "ended_ms": int(ended_at * 1000),
        "region": ctx.origin_region,
        "language": ctx.language,
        "scenario": ctx.scenario,
        "channel": ctx.channel,
        "intents": ctx.intents,
        "outcome": outcome,
        "handoff": 1 if ctx.handoff_reason else 0,
        "handoff_reason": ctx.handoff_reason,
        "turns": len(ctx.turns),
        "latency_p50_ms": _pct(sorted_latency_ms, 0.5),
        "latency_p95_ms": _pct(sorted_latency_ms, 0.95),
        "latency_max_ms": float(sorted_latency_ms[-1]) if sorted_latency_ms else 0.0,
        "degradation_level": max(ctx.levels_seen, key=lambda n: ["NORMAL", "CACHED_RESPONSES", "INTEGRATIONS_QUEUED", "REGION_FAILOVER", "HUMAN_HANDOFF"].index(n)) if ctx.levels_seen else "NORMAL",
        "transcript": ctx.transcript_text(),
        "trace_id": ctx.trace_id,
    }
