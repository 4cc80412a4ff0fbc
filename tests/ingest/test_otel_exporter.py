"""OpenTelemetry's own Python OTLP/HTTP exporters send traces and metrics to a running Voxwatch API,
as any instrumented service would; what they sent is what is stored."""

from __future__ import annotations

import time

import pytest
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    InMemoryMetricReader,
)
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode

from telemetry.ingest import EXTERNAL_ID_BASE
from telemetry.quantiles import percentile
from tests.ingest.conftest import INGEST, stored

RESOURCE = Resource.create({"service.name": "pizza-bot", "deployment.environment": "staging"})


def _tracer(ctx, compression=Compression.Gzip):
    exporter = OTLPSpanExporter(endpoint=f"{ctx.url}/v1/traces", headers={"Authorization": f"Bearer {INGEST}"},
                                compression=compression)
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


@pytest.mark.parametrize("map_workers", [0, 2], ids=["in_process", "map_workers_2"])
def test_a_voice_call_traced_with_the_sdk_becomes_spans_a_call_and_stage_metrics(service):
    provider = _tracer(service)
    tracer = provider.get_tracer("test")
    t0 = time.time_ns()
    ms = 1_000_000
    conv = tracer.start_span("conversation", start_time=t0, attributes={"conversation.id": "conv-42"})
    from opentelemetry import trace

    ctx = trace.set_span_in_context(conv)
    latencies = [0.41, 0.62]
    for n, lat in enumerate(latencies, start=1):
        base = t0 + n * 2000 * ms
        turn = tracer.start_span("turn", context=ctx, start_time=base, attributes={"turn.number": n, "conversation.id": "conv-42"})
        tctx = trace.set_span_in_context(turn)
        tracer.start_span("stt", context=tctx, start_time=base, attributes={
            "gen_ai.provider.name": "whisper", "metrics.ttfb": 0.12, "language": "en", "transcript": f"hello {n}"}).end(end_time=base + 150 * ms)
        llm = tracer.start_span("llm", context=tctx, start_time=base + 150 * ms, attributes={
            "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini", "metrics.ttfb": 0.2,
            "gen_ai.usage.input_tokens": 100, "gen_ai.usage.output_tokens": 20, "custom.unmapped": "kept"})
        if n == 2:
            llm.set_status(Status(StatusCode.ERROR, "rate limited"))
        llm.end(end_time=base + 400 * ms)
        tracer.start_span("tts", context=tctx, start_time=base + 400 * ms, attributes={
            "gen_ai.provider.name": "espeak", "metrics.ttfb": 0.05, "metrics.character_count": 17,
            "text": "here is your pizza"}).end(end_time=base + 900 * ms)
        turn.set_attribute("turn.user_bot_latency_seconds", lat)
        turn.set_attribute("turn.was_interrupted", n == 2)
        turn.end(end_time=base + 1000 * ms)
    conv.end(end_time=t0 + 6000 * ms)
    provider.shutdown()

    spans = stored(service, "SELECT name, turn, status, call_id, trace_id, attr_keys, attr_values FROM spans ORDER BY start_us, name")
    assert sorted(s[0] for s in spans) == sorted(["conversation"] + ["turn", "stt", "llm", "tts"] * 2)
    trace_id = format(conv.get_span_context().trace_id, "032x")
    assert {s[3] for s in spans} == {trace_id} and {s[4] for s in spans} == {trace_id}
    llms = [s for s in spans if s[0] == "llm"]
    assert [s[2] for s in llms] == ["ok", "error"]
    attrs = dict(zip(llms[0][5], llms[0][6], strict=True))
    # unmapped attributes are stored, and so are the resource's
    assert attrs["custom.unmapped"] == "kept" and attrs["service.name"] == "pizza-bot"
    assert attrs["deployment.environment"] == "staging" and attrs["gen_ai.usage.input_tokens"] == "100"
    assert sorted(s[1] for s in spans if s[0] == "turn") == [1, 2]

    calls = stored(service, "SELECT call_id, channel, scenario, region, turns, latency_max_ms, latency_p50_ms, "
                            "outcome, trace_id, transcript, language FROM calls")
    assert len(calls) == 1
    call_id, channel, scenario, region, turns, lat_max, lat_p50, outcome, tid, transcript, language = calls[0]
    assert (call_id, channel, scenario, region, turns, outcome, tid, language) == (
        trace_id, "otlp", "pizza-bot", "pizza-bot", 2, "completed", trace_id, "en")
    # the project's one percentile rule (nearest rank, telemetry.quantiles.percentile)
    assert abs(lat_max - 620.0) < 1e-6 and abs(lat_p50 - percentile([410.0, 620.0], 0.5)) < 1e-6
    assert "caller: hello 1" in transcript and "agent: here is your pizza" in transcript

    tel = service.telemetry
    assert sample(tel, "voxwatch_stage_latency_seconds_sum", stage="llm", region="pizza-bot") == pytest.approx(0.5)
    assert sample(tel, "voxwatch_stage_latency_seconds_count", stage="stt", region="pizza-bot") == 2
    assert sample(tel, "voxwatch_llm_time_to_first_token_seconds_sum", provider="openai", model="gpt-4o-mini") == pytest.approx(0.4)
    assert sample(tel, "voxwatch_stt_final_latency_seconds_sum", language="en") == pytest.approx(0.24)
    assert sample(tel, "voxwatch_tts_time_to_first_byte_seconds_count", language="") == 2
    assert sample(tel, "voxwatch_llm_input_tokens_total", provider="openai", model="gpt-4o-mini") == 200
    assert sample(tel, "voxwatch_llm_output_tokens_total", provider="openai", model="gpt-4o-mini") == 40
    assert sample(tel, "voxwatch_tts_characters_total", language="") == 34
    assert sample(tel, "voxwatch_turn_latency_seconds_sum", region="pizza-bot") == pytest.approx(1.03)
    assert sample(tel, "voxwatch_turns_total", region="pizza-bot") == 2
    assert sample(tel, "voxwatch_turn_barge_ins_total", region="pizza-bot") == 1
    assert sample(tel, "voxwatch_stage_errors_total", stage="llm", region="pizza-bot", kind="exception") == 1
    assert sample(tel, "voxwatch_ingest_spans_total", source="pizza-bot") == 9


def sample(tel, name: str, **labels) -> float | None:
    """A sample as /metrics shows it (the registry the snapshotter and the alert rules read)."""
    return tel.registry.get_sample_value(name, labels)


def test_sdk_metrics_land_in_metric_samples_with_source_labels(service):
    exporter = OTLPMetricExporter(endpoint=f"{service.url}/v1/metrics", headers={"Authorization": f"Bearer {INGEST}"},
                                  preferred_temporality={})
    reader = InMemoryMetricReader()
    provider = MeterProvider(resource=RESOURCE, metric_readers=[reader], views=[
        View(instrument_name="voice.turn.latency", aggregation=ExplicitBucketHistogramAggregation([0.1, 0.3, 1.0]))])
    meter = provider.get_meter("test")
    calls = meter.create_counter("voice.calls")
    active = meter.create_up_down_counter("voice.active_calls")
    latency = meter.create_histogram("voice.turn.latency", unit="s")
    calls.add(3, {"region": "eu"})
    active.add(5)
    for v in (0.05, 0.2, 0.25, 2.0):
        latency.record(v, {"region": "eu"})
    data = reader.get_metrics_data()
    assert exporter.export(data).name == "SUCCESS"
    calls.add(2, {"region": "eu"})
    assert exporter.export(reader.get_metrics_data()).name == "SUCCESS"

    rows = stored(service, "SELECT s.sample_name, s.label_keys, s.label_values, s.metric_type, s.metric_id, m.value, m.ts_ms "
                           "FROM metric_samples AS m INNER JOIN metric_series AS s ON m.fingerprint = s.fingerprint "
                           f"WHERE s.metric_id >= {EXTERNAL_ID_BASE} ORDER BY m.ts_ms, s.sample_name, m.value")
    by_name: dict = {}
    types = {}
    for name, keys, values, mtype, mid, value, _ts in rows:
        labels = dict(zip(keys, values, strict=True))
        types[name] = (mtype, mid >= EXTERNAL_ID_BASE)
        assert labels["source"] == "pizza-bot" and labels["environment"] == "staging"
        by_name.setdefault((name, labels.get("le")), []).append(value)
    assert types["voice_calls_total"] == ("counter", True) and types["voice_active_calls"] == ("gauge", True)
    assert types["voice_turn_latency_bucket"] == ("histogram", True)
    assert by_name[("voice_calls_total", None)] == [3.0, 5.0]  # cumulative, as the SDK reports
    assert by_name[("voice_active_calls", None)][-1] == 5.0
    assert by_name[("voice_turn_latency_bucket", "0.1")][0] == 1.0
    assert by_name[("voice_turn_latency_bucket", "0.3")][0] == 3.0
    assert by_name[("voice_turn_latency_bucket", "+Inf")][0] == 4.0
    assert by_name[("voice_turn_latency_count", None)][0] == 4.0
    assert abs(by_name[("voice_turn_latency_sum", None)][0] - 2.5) < 1e-9


def test_delta_sums_are_stored_as_running_totals(service):
    exporter = OTLPMetricExporter(endpoint=f"{service.url}/v1/metrics", headers={"Authorization": f"Bearer {INGEST}"})
    from opentelemetry.sdk.metrics import Counter

    reader = InMemoryMetricReader(preferred_temporality={Counter: AggregationTemporality.DELTA})
    provider = MeterProvider(resource=RESOURCE, metric_readers=[reader])
    c = provider.get_meter("t").create_counter("voice.errors")
    for n in (4, 1, 2):
        c.add(n)
        assert exporter.export(reader.get_metrics_data()).name == "SUCCESS"
    rows = stored(service, "SELECT m.value FROM metric_samples AS m INNER JOIN metric_series AS s ON m.fingerprint = s.fingerprint "
                           "WHERE s.sample_name = 'voice_errors_total' ORDER BY m.ts_ms")
    assert [r[0] for r in rows] == [4.0, 5.0, 7.0]


@pytest.mark.parametrize("map_workers", [0, 2], ids=["in_process", "map_workers_2"])
def test_uncompressed_protobuf_from_the_exporter_is_accepted_too(service):
    provider = _tracer(service, compression=Compression.NoCompression)
    provider.get_tracer("t").start_span("stt").end()
    provider.shutdown()
    assert stored(service, "SELECT count() FROM spans WHERE name = 'stt'")[0][0] == 1
