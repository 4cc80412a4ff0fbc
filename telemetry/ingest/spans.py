"""OTLP traces -> `spans` rows, `calls` rows and the catalog's stage metrics.

Every span that has its ids and sane timestamps becomes one `spans` row: its name, timing, status and
*all* its attributes (plus the resource's), mapped or not, so nothing a sender says is dropped.
What the conventions (telemetry/ingest/conventions.py, docs/ingest.md) recognise is also measured
into the same catalog instruments Voxwatch's own pipeline records (stage latency, LLM time to first
token, TTS time to first byte, turn latency, tokens, characters, barge-ins, stage errors), so the
snapshotter, the anomaly service and the shipped rules see an ingested pipeline like our own.
A conversation span closes a call: its row in `calls` is built by the project's one call-record
builder (telemetry/traces.py) from the turns seen for that trace.

Ingested calls are keyed by their trace id (`calls.call_id = spans.call_id = trace id in hex`): a
stage span usually ends, and is exported, before the turn and conversation spans that would name the
call, and the trace id is the one key every span of a call carries. The framework's own conversation
id stays in the span attributes (`conversation.id`).

The only state kept between requests is small and bounded: per open trace, the turns seen so far
(for the call record), evicted oldest first past `max_open_traces`.
"""

from __future__ import annotations

import json
from collections import Counter, OrderedDict, defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
from google.protobuf.message import DecodeError
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1 import trace_pb2

from telemetry.ingest import conventions as cv
from telemetry.ingest.otlp import OtlpError, traces_view
from telemetry.traces import call_columns, span_columns
from telemetry.values import finite_float

_STATUS_ERROR = trace_pb2.Status.STATUS_CODE_ERROR


@dataclass(frozen=True)
class IngestLimits:
    """What one item may carry before it is refused or cut."""

    max_attribute_chars: int = 4096  # longer string values are cut (counted), the span is kept
    max_attributes: int = 256  # per span, resource attributes included; the rest are counted, not stored
    max_age_s: float = 7 * 86400.0  # older timestamps are refused (timestamp_out_of_range)
    max_future_s: float = 900.0  # timestamps further ahead than this are refused too


@dataclass
class IngestResult:
    """What one request came to: items accepted and refused (with a count per reason)."""

    accepted: int = 0
    rejected: int = 0
    reasons: Counter = field(default_factory=Counter)
    truncated: int = 0
    calls: int = 0

    def refuse(self, reason: str, n: int = 1) -> None:
        self.rejected += n
        self.reasons[reason] += n

    @property
    def message(self) -> str:
        if not self.rejected:
            return ""
        return "refused " + ", ".join(f"{n} ({r})" for r, n in self.reasons.most_common())


def any_value(v) -> Any:
    """An OTLP AnyValue as a Python value (arrays -> list, kvlists -> dict, bytes -> hex)."""
    kind = v.WhichOneof("value")
    if kind == "string_value":
        return v.string_value
    if kind == "int_value":
        return v.int_value
    if kind == "double_value":
        return v.double_value
    if kind == "bool_value":
        return v.bool_value
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return v.bytes_value.hex()
    return None


def attributes(kvs) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in kvs}


def as_text(v: Any) -> str:
    """How an attribute value is stored (the same str() Voxwatch's own span exporter uses)."""
    if isinstance(v, str):
        return v
    if isinstance(v, (list, dict)):
        return json.dumps(v, default=str)
    return str(v)


_ZERO_TRACE, _ZERO_SPAN = bytes(16), bytes(8)
_NO_ATTRIBUTES: dict[str, Any] = {}  # a span without attributes (read only)
# the attribute cache: values up to this many encoded bytes, this many of them at most
_CACHED_ATTRIBUTE_BYTES = 256
_CACHED_ATTRIBUTES = 65_536


def hex_column(ids, width: int | None = None) -> pa.Array:
    """Ids (bytes) as an Arrow column of lower-case hex text, the same as `pa.array([i.hex() for i in
    ids])` but in one pass over all of them (a Python str per id costs more than the Arrow insert of
    its row). `width`: every id is known to have this many bytes (checked ones: trace and span ids)."""
    n = len(ids)
    joined = b"".join(ids)
    data = joined.hex().encode("ascii")  # every id's digits, back to back
    if width is not None and len(joined) == n * width:
        offsets = np.arange(0, 2 * width * n + 1, 2 * width, dtype=np.int32)
    else:
        offsets = np.zeros(n + 1, dtype=np.int32)
        np.cumsum(np.fromiter(map(len, ids), dtype=np.int32, count=n) * 2, out=offsets[1:])
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))


def _cut(text: str, cap: int, res: IngestResult) -> str:
    """A value over the length limit, cut (and counted); the item itself is kept."""
    if len(text) <= cap:
        return text
    res.truncated += 1
    return text[:cap] + f"...[{len(text) - cap} more chars]"


def _first(attrs: dict, keys: tuple[str, ...]):
    """conventions.first, with the first key (the one the frameworks send) read without the loop."""
    v = attrs.get(keys[0])
    return v if v is not None or len(keys) == 1 else cv.first(attrs, keys)


def _model_labels(attrs: dict) -> tuple[str, str]:
    """The (provider, model) labels of a model call's measurements."""
    return str(_first(attrs, cv.PROVIDER) or ""), str(_first(attrs, cv.MODEL) or "")


_STAGES = cv.STAGE_SPANS
_TURN_SPANS = cv.TURN_SPANS


_TOKEN_METRICS = ((cv.INPUT_TOKENS, "voxwatch_llm_input_tokens_total"),
                  (cv.OUTPUT_TOKENS, "voxwatch_llm_output_tokens_total"),
                  (cv.CACHED_INPUT_TOKENS, "voxwatch_llm_cached_input_tokens_total"))


def _truthy(v: Any) -> bool:
    return v is True or (isinstance(v, str) and v.lower() == "true")


@dataclass
class _Turn:
    number: int
    start_s: float
    end_s: float
    latency_s: float | None
    error: bool


@dataclass
class MappedTraces:
    """One request's spans mapped, before anything is written, counted or remembered: what
    `TraceIngest.map` returns and `TraceIngest.apply` takes. The split lets a mapping worker process
    (telemetry/ingest/workers.py) do the costly part (reading every span and attribute, building the
    `spans` batch) while the receiver keeps the only state that spans requests (the open traces a call
    record is gathered from), the sink and the instruments. Everything in it pickles."""

    result: IngestResult
    spans: dict[str, Any] | None  # span_columns' columnar batch, None when no span was kept
    conversations: list  # (trace id, start ns, end ns, error, attributes, Source) of the calls it closes
    notes: dict  # what the open traces learn, per trace id: [language or None, transcript lines, turns (sid, number, start s, end s, latency, error)]
    stage_ns: dict  # (stage, region) -> span durations in ns
    obs: dict  # (metric, labels) -> values to observe
    incs: dict  # (metric, labels) -> amount to add
    per_source: Counter  # spans kept per source name


@dataclass
class _OpenTrace:
    """What the call record of one trace needs, gathered as its spans arrive."""

    turns: dict[bytes, _Turn] = field(default_factory=dict)
    language: str = ""
    transcript: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Source:
    """Who sent a resource's spans or points: its labels and the region its calls are filed under."""

    name: str
    environment: str
    region: str

    @classmethod
    def of(cls, resource_attrs: dict[str, Any]) -> Source:
        name = str(resource_attrs.get(cv.SOURCE) or cv.UNKNOWN_SOURCE)
        env = cv.first(resource_attrs, cv.ENVIRONMENT)
        region = cv.first(resource_attrs, cv.REGION)
        return cls(name, "" if env is None else str(env), str(region) if region else name)


class TraceIngest:
    """Maps ExportTraceServiceRequests into rows through a sink and measurements into a Telemetry."""

    def __init__(self, telemetry, *, limits: IngestLimits | None = None, clock=None,
                 max_open_traces: int = 100_000) -> None:
        # telemetry None: a mapper that only maps (`map`), as a mapping worker process holds
        self.telemetry = telemetry
        self.sink = telemetry.sink if telemetry is not None else None  # rows go where the Telemetry's own spans and call records go
        self.limits = limits or IngestLimits()
        self.clock = clock or (telemetry.clock if telemetry is not None else None)
        self.max_open_traces = max_open_traces
        self._open: OrderedDict[bytes, _OpenTrace] = OrderedDict()
        # encoded attribute (bytes) -> (key, typed value, stored text): most of a pipeline's attributes repeat
        self._attr_cache: dict[bytes, tuple[str, Any, str]] = {}
        self._stage_ns: dict[tuple[str, str], list[int]] = {}
        tel = telemetry if telemetry is not None else {}
        calls = tel["voxwatch_trace_calls_recorded_total"] if "voxwatch_trace_calls_recorded_total" in tel else None
        self._calls_recorded = calls.labels(sampled="false") if calls is not None else None  # as the tracer counts them
        self._m = {name: tel[name] for name in (
            "voxwatch_stage_latency_seconds", "voxwatch_stage_errors_total", "voxwatch_turns_total",
            "voxwatch_turn_latency_seconds", "voxwatch_turn_barge_ins_total", "voxwatch_llm_time_to_first_token_seconds",
            "voxwatch_tts_time_to_first_byte_seconds", "voxwatch_stt_final_latency_seconds",
            "voxwatch_vad_endpointing_delay_seconds", "voxwatch_llm_input_tokens_total",
            "voxwatch_llm_output_tokens_total", "voxwatch_llm_cached_input_tokens_total", "voxwatch_tts_characters_total",
            "voxwatch_ingest_spans_total",
        ) if name in tel}

    # ---- the request
    def ingest(self, request) -> IngestResult:
        """Map one ExportTraceServiceRequest (or its attribute view, telemetry/ingest/otlp.py) into the
        sink, the open traces and the instruments."""
        return self.apply(self.map(request))

    def map(self, request, now_ns: int | None = None) -> MappedTraces:
        """Read one request into its `spans` batch and what it tells the open traces and the instruments,
        changing nothing outside this call (but the attribute cache). `now_ns`: the receiver's clock, for
        the timestamp limits (a mapping worker has none of its own); 400 (OtlpError) for a broken part."""
        request = traces_view(request)
        res = IngestResult()
        if now_ns is None:
            now_ns = int(self.clock.now() * 1e9)
        lo = now_ns - int(self.limits.max_age_s * 1e9)
        hi = now_ns + int(self.limits.max_future_s * 1e9)
        # the batch: one tuple per span (columns at the end), attributes flat (every span's in one list,
        # bounded by offsets)
        rows: list[tuple] = []
        flat_keys: list[str] = []
        flat_texts: list[str] = []
        offsets = [0]
        conversations = []  # closed after every turn of the request is known, whatever the order inside it
        per_source: Counter = Counter()
        self._obs: dict[tuple, list] = defaultdict(list)  # (metric, labels) -> values, observed once per request
        self._incs: dict[tuple, float] = defaultdict(float)
        self._stage_ns: dict[tuple[str, str], list[int]] = {}  # (stage, region) -> span durations in ns
        self._notes: dict[bytes, list] = {}  # one entry per trace: replayed per trace, not per span, by apply
        cap = self.limits.max_attribute_chars
        max_attrs = self.limits.max_attributes
        measured = cv.MEASURED_SPANS
        conversation_spans = cv.CONVERSATION_SPANS
        cached = self._attr_cache.get
        decode_attr = self._decode_attribute
        measure = self._measure
        add_row = rows.append
        for rs in request.resource_spans:
            rattrs = attributes(rs.resource.attributes)
            src = Source.of(rattrs)
            rkeys = list(rattrs)
            rtexts = [_cut(as_text(v), cap, res) for v in rattrs.values()]
            rkeyset = frozenset(rkeys)
            n_source = len(rows)
            for ss in rs.scope_spans:
                scope = ss.scope.name
                extra_keys = [*rkeys, "otel.scope.name"] if scope else rkeys
                extra_texts = [*rtexts, scope] if scope else rtexts
                for span in ss.spans:
                    tid, sid = span.trace_id, span.span_id
                    if len(tid) != 16 or len(sid) != 8 or tid == _ZERO_TRACE or sid == _ZERO_SPAN:
                        res.refuse("missing_id")
                        continue
                    start, end = span.start_time_unix_nano, span.end_time_unix_nano
                    if not start or end < start:
                        res.refuse("bad_timestamp")
                        continue
                    if start < lo or end > hi:
                        res.refuse("timestamp_out_of_range")
                        continue
                    # each attribute: (key, typed value for the conventions, text for the row), cached by its bytes
                    entries = [cached(raw) or decode_attr(raw, res) for raw in span.attributes]
                    at = len(flat_keys)
                    if entries:
                        keys, pys, texts = zip(*entries)
                        attrs = dict(zip(keys, pys))
                        flat_keys += keys
                        flat_texts += texts
                        if rkeyset.isdisjoint(attrs):
                            flat_keys += extra_keys
                            flat_texts += extra_texts
                        else:  # the span's own value wins over the resource's
                            for k, t in zip(extra_keys, extra_texts, strict=True):
                                if k not in attrs:
                                    flat_keys.append(k)
                                    flat_texts.append(t)
                    else:
                        attrs = _NO_ATTRIBUTES
                        flat_keys += extra_keys
                        flat_texts += extra_texts
                    error = False
                    raw_status = span.status  # encoded (the view): empty when the span has no status
                    if raw_status:
                        error = self._status(raw_status, flat_keys, flat_texts, res)
                    if span.events:
                        flat_keys.append("otel.events")
                        flat_texts.append(_cut(as_text([{"name": e.name, **attributes(e.attributes)} for e in span.events]), cap, res))
                    if len(flat_keys) - at > max_attrs:
                        dropped = len(flat_keys) - at - max_attrs + 1
                        res.truncated += dropped
                        del flat_keys[at + max_attrs - 1:], flat_texts[at + max_attrs - 1:]
                        flat_keys.append("otel.dropped_attributes_count")
                        flat_texts.append(str(dropped))
                    offsets.append(len(flat_keys))
                    name = span.name
                    turn_no = attrs.get("turn.number")
                    add_row((tid, sid, span.parent_span_id, turn_no if type(turn_no) is int and 0 <= turn_no < 65536 else 0,
                             name, start, end, error))
                    if name in measured or "gen_ai.usage.input_tokens" in attrs or "gen_ai.usage.output_tokens" in attrs:
                        if name in conversation_spans:
                            conversations.append((tid, start, end, error, attrs, src))
                        else:
                            measure(name, tid, sid, start, end, error, attrs, src)
            if len(rows) > n_source:
                per_source[src.name] += len(rows) - n_source
        res.accepted = len(rows)
        mapped = MappedTraces(res, self._span_batch(rows, flat_keys, flat_texts, offsets) if rows else None,
                              conversations, self._notes, self._stage_ns, dict(self._obs), dict(self._incs), per_source)
        self._notes, self._stage_ns, self._obs, self._incs = {}, {}, defaultdict(list), defaultdict(float)
        return mapped

    def apply(self, mapped: MappedTraces) -> IngestResult:
        """A mapped request into the sink (its spans, then the calls it closes), the open traces and the
        instruments; its IngestResult."""
        res = mapped.result
        if mapped.spans is not None and self.sink is not None:
            self._write_spans(mapped.spans)
        for tid, (language, lines, turns) in mapped.notes.items():
            t = self._open_trace(tid)
            if language:
                t.language = language
            t.transcript += lines
            for sid, number, start_s, end_s, latency, error in turns:
                t.turns[sid] = _Turn(number if number is not None else len(t.turns) + 1, start_s, end_s, latency, error)
        if mapped.conversations:
            res.calls = self._close_calls(mapped.conversations)
        self._record_measurements(mapped)
        m = self._m.get("voxwatch_ingest_spans_total")
        if m is not None:
            for name, n in mapped.per_source.items():
                m.labels(source=name).inc(n)
        return res

    def _decode_attribute(self, raw: bytes, res: IngestResult) -> tuple[str, Any, str]:
        """One encoded KeyValue (a miss of the cache) through the official message: its key, its typed
        value and its stored text (cut past the limit, and then not cached, so each cut is counted).
        Doubles are not cached: they are measurements, which hardly ever repeat."""
        try:
            kv = KeyValue.FromString(raw)
        except DecodeError as exc:
            raise OtlpError(400, "malformed_protobuf", f"a span attribute is not a valid KeyValue: {exc}") from None
        value = kv.value
        kind = value.WhichOneof("value")
        if kind == "double_value":
            py = value.double_value
            return kv.key, py, str(py)
        if kind == "string_value":
            py = text = value.string_value
        else:
            py = any_value(value)
            text = as_text(py)
        if len(text) > self.limits.max_attribute_chars:
            return kv.key, py, _cut(text, self.limits.max_attribute_chars, res)
        entry = (kv.key, py, text)
        if len(raw) <= _CACHED_ATTRIBUTE_BYTES:
            cache = self._attr_cache
            if len(cache) >= _CACHED_ATTRIBUTES:
                cache.clear()  # bounded: a sender whose values never repeat only costs misses
            cache[raw] = entry
        return entry

    def _status(self, raw: bytes, flat_keys: list, flat_texts: list, res: IngestResult) -> bool:
        """A span's encoded Status through the official message: its description kept as an attribute;
        whether it says error."""
        try:
            status = trace_pb2.Status.FromString(raw)
        except DecodeError as exc:
            raise OtlpError(400, "malformed_protobuf", f"a span status is not a valid Status: {exc}") from None
        if status.message:
            flat_keys.append("otel.status_description")
            flat_texts.append(_cut(status.message, self.limits.max_attribute_chars, res))
        return status.code == _STATUS_ERROR

    @staticmethod
    def _span_batch(rows: list[tuple], flat_keys, flat_texts, offsets) -> dict[str, Any]:
        """The request's `spans` rows through the project's span-row builder, in its columnar form."""
        tids, sids, parents, turns, names, starts, ends, errors = zip(*rows)
        start_ns = np.array(starts, dtype=np.int64)
        hexes = hex_column(tids, 16)  # ids checked above: 16 and 8 bytes
        cols = span_columns(trace_id=hexes, span_id=hex_column(sids, 8), parent_span_id=hex_column(parents),
                            call_id=hexes, turn=turns, name=names, start_us=start_ns // 1000,
                            duration_ms=(np.array(ends, dtype=np.int64) - start_ns) / 1e6,
                            status=["error" if e else "ok" for e in errors],
                            attr_keys=flat_keys, attr_values=flat_texts, attr_offsets=offsets)
        return cols

    def _write_spans(self, cols: dict[str, Any]) -> None:
        write = getattr(self.sink, "write_typed", None)
        if write is not None:
            write("spans", cols)
        else:  # a sink without the typed path (a test's recorder): lists per span, as span_columns' row form
            self.sink.write_columns("spans", {k: v.to_pylist() if isinstance(v, pa.Array) else v for k, v in cols.items()})

    def _record_measurements(self, mapped: MappedTraces) -> None:
        """A request's observations into the instruments, one call per series (not per span)."""
        m = self._m
        inst = m.get("voxwatch_stage_latency_seconds")
        for labels, ns in mapped.stage_ns.items():
            if inst is not None:
                inst.labels(*labels).observe_many(np.array(ns, dtype=np.float64) / 1e9)
        for (metric, labels), values in mapped.obs.items():
            inst = m.get(metric)
            if inst is not None:
                inst.labels(*labels).observe_many(values)
        for (metric, labels), n in mapped.incs.items():
            inst = m.get(metric)
            if inst is not None:
                inst.labels(*labels).inc(n)

    # ---- measurements (the catalog's instruments) and the call record's gathering
    def _open_trace(self, tid: bytes) -> _OpenTrace:
        t = self._open.get(tid)
        if t is None:
            t = self._open[tid] = _OpenTrace()
            if len(self._open) > self.max_open_traces:
                self._open.popitem(last=False)  # a trace whose conversation never came
        else:
            self._open.move_to_end(tid)
        return t

    def _measure(self, name, tid, sid, start, end, error, attrs, src: Source) -> None:
        """One span's measurements. Per span this is the hot path: the stage latency goes in as
        nanoseconds (converted once per series in _record_measurements) and each convention's first
        key, the one the frameworks send, is read before falling back to its aliases."""
        labels = None  # (provider, model), read once for the span
        stage = _STAGES.get(name)
        if stage is not None:
            region = src.region
            key = (stage, region)
            durations = self._stage_ns.get(key)
            if durations is None:
                durations = self._stage_ns[key] = []
            durations.append(end - start)
            if error:
                self._incs[("voxwatch_stage_errors_total", (stage, region, "exception"))] += 1
            if stage == "llm":
                ttft = finite_float(_first(attrs, cv.LLM_TTFT))
                if ttft is not None:
                    labels = _model_labels(attrs)
                    self._obs[("voxwatch_llm_time_to_first_token_seconds", labels)].append(ttft)
            elif stage == "stt":
                self._stt(tid, attrs)
            elif stage == "tts":
                self._tts(tid, attrs)
        # tokens wherever a model call reports them (Pipecat's llm span, LiveKit's llm_request)
        if "gen_ai.usage.input_tokens" in attrs or "gen_ai.usage.output_tokens" in attrs:
            labels = labels or _model_labels(attrs)
            incs = self._incs
            for keys, metric in _TOKEN_METRICS:
                n = finite_float(_first(attrs, keys))
                if n and n > 0:
                    incs[(metric, labels)] += n
        if name in _TURN_SPANS:
            self._turn(tid, sid, start, end, error, attrs, src.region)

    def _stt(self, tid, attrs) -> None:
        language = _first(attrs, cv.LANGUAGE)
        lang = str(language or "")
        lat = finite_float(_first(attrs, cv.STT_LATENCY))
        if lat is not None:
            self._obs[("voxwatch_stt_final_latency_seconds", (lang,))].append(lat)
        text = attrs.get("transcript")
        if language or text:
            note = self._note(tid)
            if language:
                note[0] = lang
            if text:
                note[1].append(f"caller: {text}")

    def _tts(self, tid, attrs) -> None:
        language = _first(attrs, cv.LANGUAGE)
        lang = str(language or "")
        ttfb = finite_float(_first(attrs, cv.TTS_TTFB))
        if ttfb is not None:
            self._obs[("voxwatch_tts_time_to_first_byte_seconds", (lang,))].append(ttfb)
        chars = finite_float(_first(attrs, cv.CHARACTERS))
        if chars and chars > 0:
            self._incs[("voxwatch_tts_characters_total", (lang,))] += chars
        text = attrs.get("text")
        if text:
            self._note(tid)[1].append(f"agent: {text}")

    def _turn(self, tid, sid, start, end, error, attrs, region) -> None:
        obs, incs = self._obs, self._incs
        incs[("voxwatch_turns_total", (region,))] += 1
        latency = finite_float(_first(attrs, cv.TURN_LATENCY))
        if latency is not None:
            obs[("voxwatch_turn_latency_seconds", (region,))].append(latency)
        eou = finite_float(_first(attrs, cv.END_OF_UTTERANCE))
        if eou is not None:
            obs[("voxwatch_vad_endpointing_delay_seconds", (region,))].append(eou)
        stt = finite_float(_first(attrs, cv.TURN_STT_LATENCY))
        if stt is not None:
            obs[("voxwatch_stt_final_latency_seconds", (str(_first(attrs, cv.LANGUAGE) or ""),))].append(stt)
        if _truthy(_first(attrs, cv.INTERRUPTED)) and not _truthy(attrs.get(cv.NOT_A_BARGE_IN)):
            incs[("voxwatch_turn_barge_ins_total", (region,))] += 1
        number = attrs.get("turn.number")
        self._note(tid)[2].append((sid, number if isinstance(number, int) else None, start / 1e9, end / 1e9,
                                   latency, error))

    def _note(self, tid: bytes) -> list:
        """What this request tells the open trace `tid` (see MappedTraces.notes)."""
        note = self._notes.get(tid)
        if note is None:
            note = self._notes[tid] = [None, [], []]
        return note

    def _close_calls(self, conversations) -> int:
        """The calls' rows in `calls`, through the project's call-record builder (one call for the request)."""
        k = len(conversations)
        gathered = [self._open.pop(tid, None) or _OpenTrace() for tid, *_ in conversations]
        # a turn's latency for the record: the one the sender measured, else the turn span's duration
        latencies = [[(t.end_s - t.start_s if t.latency_s is None else t.latency_s) * 1000
                      for t in sorted(g.turns.values(), key=lambda x: (x.number, x.start_s))] for g in gathered]
        matrix = np.zeros((k, max(1, max(map(len, latencies)))))
        for i, row in enumerate(latencies):
            matrix[i, : len(row)] = row
        hexes = [tid.hex() for tid, *_ in conversations]
        cols = call_columns(
            call_id=hexes, trace_id=hexes,  # the spans are the sender's; the record points at them
            started_s=[c[1] / 1e9 for c in conversations], ended_s=[c[2] / 1e9 for c in conversations],
            region=[c[5].region for c in conversations], scenario=[c[5].name for c in conversations],
            outcome=[str(c[4].get("voxwatch.outcome") or ("failed" if c[3] else "completed")) for c in conversations],
            turn_latency_ms=matrix, turns=[len(x) for x in latencies], language=[g.language for g in gathered],
            channel=cv.CHANNEL, degradation_level="", transcript=["\n".join(g.transcript) for g in gathered])
        if self.sink is not None:
            self.sink.write_columns("calls", cols)
        if self._calls_recorded is not None:
            self._calls_recorded.inc(k)
        return k

    @property
    def open_traces(self) -> int:
        return len(self._open)
