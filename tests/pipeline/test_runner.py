"""The turn runner (one turn at a time, asyncio, as the real-media path uses it) with simulated
engines on a virtual clock: stages in call-flow order, real pools under contention, the degradation
policy, integration failures queued, a crashed stage failing only its turn, handoff with context, and
the call record and spans in the store."""

from __future__ import annotations

import asyncio

import pytest

from pipeline.engines import EngineError, Utterance
from pipeline.runner import Pipeline, PipelineConfig, Stage, UnderstandingStage
from pipeline.simulation.driver import run_on_virtual_clock
from pipeline.simulation.engines import simulated_engines
from pipeline.simulation.scenario import Engines as EngineModels
from telemetry.clock import VirtualClock

LINES = {
    "where is my order": "order_status",
    "what time do you open": "store_hours",
    "i want to talk to a person": "talk_to_human",
    "i want to return these shoes": "return_request",
}


def make(config=None, seed=1, **kw):
    clock = VirtualClock(1_700_000_000.0)
    engines = simulated_engines(EngineModels(fallback_rate=0.0), clock, seed)
    engines.nlu.meant.update(LINES)
    return clock, Pipeline(engines, clock=clock, config=config, **kw)


def say(ctx, n, text, clock):
    return Utterance(ctx.call_id, n, scripted_text=text, ended_at=clock.now())


def run(clock, coro):
    return asyncio.run(run_on_virtual_clock(clock, coro))


def test_stages_run_in_call_flow_order_and_latency_adds_up():
    clock, p = make()
    assert [s.name for s in p.stages] == ["edge", "stt", "nlu", "response", "integrations", "tts", "handoff"]

    async def call():
        ctx = p.start_call()
        return await p.run_turn(ctx, say(ctx, 1, "where is my order", clock))

    r = run(clock, call())
    assert r.status == "ok" and r.intent == "order_status" and r.reply
    assert r.latency_s == pytest.approx(sum(r.stage_s.values()), rel=1e-6)
    assert r.stage_s["stt"] > 0 and r.stage_s["response"] > 0 and r.stage_s["tts"] > 0


def test_cached_responses_level_answers_common_intents_without_the_llm():
    clock, p = make()
    p.controller.request("CACHED_RESPONSES", "test")
    calls = []
    orig = p.engines.llm.generate

    async def counting(req):
        calls.append(req.intent)
        return await orig(req)

    p.engines.llm.generate = counting

    async def call():
        ctx = p.start_call()
        return await p.run_turn(ctx, say(ctx, 1, "where is my order", clock))

    r = run(clock, call())
    assert r.reply_source == "template" and calls == []


def test_failed_integration_is_queued_and_the_turn_still_answers():
    clock, p = make()
    p.engines.connectors["orders"].extra_error_rate = 1.0

    async def call():
        ctx = p.start_call()
        return await p.run_turn(ctx, say(ctx, 1, "i want to return these shoes", clock))

    r = run(clock, call())
    assert r.status == "ok" and r.reply
    assert len(p.queue) == 1  # create_return waits for a retry


def test_crashed_stage_fails_the_turn_not_the_call():
    clock, p = make()

    class Broken(Stage):
        name = "nlu"

        async def run(self, turn, pipe):
            raise EngineError("model crashed")

    p.stages[2] = Broken()

    async def call():
        ctx = p.start_call()
        first = await p.run_turn(ctx, say(ctx, 1, "where is my order", clock))
        p.stages[2] = UnderstandingStage()
        second = await p.run_turn(ctx, say(ctx, 2, "where is my order", clock))
        return first, second, p.end_call(ctx)

    first, second, record = run(clock, call())
    assert first.status == "error" and first.failed_stage == "nlu" and "model crashed" in first.error
    assert second.status == "ok"
    assert record["turns"] == 2 and record["outcome"] == "completed"


def test_request_for_a_human_hands_over_with_transcript_and_intents():
    clock, p = make()

    async def call():
        ctx = p.start_call(customer_id="cust-42")
        await p.run_turn(ctx, say(ctx, 1, "where is my order", clock))
        r = await p.run_turn(ctx, say(ctx, 2, "i want to talk to a person", clock))
        return r, p.end_call(ctx)

    r, record = run(clock, call())
    assert r.handoff_reason == "caller_request" and r.status == "handoff"
    req = p.handoff.recent[-1]
    assert req.reason == "caller_request"
    assert req.intents == ["order_status", "talk_to_human"]
    assert req.transcript[0]["caller"] == "where is my order"
    assert req.context["customer_id"] == "cust-42"
    assert record["outcome"] == "handoff" and record["handoff"] == 1


def test_pool_contention_makes_turns_wait_and_is_reported():
    config = PipelineConfig(pools={"crm": {}, "orders": {"size": 2, "max_size": 2, "acquire_timeout_s": 30}, "ticketing": {}, "catalog": {}, "llm": {"size": 50, "max_size": 50}})
    clock, p = make(config)

    async def many():
        ctxs = [p.start_call() for _ in range(20)]
        return await asyncio.gather(*(p.run_turn(c, say(c, 1, "where is my order", clock)) for c in ctxs))

    results = run(clock, many())
    pool = p.pools["orders"]
    assert all(r.status == "ok" for r in results)
    assert pool.acquired_total >= 20 and pool.wait_sum_s > 0
    latencies = sorted(r.latency_s for r in results)
    # the last in line waited for ~9 requests ahead of it on each of the two connections
    hold_s = EngineModels().connectors["orders"].latency.median_ms / 1000
    assert latencies[-1] - latencies[0] > 5 * hold_s


def test_pool_acquire_times_out_on_the_injected_clock():
    config = PipelineConfig(pools={"crm": {}, "orders": {"size": 1, "max_size": 1, "acquire_timeout_s": 0.5}, "ticketing": {}, "catalog": {}, "llm": {}})
    clock, p = make(config)
    pool = p.pools["orders"]

    async def hog_and_wait():
        await pool.acquire()
        t0 = clock.now()
        with pytest.raises(Exception, match="no connection"):
            await pool.acquire()
        return clock.now() - t0

    waited = run(clock, hog_and_wait())
    assert waited == pytest.approx(0.5)
    assert pool.timeouts_total == 1


def test_call_record_and_spans_reach_the_store(store, tmp_path):
    from telemetry.instruments import Telemetry
    from telemetry.sink import Sink

    sink = Sink(store, spool_dir=tmp_path / "spool")
    clock = VirtualClock(1_700_000_000.0)
    tel = Telemetry(clock=clock, sink=sink, trace_sample_ratio=1.0, seed=1)
    engines = simulated_engines(EngineModels(fallback_rate=0.0), clock, 1)
    engines.nlu.meant.update(LINES)
    p = Pipeline(engines, clock=clock, sink=sink, telemetry=tel)

    async def call():
        ctx = p.start_call(region="primary", language="en")
        await p.run_turn(ctx, say(ctx, 1, "what time do you open", clock))
        await p.run_turn(ctx, say(ctx, 2, "where is my order", clock))
        return p.end_call(ctx)

    record = run(clock, call())
    tel.flush()
    sink.flush()
    sink.close()
    calls = store.query("SELECT call_id, turns, outcome, intents, trace_id FROM calls")
    assert list(calls["call_id"]) == [record["call_id"]]
    assert int(calls["turns"][0]) == 2 and calls["outcome"][0] == "completed"
    assert list(calls["intents"][0]) == ["store_hours", "order_status"]
    spans = store.query("SELECT name, count() AS n FROM spans WHERE call_id = {c:String} GROUP BY name", {"c": record["call_id"]})
    by = dict(zip(spans["name"], spans["n"], strict=True))
    assert by.get("conversation") == 1 and by.get("turn") == 2 and by.get("stt") == 2 and by.get("response") == 2


def test_background_work_retries_queued_actions_once_the_downstream_recovers():
    clock, p = make()
    conn = p.engines.connectors["orders"]
    conn.extra_error_rate = 1.0

    async def scenario():
        background = asyncio.ensure_future(p.run_background())
        ctx = p.start_call()
        await p.run_turn(ctx, say(ctx, 1, "i want to return these shoes", clock))
        assert len(p.queue) == 1
        await clock.sleep(5)
        conn.extra_error_rate = 0.0  # the order service is back
        await clock.sleep(120)
        background.cancel()
        return p.queue

    q = run(clock, scenario())
    assert len(q) == 0 and q.succeeded == 1 and q.retried >= 1


def test_llm_metrics_carry_the_engines_provider_and_the_model_that_answered():
    from pipeline.engines import ResponseText
    from telemetry.instruments import Telemetry

    clock = VirtualClock(1_700_000_000.0)
    tel = Telemetry(clock=clock)
    engines = simulated_engines(EngineModels(fallback_rate=0.0), clock, 1)
    engines.nlu.meant.update({"my parcel never came, can you explain why": "order_status"})

    class ProviderLLM:
        name = "openai-chat"  # a real engine: no `provider`, its name is the label

        async def generate(self, request):
            await clock.sleep(0.2)
            return ResponseText("It ships tomorrow.", 0.2, 30, 5, "gpt-4o-mini")

    engines.llm = ProviderLLM()
    p = Pipeline(engines, clock=clock, telemetry=tel)

    async def call():
        ctx = p.start_call()
        return await p.run_turn(ctx, say(ctx, 1, "my parcel never came, can you explain why", clock))

    r = run(clock, call())
    assert r.reply_source == "llm"
    get = tel.registry.get_sample_value
    assert get("voxwatch_llm_requests_total", {"provider": "openai-chat", "model": "gpt-4o-mini"}) == 1.0
    assert get("voxwatch_llm_requests_total", {"provider": "simulated", "model": "sim-llm-small"}) is None
