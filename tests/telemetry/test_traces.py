"""Per-call traces: the conversation -> turn -> stage tree in the spans table, the call record in calls,
times from the injected clock, sampling per call."""

from __future__ import annotations

import numpy as np
import pytest

from telemetry import Telemetry, VirtualClock
from telemetry.sink import Sink
from telemetry.traces import llm_attributes, tool_attributes

T0 = 1_696_323_780.0  # 09:03 UTC, when latency went from 180 ms to 2.4 s


@pytest.fixture
def sink(store, tmp_path):
    s = Sink(store, spool_dir=tmp_path / "spool", flush_interval=60)
    yield s
    s.close()


def one_call(tel: Telemetry, clock: VirtualClock, call_id: str, sampled: bool | None = None):
    call = tel.traces.start_call(call_id, region="us-east", language="en", scenario="incident", sampled=sampled)
    for _ in range(2):
        turn = call.start_turn()
        stt = turn.stage("stt", attributes={"voxwatch.language": "en"})
        clock.advance(0.08)
        stt.end(attributes={"voxwatch.confidence": 0.91})
        t = clock.now()
        turn.record_stage("llm", t, t + 0.15, llm_attributes("local", "qwen-0.5b", 812, 41, 0.09))
        turn.record_stage("tool", t + 0.15, t + 0.35, tool_attributes("lookup_order", "orders"), error="pool_timeout")
        clock.advance(0.4)
        turn.end(latency_s=0.21)
    call.add_intent("order_status")
    clock.advance(1.0)
    return call.end(outcome="completed", degradation_level="normal")


def test_a_sampled_call_writes_its_span_tree_and_call_record(store, sink):
    clock = VirtualClock(T0)
    tel = Telemetry(clock=clock, sink=sink, trace_sample_ratio=1.0)
    row = one_call(tel, clock, "call-001")
    tel.flush()
    sink.flush()

    spans = store.query("SELECT * FROM spans WHERE call_id = 'call-001' ORDER BY start_us, name")
    assert sorted(spans["name"].value_counts().items()) == [
        ("conversation", 1), ("llm", 2), ("stt", 2), ("tool", 2), ("turn", 2)]
    by_id = {r.span_id: r for r in spans.itertuples()}
    conv = spans[spans["name"] == "conversation"].iloc[0]
    assert conv["parent_span_id"] == "" and conv["turn"] == 0
    for r in spans.itertuples():
        if r.name == "turn":
            assert r.parent_span_id == conv["span_id"]
        elif r.name != "conversation":
            parent = by_id[r.parent_span_id]
            assert parent.name == "turn" and parent.turn == r.turn
    assert set(spans["trace_id"]) == {row["trace_id"]}

    # the injected (virtual) clock drives every timestamp
    assert conv["start_us"] == int(T0 * 1_000_000)
    stt = spans[spans["name"] == "stt"].iloc[0]
    assert stt["duration_ms"] == pytest.approx(80.0, abs=1e-3)
    assert conv["duration_ms"] == pytest.approx(2 * 480.0 + 1000.0, abs=1e-3)

    llm = spans[spans["name"] == "llm"].iloc[0]
    attrs = dict(zip(llm["attr_keys"], llm["attr_values"], strict=False))
    assert attrs["gen_ai.system"] == "local" and attrs["gen_ai.usage.input_tokens"] == "812"
    assert attrs["gen_ai.usage.output_tokens"] == "41" and attrs["gen_ai.request.model"] == "qwen-0.5b"
    tool = spans[spans["name"] == "tool"].iloc[0]
    assert tool["status"] == "error"
    assert dict(zip(stt["attr_keys"], stt["attr_values"], strict=False))["voxwatch.confidence"] == "0.91"

    calls = store.query("SELECT * FROM calls WHERE call_id = 'call-001'")
    assert len(calls) == 1
    c = calls.iloc[0]
    assert (c["region"], c["language"], c["outcome"], c["turns"]) == ("us-east", "en", "completed", 2)
    assert list(c["intents"]) == ["order_status"]
    assert c["latency_p95_ms"] == pytest.approx(210.0)
    assert c["started_ms"] == int(T0 * 1000) and c["ended_ms"] == int(T0 * 1000) + 1960
    assert c["trace_id"] == row["trace_id"] != ""


def test_an_unsampled_call_still_writes_its_call_record_but_no_spans(store, sink):
    clock = VirtualClock(T0)
    tel = Telemetry(clock=clock, sink=sink, trace_sample_ratio=0.0)
    one_call(tel, clock, "call-002")
    tel.flush()
    sink.flush()
    assert store.query("SELECT count() AS n FROM spans")["n"][0] == 0
    c = store.query("SELECT trace_id, turns, latency_max_ms FROM calls WHERE call_id = 'call-002'").iloc[0]
    assert c["trace_id"] == "" and c["turns"] == 2 and c["latency_max_ms"] == pytest.approx(210.0)
    assert tel.registry.get_sample_value("voxwatch_trace_calls_recorded_total", {"sampled": "false"}) == 1.0


def test_sampling_keeps_about_the_configured_share_of_calls_and_is_reproducible_with_a_seed():
    def sampled(seed):
        tel = Telemetry(clock=VirtualClock(T0), trace_sample_ratio=0.25, seed=seed)
        return [tel.traces.start_call(f"c{i}").sampled for i in range(2000)]

    a = sampled(11)
    assert 0.20 < sum(a) / len(a) < 0.30
    assert a == sampled(11)


def test_exported_spans_are_counted_by_name(sink):
    clock = VirtualClock(T0)
    tel = Telemetry(clock=clock, sink=sink, trace_sample_ratio=1.0)
    one_call(tel, clock, "call-003")
    tel.flush()
    get = tel.registry.get_sample_value
    assert get("voxwatch_trace_spans_exported_total", {"span": "llm"}) == 2.0
    assert get("voxwatch_trace_spans_exported_total", {"span": "conversation"}) == 1.0


def test_call_and_trace_ids_cannot_become_metric_labels():
    tel = Telemetry()
    with pytest.raises(ValueError, match="unknown label 'call_id'"):
        tel["voxwatch_turn_latency_seconds"].labels(region="eu", call_id="call-001")


def test_disabled_tracing_has_the_same_surface_and_still_builds_the_call_row():
    off = Telemetry.disabled()
    call = off.traces.start_call("x", region="eu")
    assert not call.sampled and call.trace_id == ""
    turn = call.start_turn(start=100.0)
    turn.stage("stt").end()
    turn.record_stage("llm", 100.0, 100.1)
    turn.end(end=100.25)
    row = call.end(outcome="completed", end=101.0)
    assert row["call_id"] == "x" and row["region"] == "eu" and row["turns"] == 1 and row["outcome"] == "completed"
    assert row["latency_max_ms"] == pytest.approx(250.0) and row["trace_id"] == ""


def test_a_tracer_without_telemetry_writes_spans_and_rows_to_its_sink(store, sink):
    from telemetry.traces import CallTracing

    clock = VirtualClock(T0)
    tracing = CallTracing(clock=clock, sink=sink, sample_ratio=1.0, seed=3)
    call = tracing.start_call("call-own", region="eu-west")
    turn = call.start_turn()
    clock.advance(0.2)
    turn.end()
    call.end("handoff", handoff_reason="caller_request")
    tracing.flush()
    sink.flush()
    c = store.query("SELECT handoff, handoff_reason, turns, trace_id FROM calls WHERE call_id = 'call-own'").iloc[0]
    assert c["handoff"] == 1 and c["handoff_reason"] == "caller_request" and c["turns"] == 1 and len(c["trace_id"]) == 32
    assert store.query("SELECT count() AS n FROM spans WHERE call_id = 'call-own'")["n"][0] == 2


def test_the_call_row_builder_gives_columns_and_rows_alike():
    from telemetry.traces import CALL_COLUMNS, call_columns, call_record

    lat = np.array([[120.0, 80.0, 300.0, 0.0], [50.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    cols = call_columns(call_id=["a", "b", "c"], started_s=[10.0, 11.0, 12.0], ended_s=[20.0, 21.5, 12.0],
                        region="eu", outcome=["completed", "handoff", "silence"], turn_latency_ms=lat, turns=[3, 1, 0],
                        intents=[["x", "y", "z"], ["human"], []], handoff_reason=["", "caller_request", ""])
    assert tuple(cols) == CALL_COLUMNS
    assert cols["handoff"].tolist() == [0, 1, 0]
    assert cols["latency_p50_ms"].tolist() == [120.0, 50.0, 0.0]  # nearest rank: a latency a turn had
    assert cols["latency_max_ms"].tolist() == [300.0, 50.0, 0.0]
    for i, cid in enumerate("abc"):
        row = call_record(call_id=cid, started_s=[10.0, 11.0, 12.0][i], ended_s=[20.0, 21.5, 12.0][i], region="eu",
                          outcome=cols["outcome"][i], turn_latencies_ms=lat[i, : [3, 1, 0][i]].tolist(),
                          intents=cols["intents"][i], handoff_reason=cols["handoff_reason"][i])
        assert row == {k: (v[i].item() if isinstance(v, np.ndarray) else v[i]) for k, v in cols.items()}


def test_the_span_row_builder_broadcasts_text_and_refuses_ragged_columns():
    from telemetry.traces import SPAN_COLUMNS, span_columns

    cols = span_columns(trace_id=["t1", "t1"], span_id=["a", "b"], parent_span_id=["", "a"], call_id="c-1",
                        turn=[0, 1], name=["conversation", "turn"], start_us=[1, 2], duration_ms=[5.0, 1.0])
    assert tuple(cols) == SPAN_COLUMNS and cols["call_id"] == ["c-1", "c-1"] and cols["status"] == ["ok", "ok"]
    assert cols["attr_keys"] == [[], []]
    with pytest.raises(ValueError, match="start_us"):
        span_columns(trace_id=["t1"], span_id=["a"], parent_span_id="", call_id="c", turn=[0], name="x",
                     start_us=[1, 2], duration_ms=[1.0])


def test_the_span_row_builders_columnar_form_stores_the_same_rows(store, sink):
    from telemetry.traces import SPAN_COLUMNS, span_columns

    common = dict(trace_id=["t1", "t1", "t2"], span_id=["a", "b", "c"], parent_span_id=["", "a", ""], call_id="c-1",
                  turn=[0, 1, 2], name=["conversation", "turn", "stt"], start_us=[1, 2, 3], duration_ms=[5.0, 1.0, 0.5],
                  status=["ok", "error", "ok"])
    keys = [["k1", "k2"], [], ["k3"]]
    values = [["v1", "v2"], [], ["v3"]]
    sink.write_columns("spans", span_columns(**common, attr_keys=keys, attr_values=values))
    flat = span_columns(**common, attr_keys=["k1", "k2", "k3"], attr_values=["v1", "v2", "v3"], attr_offsets=[0, 2, 2, 3])
    assert tuple(flat) == SPAN_COLUMNS and flat["turn"].dtype == np.uint16
    sink.write_typed("spans", {**flat, "call_id": ["c-2"] * 3})
    sink.flush()
    def rows(call_id):
        cols = ", ".join(c for c in SPAN_COLUMNS if c != "call_id")
        got = store.query_rows(f"SELECT {cols} FROM spans WHERE call_id = '{call_id}' ORDER BY span_id")
        return [tuple(list(v) if not isinstance(v, (str, int, float)) else v for v in r) for r in got]

    assert rows("c-1") == rows("c-2") and len(rows("c-2")) == 3
    assert rows("c-2")[0][-2:] == (["k1", "k2"], ["v1", "v2"]) and rows("c-2")[1][-2:] == ([], [])
    with pytest.raises(ValueError, match="offsets"):
        span_columns(**common, attr_keys=["k1"], attr_values=["v1"], attr_offsets=[0, 1, 0, 1])
    with pytest.raises(ValueError, match="keys"):
        span_columns(**common, attr_keys=["k1"], attr_values=["v1"], attr_offsets=[0, 1, 1, 2])
