"""The per-call turn runner and the batch simulator run the same stages (`Stage.run` and
`Stage.run_batch`), so the same seeded callers must come out alike: how turns end (answered, handed
over, failed), how answers are made (response cache, template, LLM), the response cache's hit ratio,
and the turn latency distribution.

Both runs use the `baseline` scenario's engine models, intent mix, languages and repeat callers at a
load that leaves the pools idle. The per-call side is driven like a test caller: each turn says one
of 40 phrasings of an intent drawn from the scenario's mix (product questions name a product drawn
like the simulator's), the last turn says goodbye; as many callers as the simulator holds, for as long.
Both forms draw the same latency models, the media edge's transit and a canned answer's render time
included (`Engines.edge` / `Engines.render` in the per-call form). Known, small difference: the
simulator starts mid-day with calls already in progress; the tolerances below leave room for that and
for sampling noise, and nothing more."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from pipeline.engines import FALLBACK_INTENT, Utterance
from pipeline.runner import Pipeline
from pipeline.simulation.driver import run_on_virtual_clock
from pipeline.simulation.engines import simulated_engines
from pipeline.simulation.scenario import load_scenario
from pipeline.simulation.simulator import GREETING_S, Simulation, pipeline_config
from telemetry.clock import VirtualClock

SEED = 5
CALLS = 400  # concurrent calls in the simulator; the runner drives the same callers one by one
SIM_SECONDS = 240


class RecordedSimulation(Simulation):
    """The simulator, keeping each turn's end as the stages left it."""

    def __init__(self, *a, **k) -> None:
        super().__init__(*a, **k)
        self.turn_ends: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

    def _record_turns(self, b, level):
        latency = super()._record_turns(b, level)
        self.turn_ends.append((latency.copy(), b.route.copy(), b.handoff_reason.copy(), b.failed_stage.copy()))
        return latency


def simulated_turns(sc):
    sim = RecordedSimulation(sc, seed=SEED)
    sim.run(until=SIM_SECONDS)
    latency, route, handoff, failed = (np.concatenate(x) for x in zip(*sim.turn_ends, strict=True))
    return summarise(latency, route, handoff, failed, sim.pipeline.caches["responses"].hit_ratio)


def per_call_turns(sc):
    clock = VirtualClock(sc.start)
    engines = simulated_engines(sc.engines, clock, SEED)
    pipe = Pipeline(engines, clock=clock, config=pipeline_config(sc), seed=SEED)
    rng = np.random.default_rng(SEED)
    names = [n for n in sc.intents if n != FALLBACK_INTENT]
    mix = np.array([sc.intents[n] for n in names], float)
    mix /= mix.sum()
    langs = list(sc.caller.languages)
    lang_p = np.array(list(sc.caller.languages.values()), float)
    lang_p /= lang_p.sum()
    regions = [r.name for r in sc.regions]
    region_p = np.array([r.weight for r in sc.regions], float)
    region_p /= region_p.sum()
    rows: list[tuple[float, str, str, str]] = []

    def phrase(intent: str) -> str:
        if intent == "product_question":  # the product cache is keyed by what was asked
            return f"{intent} {min(int(rng.zipf(1.2)), sc.products)}"
        return f"{intent} {int(rng.integers(0, 40))}"

    async def one_call() -> None:
        lang = langs[rng.choice(len(langs), p=lang_p)]
        customer = min(int(rng.zipf(1.3)), sc.caller.customers) + int(rng.integers(0, 3)) * sc.caller.customers
        ctx = pipe.start_call(region=regions[rng.choice(len(regions), p=region_p)], language=lang, customer_id=str(customer))
        turns = int(np.clip(rng.geometric(1.0 / sc.caller.turns_mean), 1, 40))
        await clock.sleep(GREETING_S)
        for t in range(1, turns + 1):
            intent = "goodbye" if t == turns else names[rng.choice(len(names), p=mix)]
            text = phrase(intent)
            engines.nlu.meant[text] = intent
            await clock.sleep(float(rng.lognormal(sc.caller.utterance.mu, sc.caller.utterance.sigma)))
            r = await pipe.run_turn(ctx, Utterance(ctx.call_id, t, ended_at=clock.now(), language=lang, scripted_text=text))
            rows.append((r.latency_s, "" if r.handoff_reason or r.failed_stage else r.reply_source, r.handoff_reason, r.failed_stage))
            if r.handoff_reason or r.status == "error":
                break
            # the agent speaks its reply, the caller pauses, then speaks again
            await clock.sleep(float(rng.lognormal(sc.caller.reply_audio.mu, sc.caller.reply_audio.sigma) + rng.lognormal(sc.caller.pause.mu, sc.caller.pause.sigma)))
        pipe.end_call(ctx)

    async def caller(end: float) -> None:
        while clock.now() < end:  # a closed loop, like the simulator's: a call that ends is replaced
            await one_call()

    async def callers() -> None:
        end = clock.now() + SIM_SECONDS
        await asyncio.gather(*(caller(end) for _ in range(CALLS)))

    asyncio.run(run_on_virtual_clock(clock, callers()))
    latency, route, handoff, failed = (np.array(x) for x in zip(*rows, strict=True))
    return summarise(latency, route, handoff, failed, pipe.caches["responses"].hit_ratio)


def summarise(latency, route, handoff, failed, cache_hit_ratio) -> dict:
    answered = (handoff == "") & (failed == "")
    lat = latency[answered] * 1000
    return {
        "turns": len(latency),
        "handed_over": float((handoff != "").mean()),
        "caller_asked_for_a_human": float((handoff == "caller_request").mean()),
        "failed": float((failed != "").mean()),
        **{f"answered_from_{r}": float((route[answered] == r).mean()) for r in ("cache", "template", "llm")},
        "response_cache_hit_ratio": float(cache_hit_ratio),
        "latency_p50_ms": float(np.percentile(lat, 50)),
        "latency_p95_ms": float(np.percentile(lat, 95)),
    }


@pytest.mark.slow
def test_the_runner_and_the_simulator_agree_on_the_same_seeded_calls():
    sc = load_scenario("baseline").scaled(calls=CALLS)
    batch = simulated_turns(sc)
    one_by_one = per_call_turns(sc)
    print({k: (round(batch[k], 4), round(one_by_one[k], 4)) for k in batch})
    assert batch["turns"] > 5_000 and one_by_one["turns"] > 5_000
    for share in ("handed_over", "caller_asked_for_a_human", "failed"):
        assert one_by_one[share] == pytest.approx(batch[share], abs=0.01), share
    for share in ("answered_from_cache", "answered_from_template", "answered_from_llm"):
        assert one_by_one[share] == pytest.approx(batch[share], abs=0.04), share
    assert one_by_one["response_cache_hit_ratio"] == pytest.approx(batch["response_cache_hit_ratio"], abs=0.08)
    for q in ("latency_p50_ms", "latency_p95_ms"):
        assert one_by_one[q] == pytest.approx(batch[q], rel=0.05), q
