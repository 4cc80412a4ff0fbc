"""OTLP/HTTP wire format: decode a request body into the official `opentelemetry-proto` messages, and
encode the answers the specification prescribes.

What the specification asks (https://opentelemetry.io/docs/specs/otlp/#otlphttp):
- `Content-Type: application/x-protobuf` (binary) or `application/json` (the proto3 JSON mapping with
  two OTLP exceptions: trace and span ids are hex strings, not base64; enums are integers);
- `Content-Encoding: gzip` is allowed;
- success is 200 with the service's Export*ServiceResponse, whose `partial_success` says how many
  items were refused and why; bad data is 400 (the client must not retry); 429/503 with
  `Retry-After` for back-pressure; an error body is a `google.rpc.Status` in the request's encoding.

Nothing here knows about spans or metrics beyond the message types; the mapping lives beside it.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from dataclasses import dataclass

from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

PROTOBUF = "application/x-protobuf"
JSON = "application/json"

# signal -> (request message, response message, partial-success message, the field that counts refusals)
SIGNALS: dict[str, tuple[type[Message], type[Message], type[Message], str]] = {
    "traces": (trace_service_pb2.ExportTraceServiceRequest, trace_service_pb2.ExportTraceServiceResponse,
               trace_service_pb2.ExportTracePartialSuccess, "rejected_spans"),
    "metrics": (metrics_service_pb2.ExportMetricsServiceRequest, metrics_service_pb2.ExportMetricsServiceResponse,
                metrics_service_pb2.ExportMetricsPartialSuccess, "rejected_data_points"),
    "logs": (logs_service_pb2.ExportLogsServiceRequest, logs_service_pb2.ExportLogsServiceResponse,
             logs_service_pb2.ExportLogsPartialSuccess, "rejected_log_records"),
}



def _traces_view() -> type[Message]:
    """A view of ExportTraceServiceRequest in which each span's attributes stay encoded.

    The official trace.proto, copied from the installed opentelemetry-proto's own descriptor into a
    package of ours, with two changes: `Span.attributes` is `repeated bytes` rather than `repeated
    KeyValue`, and `Span.status` is `bytes` rather than a `Status`. Both are length-delimited (fields 9
    and 15) on the wire, so the same bytes parse into either and the protobuf runtime checks everything
    else as strictly as before; the mapper decodes a status with the official `Status` when a span has
    one (most have none: an empty bytes object costs far less than a message wrapper). Reading a KeyValue through
    Python costs about a microsecond (a wrapper for it, one for its AnyValue, a oneof lookup); kept
    encoded, an attribute is a bytes object that the span mapper decodes with the official `KeyValue`
    once per distinct value and then finds in a cache (telemetry/ingest/spans.py)."""
    old, new = "opentelemetry.proto.trace.v1", "voxwatch.ingest.view.trace.v1"
    pool = descriptor_pool.Default()
    try:
        return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{new}.TracesData"))
    except KeyError:
        pass
    fdp = descriptor_pb2.FileDescriptorProto()
    trace_pb2.DESCRIPTOR.CopyToProto(fdp)
    fdp.name, fdp.package = "voxwatch/ingest/view/trace.proto", new

    def retarget(messages) -> None:
        for m in messages:
            for f in m.field:
                if f.type_name.startswith(f".{old}."):
                    f.type_name = f".{new}.{f.type_name[len(old) + 2:]}"
                if m.name == "Span" and f.name in ("attributes", "status"):
                    f.type = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
                    f.ClearField("type_name")
            retarget(m.nested_type)

    retarget(fdp.message_type)
    pool.Add(fdp)
    # TracesData is `repeated ResourceSpans resource_spans = 1`, as ExportTraceServiceRequest is
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{new}.TracesData"))


TracesView = _traces_view()


def traces_view(msg: Message) -> Message:
    """An ExportTraceServiceRequest (or a view already) as the view the span mapper reads."""
    if isinstance(msg, TracesView):
        return msg
    return TracesView.FromString(msg.SerializeToString())


# the OTLP JSON exception: these keys hold hex strings on the wire, bytes (base64 in proto3 JSON) in the message
_HEX_ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"})


@dataclass
class OtlpError(Exception):
    """A request refused as a whole: the HTTP status, a reason code (the rejection counter's label) and a
    message for the sender."""

    status: int
    reason: str
    message: str

    def __str__(self) -> str:
        return self.message


def media_type(content_type: str | None) -> str:
    """`application/json; charset=utf-8` -> `application/json`; raises 415 for anything but the two encodings."""
    mt = (content_type or "").split(";", 1)[0].strip().lower()
    if mt not in (PROTOBUF, JSON):
        raise OtlpError(415, "unsupported_media_type",
                        f"Content-Type must be {PROTOBUF} or {JSON}, not {content_type or 'missing'!r}")
    return mt


def inflate(body: bytes, content_encoding: str | None, max_bytes: int) -> bytes:
    """Undo `Content-Encoding` (gzip, deflate or none), never producing more than `max_bytes` (413 past it),
    so a small compressed bomb cannot take the memory the body limit protects."""
    enc = (content_encoding or "identity").strip().lower()
    if enc in ("", "identity"):
        if len(body) > max_bytes:
            raise OtlpError(413, "too_large", f"body of {len(body)} bytes exceeds the limit of {max_bytes}")
        return body
    if enc == "gzip":
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif enc == "deflate":
        d = zlib.decompressobj()
    else:
        raise OtlpError(415, "unsupported_encoding", f"Content-Encoding {content_encoding!r} is not supported (gzip, deflate)")
    try:
        out = d.decompress(body, max_bytes + 1)
        if len(out) > max_bytes or d.unconsumed_tail:
            raise OtlpError(413, "too_large", f"decompressed body exceeds the limit of {max_bytes} bytes")
        out += d.flush()
    except zlib.error as exc:
        raise OtlpError(400, "bad_encoding", f"body is not valid {enc}: {exc}") from None
    if len(out) > max_bytes:
        raise OtlpError(413, "too_large", f"decompressed body exceeds the limit of {max_bytes} bytes")
    return out


def _hex_ids_to_base64(node):
    """Rewrite OTLP JSON's hex ids into proto3 JSON's base64, in place. An id that is not hex becomes empty,
    so the span is refused on its own (missing id) rather than the whole batch."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k in _HEX_ID_KEYS and isinstance(v, str):
                try:
                    raw = bytes.fromhex(v)
                except ValueError:
                    raw = b""
                node[k] = base64.b64encode(raw).decode()
            elif isinstance(v, (dict, list)):
                _hex_ids_to_base64(v)
    elif isinstance(node, list):
        for v in node:
            if isinstance(v, (dict, list)):
                _hex_ids_to_base64(v)
    return node


def decode(signal: str, body: bytes, mt: str) -> Message:
    """The Export*ServiceRequest of `signal` from a (decompressed) body; 400 when it does not parse."""
    request_cls = SIGNALS[signal][0]
    msg = request_cls()
    if mt == PROTOBUF:
        if signal == "traces":
            msg = TracesView()  # the same bytes, attributes left encoded for the mapper's cache
        try:
            msg.ParseFromString(body)
        except (DecodeError, RuntimeError, ValueError) as exc:
            raise OtlpError(400, "malformed_protobuf", f"body is not a valid {request_cls.__name__}: {exc}") from None
        return msg
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise OtlpError(400, "malformed_json", f"body is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise OtlpError(400, "malformed_json", f"body must be a JSON object ({request_cls.__name__}), not {type(doc).__name__}")
    try:
        json_format.ParseDict(_hex_ids_to_base64(doc), msg, ignore_unknown_fields=True)
    except (json_format.ParseError, binascii.Error, ValueError, TypeError) as exc:
        raise OtlpError(400, "malformed_json", f"body is not a valid {request_cls.__name__}: {exc}") from None
    return msg


def _b64_ids_to_hex(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k in _HEX_ID_KEYS and isinstance(v, str):
                node[k] = base64.b64decode(v).hex()
            elif isinstance(v, (dict, list)):
                _b64_ids_to_hex(v)
    elif isinstance(node, list):
        for v in node:
            _b64_ids_to_hex(v)
    return node


def to_json(msg: Message) -> bytes:
    """A message in OTLP JSON (hex ids, integer enums): for responses, and for tests that send JSON."""
    doc = json_format.MessageToDict(msg, use_integers_for_enums=True)
    return json.dumps(_b64_ids_to_hex(doc)).encode()


def success(signal: str, rejected: int, message: str, mt: str) -> bytes:
    """The 200 body: an empty Export*ServiceResponse, or one with `partial_success` when items were refused."""
    _, response_cls, partial_cls, field = SIGNALS[signal]
    resp = response_cls()
    if rejected or message:
        resp.partial_success.CopyFrom(partial_cls(**{field: rejected, "error_message": message}))
    return resp.SerializeToString() if mt == PROTOBUF else to_json(resp)


def failure(status: int, message: str, mt: str) -> bytes:
    """An error body: google.rpc.Status with the gRPC code matching the HTTP status."""
    from google.rpc import code_pb2, status_pb2

    code = {400: code_pb2.INVALID_ARGUMENT, 401: code_pb2.UNAUTHENTICATED, 403: code_pb2.PERMISSION_DENIED,
            413: code_pb2.INVALID_ARGUMENT, 415: code_pb2.INVALID_ARGUMENT,
            429: code_pb2.RESOURCE_EXHAUSTED, 503: code_pb2.UNAVAILABLE}.get(status, code_pb2.UNKNOWN)
    st = status_pb2.Status(code=code, message=message)
    if mt == PROTOBUF:
        return st.SerializeToString()
    return json.dumps(json_format.MessageToDict(st)).encode()
