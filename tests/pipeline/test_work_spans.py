"""Stage spans drawn from when the work ran (pipeline.work): the runner on a virtual clock with the
simulated engines, one of which did its work before the turn asked for it (as Whisper does from the
caller's first pause), and integration calls noted where they happened."""

from __future__ import annotations

import asyncio

import pytest

from pipeline.engines import IntegrationAction, Utterance
from pipeline.runner import Pipeline
from pipeline.simulation.driver import run_on_virtual_clock
from pipeline.simulation.engines import simulated_engines
from pipeline.simulation.scenario import Engines as EngineModels
from pipeline.work import TurnWork, begin_turn_work, current_work, end_turn_work, note_work
from telemetry.clock import VirtualClock


class RowSink:
    """What the runner writes at the end of a call, kept by table (the sink's write protocol)."""

    def __init__(self) -> None:
        self.tables: dict[str, list[dict]] = {}

    def write(self, table: str, rows) -> None:
        if isinstance(rows, dict):  # a batch as columns
            names = list(rows)
            rows = [dict(zip(names, values, strict=True)) for values in zip(*(rows[n] for n in names), strict=True)]
        self.tables.setdefault(table, []).extend(rows)

    def write_columns(self, table: str, columns: dict) -> None:
        self.write(table, columns)


class SpeculativeSTT:
    """The simulated STT engine, but its decode ran 120 ms before the turn asked, taking 80 ms."""

    def __init__(self, inner, clock) -> None:
        self.inner, self.clock, self.name = inner, clock, inner.name

    async def transcribe(self, utterance):
        transcript = await self.inner.transcribe(utterance)
        now = self.clock.now()
        note_work("stt", now - 0.120, now - 0.040, speculative=True)
        return transcript


def _pipeline():
    clock = VirtualClock(1_700_000_000.0)
    engines = simulated_engines(EngineModels(fallback_rate=0.0), clock, 3)
    engines.nlu.meant["where is my order"] = "order_status"
    engines.stt = SpeculativeSTT(engines.stt, clock)
    sink = RowSink()
    return clock, Pipeline(engines, clock=clock, sink=sink), sink


def test_a_stage_span_covers_work_noted_before_the_stage_ran_and_others_keep_the_runners_timing():
    clock, p, sink = _pipeline()
    work = TurnWork()

    async def call():
        ctx = p.start_call()
        _, token = begin_turn_work(work)
        try:
            await p.run_turn(ctx, Utterance(ctx.call_id, 1, scripted_text="where is my order", ended_at=clock.now() - 0.2))
        finally:
            end_turn_work(token)
        # after the turn, a span can still be added under it (an interruption of the reply)
        assert work.add_span("interruption", clock.now(), clock.now() + 0.05, "ok", {"reaction_ms": 50})
        p.end_call(ctx)

    asyncio.run(run_on_virtual_clock(clock, call()))
    if hasattr(getattr(p, "tracing", None), "flush"):
        p.tracing.flush()  # spans batched by a tracer
    spans = {(r["turn"], r["name"]): r for r in sink.tables["spans"]}
    stt = spans[(1, "stt")]
    assert stt["duration_ms"] == pytest.approx(80.0, abs=0.01)
    note = work.of("stt")[0]
    assert abs(stt["start_us"] - note.start * 1_000_000) <= 1
    assert dict(zip(stt["attr_keys"], stt["attr_values"], strict=True))["work_items"] == "1"
    # the classifier noted nothing: its span is the runner's own timing of the stage
    nlu = spans[(1, "nlu")]
    assert nlu["duration_ms"] > 0 and not work.of("nlu")
    assert (1, "interruption") in spans and spans[(1, "interruption")]["duration_ms"] == pytest.approx(50.0, abs=0.01)


def test_integration_calls_are_one_span_each_wherever_they_happened():
    work = TurnWork()
    _, token = begin_turn_work(work)
    try:
        work.stage = "response"
        note_work("integrations", 10.0, 10.02, system="orders", operation="order_status")
        work.stage = "integrations"
        note_work("integrations", 10.5, 10.51, system="orders", operation="create_return")
    finally:
        end_turn_work(token)
    spans = work.spans("integrations", 10.49, 0.03)
    assert [(round(s, 3), round(d, 3), a["operation"], a["during"]) for s, d, a in spans] == [
        (10.0, 0.02, "order_status", "response"), (10.5, 0.01, "create_return", "integrations")]
    # a stage with no notes keeps the runner's timing; outside a turn, a note goes nowhere
    assert work.spans("tts", 11.0, 0.2) == [(11.0, 0.2, {})]
    assert current_work() is None
    note_work("stt", 1.0, 2.0)  # no turn: nothing to note it on, and no error


def test_the_runner_notes_integration_calls_of_a_real_connector_shape():
    """Pipeline.call_integration through a connector that notes its HTTP time: the span is the call's."""
    clock, p, sink = _pipeline()

    class NotingConnector:
        system = "orders"

        async def execute(self, action):
            from pipeline.engines import IntegrationResult

            start = clock.now()
            await clock.sleep(0.030)
            note_work("integrations", start, clock.now(), system="orders", operation=action.operation)
            return IntegrationResult(True, {"order_id": "A1"})

    p.engines.connectors["orders"] = NotingConnector()
    work = TurnWork()

    async def go():
        _, token = begin_turn_work(work)
        try:
            await p.call_integration("primary", IntegrationAction("orders", "order_status"))
        finally:
            end_turn_work(token)

    asyncio.run(run_on_virtual_clock(clock, go()))
    (note,) = work.of("integrations")
    assert note.duration_s == pytest.approx(0.030, abs=1e-6)
