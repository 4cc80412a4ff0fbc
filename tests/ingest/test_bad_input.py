"""Bad input at the OTLP receiver: each answered as the specification says, counted per cause, and the
good part of a batch kept where partial success allows it; with trace mapping in the receiver's process
and in worker processes (`ingest.map_workers`), and a worker killed mid-request."""

from __future__ import annotations

import gzip
import json
import math
import os
import signal
import threading
import time

import httpx
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from telemetry.ingest.otlp import to_json
from tests.ingest.conftest import ADMIN, READ, auth, stored

PB = {"Content-Type": "application/x-protobuf"}


@pytest.fixture(params=[0, 2], ids=["in_process", "map_workers_2"])
def map_workers(request) -> int:
    """Every case here also against trace requests decoded and mapped in two worker processes."""
    return request.param


def kv(key, value) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value) if isinstance(value, str) else AnyValue(double_value=value))


def span(name="stt", tid=b"\x01" * 16, sid=b"\x02" * 8, start=None, dur_ns=10**8, attrs=()) -> trace_pb2.Span:
    start = time.time_ns() if start is None else start
    return trace_pb2.Span(trace_id=tid, span_id=sid, name=name, start_time_unix_nano=start,
                          end_time_unix_nano=start + dur_ns, attributes=list(attrs))


def traces_request(*spans) -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.append(kv("service.name", "bad-bot"))
    rs.scope_spans.add().spans.extend(spans)
    return req


def rejected(ctx, signal, reason) -> float:
    return ctx.telemetry.registry.get_sample_value("voxwatch_ingest_rejected_total", {"signal": signal, "reason": reason}) or 0


def post(ctx, path, body, headers=None, token=None):
    h = {**PB, **auth(*(token,) if token else ())}
    h.update(headers or {})
    return httpx.post(f"{ctx.url}{path}", content=body, headers=h, timeout=10)


def test_malformed_protobuf_is_a_400_with_a_status_body_and_counted(service):
    r = post(service, "/v1/traces", b"\xff\xff\xff garbage \x00")
    assert r.status_code == 400
    from google.rpc import status_pb2

    st = status_pb2.Status.FromString(r.content)
    assert "ExportTraceServiceRequest" in st.message
    assert rejected(service, "traces", "malformed_protobuf") == 1


def test_malformed_json_is_a_400_in_json(service):
    r = post(service, "/v1/metrics", b"{not json", {"Content-Type": "application/json"})
    assert r.status_code == 400 and "not JSON" in r.json()["message"]
    r = post(service, "/v1/traces", b'{"resourceSpans": 7}', {"Content-Type": "application/json"})
    assert r.status_code == 400
    assert rejected(service, "metrics", "malformed_json") == 1 and rejected(service, "traces", "malformed_json") == 1


def test_wrong_content_type_is_415(service):
    r = post(service, "/v1/traces", b"hello", {"Content-Type": "text/plain"})
    assert r.status_code == 415 and rejected(service, "traces", "unsupported_media_type") == 1
    r = post(service, "/v1/traces", b"hello", {"Content-Encoding": "br"})
    assert r.status_code == 415


def test_otlp_json_with_hex_ids_is_accepted(service):
    req = traces_request(span("llm", tid=bytes.fromhex("5b8efff798038103d269b633813fc60c"), sid=bytes.fromhex("eee19b7ec3c1b174")))
    body = to_json(req)
    assert b"5b8efff798038103d269b633813fc60c" in body  # hex on the wire, as OTLP JSON says
    r = post(service, "/v1/traces", body, {"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    assert stored(service, "SELECT trace_id, span_id FROM spans") == [("5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174")]


def test_spans_without_ids_or_with_far_timestamps_are_refused_the_rest_kept(service):
    now = time.time_ns()
    good = span("stt", sid=b"\x01" * 8)
    req = traces_request(
        good,
        span("tts", tid=b"", sid=b"\x03" * 8),  # missing trace id
        span("tts", sid=b"\x00" * 8),  # all-zero span id is invalid too
        span("llm", sid=b"\x04" * 8, start=now - 400 * 86400 * 10**9),  # a year ago
        span("llm", sid=b"\x05" * 8, start=now + 86400 * 10**9),  # tomorrow
        span("llm", sid=b"\x06" * 8, start=0),
    )
    r = post(service, "/v1/traces", req.SerializeToString())
    assert r.status_code == 200
    resp = ExportTraceServiceResponse.FromString(r.content)
    assert resp.partial_success.rejected_spans == 5
    assert "missing_id" in resp.partial_success.error_message
    assert stored(service, "SELECT name FROM spans") == [("stt",)]
    assert rejected(service, "traces", "missing_id") == 2
    assert rejected(service, "traces", "timestamp_out_of_range") == 2
    assert rejected(service, "traces", "bad_timestamp") == 1


def test_huge_attribute_values_are_cut_not_lost(service):
    req = traces_request(span("llm", attrs=[kv("input", "x" * 100_000), kv("ok", "short")]))
    r = post(service, "/v1/traces", gzip.compress(req.SerializeToString()), {"Content-Encoding": "gzip"})
    assert r.status_code == 200
    assert not ExportTraceServiceResponse.FromString(r.content).HasField("partial_success")
    keys, values = stored(service, "SELECT attr_keys, attr_values FROM spans")[0]
    attrs = dict(zip(keys, values, strict=True))
    assert attrs["ok"] == "short" and attrs["input"].startswith("x" * 4096) and "95904 more chars" in attrs["input"]
    assert service.telemetry.registry.get_sample_value("voxwatch_ingest_truncated_attributes_total", {"signal": "traces"}) == 1


def _gauge_request(values, start=None) -> ExportMetricsServiceRequest:
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.append(kv("service.name", "bad-bot"))
    m = rm.scope_metrics.add().metrics.add()
    m.name = "queue.depth"
    now = time.time_ns() if start is None else start
    for i, v in enumerate(values):
        p = m.gauge.data_points.add()
        p.time_unix_nano = now + i * 10**9
        p.as_double = v
    return req


def test_nan_points_are_refused_the_others_stored(service):
    r = post(service, "/v1/metrics", _gauge_request([1.0, math.nan, 3.0, math.inf]).SerializeToString())
    assert r.status_code == 200
    resp = ExportMetricsServiceResponse.FromString(r.content)
    assert resp.partial_success.rejected_data_points == 2 and "non_finite" in resp.partial_success.error_message
    rows = stored(service, "SELECT m.value FROM metric_samples AS m INNER JOIN metric_series AS s "
                           "ON m.fingerprint = s.fingerprint WHERE s.metric = 'queue_depth' ORDER BY m.ts_ms")
    assert [v for (v,) in rows] == [1.0, 3.0]
    assert rejected(service, "metrics", "non_finite") == 2


def test_per_call_labels_and_catalog_type_mismatches_are_refused(service):
    req = _gauge_request([1.0])
    req.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points[0].attributes.append(kv("call_id", "c-1"))
    m = req.resource_metrics[0].scope_metrics[0].metrics.add()
    m.name = "voxwatch_turn_latency_seconds"  # a catalog histogram sent as a gauge
    p = m.gauge.data_points.add()
    p.time_unix_nano, p.as_double = time.time_ns(), 0.3
    r = post(service, "/v1/metrics", req.SerializeToString())
    resp = ExportMetricsServiceResponse.FromString(r.content)
    assert resp.partial_success.rejected_data_points == 2
    assert rejected(service, "metrics", "bad_label") == 1 and rejected(service, "metrics", "type_mismatch") == 1


def test_a_catalog_metric_keeps_its_catalog_id(service):
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.append(kv("service.name", "lk-agent"))
    m = rm.scope_metrics.add().metrics.add()
    m.name = "voxwatch_llm_time_to_first_token_seconds"
    m.histogram.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
    p = m.histogram.data_points.add(time_unix_nano=time.time_ns(), count=3, sum=0.9, explicit_bounds=[0.25, 0.5],
                                    bucket_counts=[1, 1, 1])
    p.attributes.extend([kv("provider", "openai"), kv("model", "gpt-4o")])
    assert post(service, "/v1/metrics", req.SerializeToString()).status_code == 200
    rows = dict(stored(service, "SELECT s.sample_name || ':' || arrayStringConcat(s.label_values, ','), m.value "
                                "FROM metric_samples AS m INNER JOIN metric_series AS s ON m.fingerprint = s.fingerprint "
                                "WHERE s.metric_id = 262 AND has(s.label_values, 'lk-agent')"))
    assert rows["voxwatch_llm_time_to_first_token_seconds_bucket:0.5,gpt-4o,openai,lk-agent"] == 2.0
    assert rows["voxwatch_llm_time_to_first_token_seconds_count:gpt-4o,openai,lk-agent"] == 3.0


@pytest.fixture
def small_service(monkeypatch, request, map_workers):
    monkeypatch.setenv("VOXWATCH_INGEST_MAX_BYTES", "2048")
    return request.getfixturevalue("service")


def test_oversized_bodies_and_gzip_bombs_are_413(small_service):
    big = traces_request(*[span("stt", sid=i.to_bytes(8, "big")) for i in range(1, 200)]).SerializeToString()
    assert len(big) > 2048
    r = post(small_service, "/v1/traces", big)
    assert r.status_code == 413
    bomb = gzip.compress(b"\x00" * 1_000_000)
    assert len(bomb) < 2048
    r = post(small_service, "/v1/traces", bomb, {"Content-Encoding": "gzip"})
    assert r.status_code == 413
    assert rejected(small_service, "traces", "too_large") == 2
    assert stored(small_service, "SELECT count() FROM spans") == [(0,)]


def test_tokens_and_scopes(service):
    body = traces_request(span()).SerializeToString()
    r = httpx.post(f"{service.url}/v1/traces", content=body, headers=PB)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert post(service, "/v1/traces", body, token=READ).status_code == 403
    assert post(service, "/v1/traces", body, token=ADMIN).status_code == 200  # admin may do anything
    # the pipeline's ingest token cannot change the level or read the analysts' API
    r = httpx.put(f"{service.url}/v1/degradation", json={"level": "NORMAL"}, headers=auth())
    assert r.status_code == 403
    assert rejected(service, "traces", "unauthorized") == 2


def test_back_pressure_is_429_or_503_with_retry_after(service, monkeypatch):
    body = traces_request(span()).SerializeToString()
    sink = service.sink
    monkeypatch.setattr(sink, "_store_down_until", time.monotonic() + 60)  # as the sink marks an unreachable store
    r = post(service, "/v1/traces", body)
    assert r.status_code == 503 and int(r.headers["retry-after"]) > 0
    monkeypatch.setattr(sink, "_store_down_until", 0.0)
    assert post(service, "/v1/traces", body).status_code == 200
    assert rejected(service, "traces", "store_unavailable") == 1
    assert json.loads(httpx.get(f"{service.url}/healthz").text)["status"] == "ok"


@pytest.fixture
def no_room_service(monkeypatch, request, map_workers):
    monkeypatch.setenv("VOXWATCH_INGEST_MAX_INFLIGHT", "0")  # every request finds the receiver busy
    return request.getfixturevalue("service")


def test_too_many_requests_at_once_is_429_with_retry_after(no_room_service):
    r = post(no_room_service, "/v1/traces", traces_request(span()).SerializeToString())
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert rejected(no_room_service, "traces", "overloaded") == 1
    assert stored(no_room_service, "SELECT count() FROM spans") == [(0,)]


def test_too_many_attributes_are_counted_and_events_and_status_kept(service):
    s = span("llm", attrs=[kv(f"k{i}", "v") for i in range(300)])
    s.status.code = trace_pb2.Status.STATUS_CODE_ERROR
    s.status.message = "provider timeout"
    ev = s.events.add(name="exception", time_unix_nano=s.start_time_unix_nano)
    ev.attributes.append(kv("exception.type", "TimeoutError"))
    body = to_json(traces_request(s))
    r = post(service, "/v1/traces", body, {"Content-Type": "application/json"})
    assert r.status_code == 200 and r.json() == {}  # nothing refused: an empty ExportTraceServiceResponse
    keys, values, status = stored(service, "SELECT attr_keys, attr_values, status FROM spans")[0]
    attrs = dict(zip(keys, values, strict=True))
    assert len(keys) == 256 and attrs["otel.dropped_attributes_count"] == str(300 + 1 + 2 - 255)  # + service.name, status, event
    assert status == "error"
    # the span's own attributes come first; what is past the limit is the tail (resource, status, events)
    assert attrs["k0"] == "v" and attrs["k254"] == "v"


def test_partial_success_in_json_names_the_count_and_the_reasons(service):
    req = traces_request(span("stt"), span("tts", tid=b"", sid=b"\x03" * 8))
    r = post(service, "/v1/traces", to_json(req), {"Content-Type": "application/json"})
    assert r.status_code == 200
    body = r.json()["partialSuccess"]
    assert int(body["rejectedSpans"]) == 1 and "missing_id" in body["errorMessage"]


def test_attribute_values_are_stored_alike_whether_new_or_seen_before(service):
    """The mapper decodes each distinct attribute once and then finds it in a cache: a value seen before
    (second request) must be stored exactly as a new one, and every cut of a long value counted."""
    def attrs_span(sid: bytes) -> trace_pb2.Span:
        s = span("llm", sid=sid, attrs=[kv("gen_ai.provider.name", "openai"), kv("metrics.ttfb", 0.35),
                                         kv("long", "y" * 5000)])
        s.attributes.extend([KeyValue(key="gen_ai.usage.input_tokens", value=AnyValue(int_value=812)),
                             KeyValue(key="stream", value=AnyValue(bool_value=True))])
        arr = s.attributes.add(key="stop")
        arr.value.array_value.values.extend([AnyValue(string_value="."), AnyValue(int_value=2)])
        return s

    for sid in (b"\x11" * 8, b"\x12" * 8):
        assert post(service, "/v1/traces", traces_request(attrs_span(sid)).SerializeToString()).status_code == 200
    rows = stored(service, "SELECT span_id, attr_keys, attr_values FROM spans ORDER BY span_id")
    assert len(rows) == 2
    first, second = (dict(zip(k, v, strict=True)) for _, k, v in rows)
    assert first == second
    assert first["gen_ai.provider.name"] == "openai" and first["metrics.ttfb"] == "0.35"
    assert first["gen_ai.usage.input_tokens"] == "812" and first["stream"] == "True" and first["stop"] == '[".", 2]'
    assert first["service.name"] == "bad-bot" and "904 more chars" in first["long"]
    assert service.telemetry.registry.get_sample_value("voxwatch_ingest_truncated_attributes_total", {"signal": "traces"}) == 2
    tokens = service.telemetry.registry.get_sample_value("voxwatch_llm_input_tokens_total",
                                                          {"provider": "openai", "model": ""})
    assert tokens == 2 * 812


def test_a_span_attribute_that_is_not_a_key_value_is_a_400(service):
    from telemetry.ingest.otlp import TracesView

    view = TracesView.FromString(traces_request(span("stt")).SerializeToString())
    view.resource_spans[0].scope_spans[0].spans[0].attributes.append(b"\xff\xff not a KeyValue")
    r = post(service, "/v1/traces", view.SerializeToString())
    assert r.status_code == 400 and rejected(service, "traces", "malformed_protobuf") == 1
    assert stored(service, "SELECT count() FROM spans") == [(0,)]


def test_a_span_status_that_is_not_a_status_is_a_400(service):
    """The view keeps a span's Status encoded and the mapper decodes it with the official message: a
    broken one is refused like a broken body, and nothing of the request is stored."""
    from telemetry.ingest.otlp import TracesView

    view = TracesView.FromString(traces_request(span("stt"), span("llm", sid=b"\x05" * 8)).SerializeToString())
    view.resource_spans[0].scope_spans[0].spans[1].status = b"\xff\xff not a Status"
    r = post(service, "/v1/traces", view.SerializeToString())
    assert r.status_code == 400 and rejected(service, "traces", "malformed_protobuf") == 1
    assert stored(service, "SELECT count() FROM spans") == [(0,)]


def test_ids_are_stored_as_the_hex_of_the_bytes_sent(service):
    root = span("conversation", tid=bytes(range(1, 17)), sid=bytes(range(0xF0, 0xF8)))
    child = span("turn", tid=bytes(range(1, 17)), sid=b"\x00\x0a" * 4)
    child.parent_span_id = root.span_id
    assert post(service, "/v1/traces", traces_request(root, child).SerializeToString()).status_code == 200
    rows = stored(service, "SELECT name, trace_id, call_id, span_id, parent_span_id FROM spans ORDER BY name")
    assert rows == [("conversation", bytes(range(1, 17)).hex(), bytes(range(1, 17)).hex(), "f0f1f2f3f4f5f6f7", ""),
                    ("turn", bytes(range(1, 17)).hex(), bytes(range(1, 17)).hex(), "000a000a000a000a", "f0f1f2f3f4f5f6f7")]


@pytest.mark.parametrize("map_workers", [2])
def test_a_mapping_worker_killed_mid_request_is_a_503_with_retry_after_and_the_pool_recovers(service):
    receiver = service.extras["ingest_receiver"]
    assert post(service, "/v1/traces", traces_request(span("stt")).SerializeToString()).status_code == 200
    workers = receiver.pool.pids()
    assert len(workers) == 2
    # a request large enough to be mapping when the workers die
    big = traces_request(*[span("llm", sid=i.to_bytes(8, "big"), attrs=[kv("gen_ai.provider.name", "openai"),
                                                                          kv("metrics.ttfb", i / 1e5)])
                           for i in range(1, 40_001)]).SerializeToString()
    answers = []
    sender = threading.Thread(target=lambda: answers.append(post(service, "/v1/traces", big)))
    sender.start()
    inflight = service.telemetry.registry.get_sample_value
    deadline = time.monotonic() + 30
    while not inflight("voxwatch_ingest_inflight_requests") and time.monotonic() < deadline:
        time.sleep(0.002)
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    sender.join(60)
    assert not sender.is_alive()
    r = answers[0]
    assert r.status_code == 503 and int(r.headers["retry-after"]) > 0
    assert rejected(service, "traces", "worker_lost") == 1
    # nothing of the refused request was stored; the sender's retry (and any next request) is served
    assert post(service, "/v1/traces", traces_request(span("tts", sid=b"\x07" * 8)).SerializeToString()).status_code == 200
    assert stored(service, "SELECT name FROM spans ORDER BY name") == [("stt",), ("tts",)]
    assert receiver.pool.restarts == 1 and not set(receiver.pool.pids()) & set(workers)
