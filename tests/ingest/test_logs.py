"""OTLP logs: OpenTelemetry's own Python logs SDK and OTLP/HTTP exporter send a bot's log records to a
running Voxwatch API; what they said is stored in `logs`, tied to the trace it was logged in, and bad
records are refused alone, counted per cause."""

from __future__ import annotations

import logging
import time

import pytest
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from telemetry.ingest.otlp import to_json
from tests.ingest.conftest import INGEST, stored
from tests.ingest.test_bad_input import PB, post, rejected


@pytest.mark.filterwarnings("ignore:`LoggingHandler` in `opentelemetry-sdk` is deprecated:DeprecationWarning")
def test_records_logged_through_the_sdk_are_stored_with_their_trace_and_attributes(service):
    resource = Resource.create({"service.name": "pizza-bot", "deployment.environment": "staging"})
    provider = LoggerProvider(resource=resource)
    provider.add_log_record_processor(SimpleLogRecordProcessor(
        OTLPLogExporter(endpoint=f"{service.url}/v1/logs", headers={"Authorization": f"Bearer {INGEST}"})))
    log = logging.getLogger("pizza-bot.test")
    log.propagate = False
    log.setLevel(logging.INFO)
    handler = LoggingHandler(level=logging.INFO, logger_provider=provider)
    log.addHandler(handler)
    tracer = TracerProvider(resource=resource).get_tracer("bot")
    try:
        with tracer.start_as_current_span("llm") as span:
            log.warning("LLM slow: %d ms to the first token", 912, extra={"gen_ai.provider.name": "openai"})
            trace_id = format(span.get_span_context().trace_id, "032x")
            span_id = format(span.get_span_context().span_id, "016x")
        log.info("call ended")
        provider.force_flush()
    finally:
        log.removeHandler(handler)
        provider.shutdown()
    rows = stored(service, "SELECT source, severity_number, severity_text, body, trace_id, span_id, call_id, "
                           "attr_keys, attr_values, ts_ms FROM logs ORDER BY ts_ms")
    assert len(rows) == 2
    (src, sev, sev_text, body, tid, sid, call_id, keys, values, ts_ms), second = rows
    attrs = dict(zip(keys, values, strict=True))
    assert (src, sev, sev_text, body) == ("pizza-bot", 13, "WARN", "LLM slow: 912 ms to the first token")
    assert (tid, sid, call_id) == (trace_id, span_id, trace_id)
    assert attrs["gen_ai.provider.name"] == "openai" and attrs["deployment.environment"] == "staging"
    assert abs(ts_ms - time.time() * 1000) < 60_000
    assert second[1:4] == (9, "INFO", "call ended") and second[4] == ""  # logged outside any span
    assert service.telemetry.registry.get_sample_value("voxwatch_ingest_log_records_total", {"source": "pizza-bot"}) == 2


def _record(req: ExportLogsServiceRequest, **fields):
    rl = req.resource_logs[0] if req.resource_logs else req.resource_logs.add()
    if not rl.resource.attributes:
        rl.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value="bad-bot")))
    sl = rl.scope_logs[0] if rl.scope_logs else rl.scope_logs.add()
    rec = sl.log_records.add(**fields)
    rec.body.string_value = fields.get("severity_text", "") or "hello"
    return rec


def test_bad_records_are_refused_alone_and_counted(service):
    now = time.time_ns()
    req = ExportLogsServiceRequest()
    _record(req, time_unix_nano=now, severity_number=17, severity_text="ERROR")
    _record(req, observed_time_unix_nano=now)  # no time of its own: its observed time
    _record(req, time_unix_nano=now, trace_id=b"\x01" * 5)  # a trace id that is not 16 bytes
    _record(req)  # no time at all
    _record(req, time_unix_nano=now - 400 * 86400 * 10**9)  # a year ago
    huge = _record(req, time_unix_nano=now, severity_number=99)
    huge.body.string_value = "x" * 10_000
    r = post(service, "/v1/logs", req.SerializeToString())
    assert r.status_code == 200
    resp = ExportLogsServiceResponse.FromString(r.content)
    assert resp.partial_success.rejected_log_records == 3 and "missing_id" in resp.partial_success.error_message
    assert rejected(service, "logs", "missing_id") == 1 and rejected(service, "logs", "bad_timestamp") == 1
    assert rejected(service, "logs", "timestamp_out_of_range") == 1
    rows = stored(service, "SELECT severity_number, body, attr_keys, attr_values FROM logs ORDER BY severity_number, length(body)")
    assert [(r[0], r[1][:5]) for r in rows] == [(0, "hello"), (0, "xxxxx"), (17, "ERROR")]
    unset = dict(zip(rows[1][2], rows[1][3], strict=True))
    assert unset["otel.severity_number"] == "99" and "5904 more chars" in rows[1][1]


def test_otlp_json_logs_and_a_malformed_body(service):
    req = ExportLogsServiceRequest()
    _record(req, time_unix_nano=time.time_ns(), trace_id=bytes.fromhex("5b8efff798038103d269b633813fc60c"),
            span_id=bytes.fromhex("eee19b7ec3c1b174"), severity_text="INFO")
    r = post(service, "/v1/logs", to_json(req), {"Content-Type": "application/json"})
    assert r.status_code == 200 and r.json() == {}
    assert stored(service, "SELECT trace_id, span_id, body FROM logs") == [
        ("5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174", "INFO")]
    r = post(service, "/v1/logs", b"\xff\xff garbage", PB)
    assert r.status_code == 400 and rejected(service, "logs", "malformed_protobuf") == 1
    assert post(service, "/v1/logs", req.SerializeToString(), token="not-a-token-of-ours").status_code == 401
