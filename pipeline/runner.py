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

import numpy as np

from pipeline.actions import IntegrationQueue
from pipeline.caches import CacheSet, TTLCache
from pipeline.circuit import CircuitBreaker
from pipeline.context import CallContext, TurnRecord
from pipeline.degradation import DegradationController, DegradationLevel, DegradationPolicy
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
from pipeline.work import begin_turn_work, current_work, end_turn_work
from telemetry.traces import CallTrace, CallTracing

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


@dataclass
class TurnBatch:
    """Many turns at once, as numpy columns: the batch form of `Turn`, for the load simulator.

    The simulator fills the call state (`slots` into its call rows, `origin`, `language`, `customer`,
    `misunderstandings`, `history_known`, ...), runs the pipeline's stages over the batch with
    `stage.run_batch(batch, sim)` and reads the results back; `sim` provides the batched services
    the stages need (latency draws from the engine models, requests served through the real pools,
    the caller's intents), as `pipe` does for one turn."""

    slots: np.ndarray
    ts: np.ndarray  # when each caller stopped speaking
    now: float
    t_rel: float  # scenario seconds
    policy: DegradationPolicy
    origin: np.ndarray
    language: np.ndarray
    customer: np.ndarray
    call_seq: np.ndarray
    misunderstandings: np.ndarray
    history_known: np.ndarray
    last: np.ndarray  # the caller's last turn (a goodbye)
    served: np.ndarray = None
    edge_ok: np.ndarray = None
    live: np.ndarray = None  # still going through the stages
    answering: np.ndarray = None
    intent: np.ndarray = None
    route: np.ndarray = None  # how the answer was made: cache | template | llm | fallback
    reply_audio: np.ndarray = None
    cum: np.ndarray = None  # seconds since the end of speech
    stage_lat: dict = field(default_factory=dict)
    failed_stage: np.ndarray = None
    handoff_reason: np.ndarray = None

    @property
    def n(self) -> int:
        return len(self.slots)

    def advance(self, stage: str, seconds: np.ndarray) -> None:
        """Record a stage's time for each turn and move the turns' clocks on by it."""
        self.stage_lat[stage] = seconds
        self.cum += seconds


def _tally(names: list[str]) -> dict[str, int]:
    """How many of each, in first-seen order (requests per operation)."""
    out: dict[str, int] = {}
    for x in names:
        out[x] = out.get(x, 0) + 1
    return out


class Stage:
    """One step of a turn. Subclasses set `name` and implement `run` (one turn, the runner) and
    `run_batch` (many turns as numpy columns, the load simulator): the same decisions in two forms."""

    name = "stage"
    always = False  # runs even after an earlier stage ended the turn

    async def run(self, turn: Turn, pipe: Pipeline) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def run_batch(self, batch: TurnBatch, sim) -> None:  # pragma: no cover - interface
        raise NotImplementedError(f"stage {self.name} has no batch form")


class EdgeStage(Stage):
    """Routes the turn to the region serving the call; hands everything off when told to."""

    name = "edge"

    def run_batch(self, b: TurnBatch, sim) -> None:
        m = sim.metrics
        names = sim.region_names
        serving_tab = np.array([sim.serving_region(o) for o in range(len(names))])
        serving = serving_tab[b.origin]
        was = sim.served_by(b.slots)
        moved = (serving >= 0) & (serving != was)
        if moved.any():
            for a, c in zip(was[moved], serving[moved], strict=True):
                # a call whose region died under it loses its in-memory context; an evacuation hands it over
                lost = not sim.pipeline.regions.is_up(names[a])
                m.calls_migrated(names[a], names[c], 1, context_lost=lost)
            sim.move_calls(b.slots[moved], serving[moved])
        b.edge_ok = serving >= 0
        b.served = np.where(b.edge_ok, serving, b.origin).astype(np.int64)
        b.cum = np.zeros(b.n)
        b.advance("edge", sim.draw(sim.engine_models.edge.latency, b.n))
        b.failed_stage = np.full(b.n, "", dtype="U12")  # fixed-width: comparisons stay in C
        b.failed_stage[~b.edge_ok] = "edge"
        b.handoff_reason = np.full(b.n, "", dtype="U16")
        if b.policy.handoff_everything:
            b.handoff_reason[b.edge_ok] = "degradation"
        b.live = b.edge_ok & (b.handoff_reason == "")

    async def run(self, turn: Turn, pipe: Pipeline) -> None:
        serving = pipe.regions.serving(turn.ctx.origin_region)
        if serving is None or not pipe.regions.is_up(serving):
            raise EngineError(f"no region can serve {turn.ctx.origin_region}", kind="unavailable")
        turn.ctx.region = turn.region = serving
        if pipe.engines.edge is not None:
            await pipe.engines.edge.wait()
        if turn.policy.handoff_everything:
            turn.handoff_reason = "degradation"
            turn.done = True


class SpeechToTextStage(Stage):
    name = "stt"

    def run_batch(self, b: TurnBatch, sim) -> None:
        n, rng, eng = b.n, sim.rng, sim.engine_models
        b.intent = sim.caller_intents(b)  # what each caller said (the batch form of the utterance)
        stt = sim.draw(eng.stt.latency, n)
        err = b.live & (rng.random(n) < eng.stt.error_rate)
        b.advance("stt", np.where(b.live, stt, 0.0))
        b.failed_stage[err] = "stt"
        heard = b.live | err
        b.live &= ~err
        conf = np.clip(rng.normal(eng.stt_confidence_mean, 0.06, n), 0.05, 1.0)
        sim.metrics.stt_batch(sim.languages, b.language[heard], stt[heard], conf[b.live], err.sum(), sim.region_names, b.served[heard])

    async def run(self, turn: Turn, pipe: Pipeline) -> None:
        turn.transcript = await pipe.engines.stt.transcribe(turn.utterance)
        pipe.metrics.stt_result(turn.region, turn.transcript)


class UnderstandingStage(Stage):
    name = "nlu"

    def run_batch(self, b: TurnBatch, sim) -> None:
        n, rng, eng = b.n, sim.rng, sim.engine_models
        nlu = sim.draw(eng.nlu.latency, n)
        err = b.live & (rng.random(n) < eng.nlu.error_rate)
        b.advance("nlu", np.where(b.live | err, nlu, 0.0))
        b.failed_stage[err] = "nlu"
        b.live &= ~err
        fallback = b.live & (rng.random(n) < eng.fallback_rate) & ~b.last
        b.intent[fallback] = sim.intents.fallback
        conf = np.where(fallback, rng.uniform(0.15, 0.5, n), rng.uniform(0.6, 0.99, n))
        sim.metrics.nlu_batch(sim.intents.names, b.intent[b.live], conf[b.live], nlu[b.live | err], int(err.sum()), sim.languages, b.language[b.live])
        b.misunderstandings[fallback] += 1
        human = b.live & (b.intent == sim.intents.human)
        b.handoff_reason[human] = "caller_request"
        confused = fallback & (b.misunderstandings >= MISUNDERSTANDINGS_BEFORE_HANDOFF)
        b.handoff_reason[confused] = "misunderstanding"
        b.answering = b.live & ~human & ~confused

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

    def run_batch(self, b: TurnBatch, sim) -> None:
        t0 = b.cum.copy()
        deferred = dict.fromkeys(sim.intents.systems, 0)
        self._history_batch(b, sim, deferred)
        self._lookups_batch(b, sim, deferred)
        for system, k in deferred.items():
            if k:
                sim.metrics.integration_deferred(system, k)
        self._answer_batch(b, sim)
        b.stage_lat["response"] = np.where(b.answering, b.cum - t0, 0.0)
        sim.metrics.response_batch(b.route[b.answering], b.stage_lat["response"][b.answering])

    def _history_batch(self, b: TurnBatch, sim, deferred: dict) -> None:
        """The customer's history: the call's own context, else the cache, else the CRM (or deferred)."""
        need = b.answering & sim.intents.needs_history[b.intent] & ~b.history_known
        if not need.any():
            return
        pipe, m, now = sim.pipeline, sim.metrics, b.now
        cache = pipe.caches["customer_history"]
        idx = np.flatnonzero(need)
        keys = b.customer[idx].tolist()
        hits = np.array([cache.get(k, now, "customer_history") is not None for k in keys], bool)
        b.history_known[idx[hits]] = True
        m.context_loads("cache", np.full(int(hits.sum()), 0.0004))
        miss = idx[~hits]
        shed = b.policy.integrations_queued or pipe.pools["crm"].should_shed(now)
        if len(miss) and shed:
            deferred["crm"] += len(miss)
        elif len(miss):
            holds = sim.draw(sim.engine_models.connectors["crm"].latency, len(miss), sim.hold_factor("crm"))
            spent, ok, _ = sim.pool_requests("crm", b.ts[miss] + b.cum[miss], holds, {"customer_history": len(miss)})
            b.cum[miss] += spent
            m.context_loads("crm", spent)
            m.customer_lookups(ok)
            for j, k in zip(miss[ok].tolist(), b.customer[miss[ok]].tolist(), strict=True):
                cache.put(k, {"customer": k}, now)
                b.history_known[j] = True
            sim.totals["integration_errors"] += int((~ok).sum())

    def _lookups_batch(self, b: TurnBatch, sim, deferred: dict) -> None:
        """The lookup the answer needs (order status, billing account, product info): cache first."""
        pipe, tab, now = sim.pipeline, sim.intents, b.now
        lk_sys = tab.lookup_system[b.intent]
        need = b.answering & (lk_sys >= 0)
        prod = need & tab.lookup_cached[b.intent]
        if prod.any():
            cache = pipe.caches["product_info"]
            idx = np.flatnonzero(prod)
            keys = sim.product_keys(len(idx))
            hits = np.array([cache.get(k, now, "product_question") is not None for k in keys], bool)
            need[idx[hits]] = False
            for k in [k for k, h in zip(keys, hits, strict=True) if not h]:
                cache.put(k, {"product": k}, now)  # filled by the lookup below
        for si, system in enumerate(tab.systems):
            idx = np.flatnonzero(need & (lk_sys == si))
            if not len(idx):
                continue
            ops_of = [tab.lookup_op[i] for i in b.intent[idx].tolist()]
            if b.policy.integrations_queued:
                sim.enqueue_actions(system, ops_of, b, idx)
                deferred[system] += len(idx)
                sim.totals["queued_actions"] += len(idx)
                continue
            holds = sim.draw(sim.engine_models.connectors[system].latency, len(idx), sim.hold_factor(system))
            spent, ok, _ = sim.pool_requests(system, b.ts[idx] + b.cum[idx], holds, _tally(ops_of))
            b.cum[idx] += spent
            sim.totals["integration_errors"] += int((~ok).sum())

    def _answer_batch(self, b: TurnBatch, sim) -> None:
        """The answer: the response cache, a template when the level says so, else the LLM."""
        n, rng, pipe, tab, now, policy = b.n, sim.rng, sim.pipeline, sim.intents, b.now, b.policy
        eng = sim.engine_models
        cacheable = b.answering & tab.cacheable[b.intent]
        b.route = np.full(n, "", dtype="U8")
        fill = {}
        if cacheable.any():
            cache = pipe.caches["responses"]
            idx = np.flatnonzero(cacheable)
            variant = rng.integers(0, 40, len(idx))
            keys = list(zip(b.intent[idx].tolist(), b.language[idx].tolist(), variant.tolist(), strict=True))
            hits = np.array([cache.get(k, now, tab.names[k[0]]) is not None for k in keys], bool)
            b.route[idx[hits]] = "cache"
            fill = {j: k for j, k, h in zip(idx.tolist(), keys, hits.tolist(), strict=True) if not h}
        without_llm = np.array([policy.answers_without_llm(name) for name in tab.names], bool)
        templ = b.answering & (b.route == "") & without_llm[b.intent]
        b.route[templ] = "template"
        use_llm = b.answering & (b.route == "")
        b.route[use_llm] = "llm"
        tmpl_lat = sim.draw(eng.template.latency, n)
        quick = (b.route == "cache") | (b.route == "template")
        b.cum[quick] += tmpl_lat[quick]
        if use_llm.any():
            idx = np.flatnonzero(use_llm)
            waited, err = sim.llm_requests(b.ts[idx] + b.cum[idx])
            b.cum[idx] += waited
            b.route[idx[err]] = "fallback"
            if fill:
                cache = pipe.caches["responses"]
                for j in idx[~err].tolist():
                    key = fill.get(j)
                    if key is not None:
                        cache.put(key, "answer", now)
        sim.totals["llm_avoided"] += int(quick.sum())
        if policy.serve_common_from_cache:
            sim.metrics.degradation_cached(tab.names, b.intent[templ])

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
                if pipe.engines.render is not None:
                    await pipe.engines.render.wait()
                turn.reply, turn.reply_source = ResponseText(cached), "cache"
                pipe.metrics.response_source(turn.region, intent, "cache")
                return
        if turn.policy.answers_without_llm(intent):
            if pipe.engines.render is not None:
                await pipe.engines.render.wait()
            turn.reply, turn.reply_source = ResponseText(pipe.template(intent, turn.facts)), "template"
            pipe.metrics.response_source(turn.region, intent, "template")
            return
        request = ResponseRequest(turn.ctx.call_id, intent, text, turn.ctx.history(), turn.facts, turn.ctx.language)
        pool = pipe.pool(turn.region, "llm")
        t0 = now()
        async with pool.connection():
            turn.reply = await pipe.engines.llm.generate(request)
        turn.reply_source = "llm"
        pipe.metrics.llm_result(turn.region, turn.reply, now() - t0, provider=llm_provider(pipe.engines.llm))
        pipe.metrics.response_source(turn.region, intent, "llm")
        if s.cacheable:
            pipe.caches["responses"].put(cache_key, turn.reply.text, now())


class IntegrationStage(Stage):
    """Actions after the answer: done now through the pool, or queued; a failure is queued for retry."""

    name = "integrations"

    def run_batch(self, b: TurnBatch, sim) -> None:
        t0 = b.cum.copy()
        tab, pipe = sim.intents, sim.pipeline
        act = tab.action_system[b.intent]
        for si, system in enumerate(tab.systems):
            idx = np.flatnonzero(b.answering & (act == si))
            if not len(idx):
                continue
            ops_of = [tab.action_op[i] for i in b.intent[idx].tolist()]
            if b.policy.integrations_queued or pipe.pools[system].should_shed(b.now):
                sim.enqueue_actions(system, ops_of, b, idx)
                sim.totals["queued_actions"] += len(idx)
                sim.metrics.integration_deferred(system, len(idx))
                continue
            holds = sim.draw(sim.engine_models.connectors[system].latency, len(idx), sim.hold_factor(system))
            spent, ok, _ = sim.pool_requests(system, b.ts[idx] + b.cum[idx], holds, _tally(ops_of))
            b.cum[idx] += spent
            failed = np.flatnonzero(~ok)
            sim.enqueue_actions(system, [ops_of[f] for f in failed.tolist()], b, idx[failed])  # a failed integration never fails the call
            sim.totals["queued_actions"] += len(failed)
            sim.totals["integration_errors"] += len(failed)
        b.stage_lat["integrations"] = b.cum - t0

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

    def run_batch(self, b: TurnBatch, sim) -> None:
        n, rng, eng = b.n, sim.rng, sim.engine_models
        speaking = b.answering.copy()
        tts = sim.draw(eng.tts.latency, n)
        err = speaking & (rng.random(n) < eng.tts.error_rate)
        b.advance("tts", np.where(speaking, tts, 0.0))
        b.failed_stage[err] = "tts"
        b.reply_audio = sim.draw(sim.reply_audio_model, n)
        sim.metrics.tts_batch(sim.languages, b.language[speaking], tts[speaking], b.reply_audio[speaking], int(err.sum()))

    async def run(self, turn: Turn, pipe: Pipeline) -> None:
        if turn.reply is None:
            return
        turn.spoken = await pipe.engines.tts.synthesize(turn.reply.text, language=turn.ctx.language)
        pipe.metrics.tts_result(turn.region, turn.spoken)


class HandoffStage(Stage):
    """Hands the call to a human with its context when a stage asked for it (or a stage failed twice)."""

    name = "handoff"
    always = True

    def run_batch(self, b: TurnBatch, sim) -> None:
        idx = np.flatnonzero(b.handoff_reason != "")
        if len(idx):
            # a handed-over turn reached the edge, so its caller waited the stages' time
            sim.hand_over(idx, b, b.ts + b.cum)

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


def llm_provider(engine) -> str:
    """The provider label of an LLM engine's metrics: its `provider`, else its name."""
    return str(getattr(engine, "provider", "") or getattr(engine, "name", "") or type(engine).__name__)


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
        # per-call traces and the call record: the Telemetry's tracer, or without one a tracer of our
        # own that writes every call's spans and row to our sink when the call ends
        self._own_tracing = telemetry is None or not getattr(telemetry, "enabled", False)
        self.tracing = CallTracing(clock=clock, sink=sink, sample_ratio=1.0, seed=seed) if self._own_tracing else telemetry.traces
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
        self._trace(ctx)
        self.metrics.call_started(origin, channel)
        return ctx

    def _trace(self, ctx: CallContext) -> CallTrace:
        """The call's trace, started on first use (also for a call this pipeline did not start)."""
        trace = self._traces.get(ctx.call_id)
        if trace is None:
            trace = self._traces[ctx.call_id] = self.tracing.start_call(ctx.call_id, region=ctx.origin_region, language=ctx.language, channel=ctx.channel, scenario=ctx.scenario, start=ctx.started_at)
            ctx.trace_id = trace.trace_id  # "" when this call is not sampled
        return trace

    async def run_turn(self, ctx: CallContext, utterance: Utterance) -> TurnResult:
        clock = self.clock
        begin = utterance.ended_at or clock.now()
        turn = Turn(ctx, utterance, self.controller.policy, begin, region=ctx.region)
        ctx.levels_seen.add(turn.policy.level.name)
        trace = self._trace(ctx)
        turn_span = trace.start_turn(begin)
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
                turn_span.record_stage(stage.name, start, start + dur, {**attrs, **extra} or None,
                                       error=None if status == "ok" else status)
        work.stage = ""
        if work_token is not None:
            end_turn_work(work_token)
        latency = clock.now() - begin
        status = "error" if turn.failed_stage else ("handoff" if turn.handoff_reason else "ok")
        turn_span.end(begin + latency, latency_s=latency, error="turn failed" if status == "error" else None, attributes={"intent": turn.intent_name, "reply_source": turn.reply_source, "degradation_level": turn.policy.level.name})
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
        level = max((DegradationLevel[name] for name in ctx.levels_seen), default=DegradationLevel.NORMAL).name
        trace = self._trace(ctx)
        del self._traces[ctx.call_id]
        record = trace.end(outcome, end=now, handoff_reason=ctx.handoff_reason, intents=ctx.intents, degradation_level=level, transcript=ctx.transcript_text())
        if self._own_tracing:
            self.tracing.flush()  # no Telemetry flushes ours: the call's spans and row go now
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
