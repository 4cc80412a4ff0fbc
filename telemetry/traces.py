"""Per-call traces: conversation -> turn -> stage spans through the OpenTelemetry API, and call records.

The span tree is the one Pipecat/LiveKit-style voice stacks emit: a `conversation` span per call, a
`turn` span per caller utterance and its answer, and stage spans under each turn (`stt`, `nlu`, `llm`,
`tts`, `tool`, ...) carrying `gen_ai.*` attributes for model calls. Each Telemetry has its own SDK
TracerProvider whose span processor turns finished spans into rows of the `spans` table and hands
them to the sink in batches; `CallTrace.end()` writes the call's row into `calls`.

Time comes from the injected clock (start/end passed in ns), so a virtual-clock simulation yields
spans on simulated time. Sampling is decided once per call (`sample_ratio`): an unsampled call costs
almost nothing and still gets its call record. Call and trace ids live here, never in metric labels.

`call_columns` / `call_record` are the one builder of `calls` rows: the tracer, the simulator's
batches and OTLP ingest of other pipelines' traces all build their rows with it.

    call = tel.traces.start_call("c-1", region="eu-west", language="en")
    turn = call.start_turn()
    stt = turn.stage("stt"); ...; stt.end()
    turn.record_stage("llm", start, end, llm_attributes("openai", "gpt-4o-mini", 812, 41))
    turn.end()
    call.end(outcome="completed")
"""

from __future__ import annotations

import random
import threading
from collections import Counter as _Tally
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import Status, StatusCode

from telemetry.clock import WallClock
from telemetry.quantiles import row_percentiles

# attribute keys shared with voice stacks (conversation/turn) and the OpenTelemetry GenAI conventions
CALL_ID = "conversation.id"
TURN_NUMBER = "turn.number"
GEN_AI_SYSTEM = "gen_ai.system"
GEN_AI_OPERATION = "gen_ai.operation.name"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_TOOL_NAME = "gen_ai.tool.name"
_ROW_KEYS = (CALL_ID, TURN_NUMBER)  # stored in their own columns, not in attr_keys


def llm_attributes(provider: str, model: str, input_tokens: int, output_tokens: int,
                   time_to_first_token_s: float | None = None, cached: bool = False) -> dict[str, Any]:
    """The gen_ai.* attributes of an `llm` span."""
    attrs: dict[str, Any] = {
        GEN_AI_SYSTEM: provider,
        GEN_AI_OPERATION: "chat",
        GEN_AI_REQUEST_MODEL: model,
        GEN_AI_INPUT_TOKENS: int(input_tokens),
        GEN_AI_OUTPUT_TOKENS: int(output_tokens),
    }
    if time_to_first_token_s is not None:
        attrs["gen_ai.response.time_to_first_token"] = float(time_to_first_token_s)
    if cached:
        attrs["voxwatch.cache_hit"] = True
    return attrs


def tool_attributes(tool: str, service: str | None = None) -> dict[str, Any]:
    """The attributes of a `tool` span (an integration call the response step made)."""
    attrs: dict[str, Any] = {GEN_AI_OPERATION: "execute_tool", GEN_AI_TOOL_NAME: tool}
    if service:
        attrs["voxwatch.service"] = service
    return attrs


CALL_COLUMNS = (
    "call_id", "started_ms", "ended_ms", "region", "language", "scenario", "channel", "intents", "outcome",
    "handoff", "handoff_reason", "turns", "latency_p50_ms", "latency_p95_ms", "latency_max_ms",
    "degradation_level", "transcript", "trace_id",
)


def _column(value, k: int) -> list:
    """A text column: one string for every row, or one per row."""
    if isinstance(value, str):
        return [value] * k
    out = value.tolist() if isinstance(value, np.ndarray) else list(value)
    if len(out) != k:
        raise ValueError(f"expected {k} values, got {len(out)}")
    return out


def call_columns(*, call_id: Sequence[str], started_s, ended_s, region, outcome, turn_latency_ms: np.ndarray,
                 turns, language="", scenario="", channel="", intents: Sequence[Sequence[str]] | None = None,
                 handoff_reason="", degradation_level="NORMAL", transcript="", trace_id="") -> dict[str, Any]:
    """Rows of the `calls` table, as columns: the one builder of call records (the turn runner's
    tracer, the simulator's batches, OTLP ingest). `turn_latency_ms` holds each call's turn latencies
    in its first `turns[i]` cells (a row per call); P50/P95 are nearest-rank (telemetry.quantiles).
    Text arguments are one string for every call or one per call; `handoff` is 1 when the call ended
    with a handoff or has a handoff reason."""
    k = len(call_id)
    turns = np.asarray(turns, dtype=np.int64).reshape(k)
    p50, p95, mx = row_percentiles(np.asarray(turn_latency_ms, dtype=np.float64).reshape(k, -1), turns)
    outcomes = _column(outcome, k)
    reasons = _column(handoff_reason, k)
    return {
        "call_id": list(call_id),
        "started_ms": (np.asarray(started_s, dtype=np.float64).reshape(k) * 1000).astype(np.int64),
        "ended_ms": (np.asarray(ended_s, dtype=np.float64).reshape(k) * 1000).astype(np.int64),
        "region": _column(region, k),
        "language": _column(language, k),
        "scenario": _column(scenario, k),
        "channel": _column(channel, k),
        "intents": [list(x) for x in intents] if intents is not None else [[] for _ in range(k)],
        "outcome": outcomes,
        "handoff": np.array([1 if (r or o == "handoff") else 0 for r, o in zip(reasons, outcomes, strict=True)], np.uint8),
        "handoff_reason": reasons,
        "turns": turns.astype(np.uint16),
        "latency_p50_ms": p50,
        "latency_p95_ms": p95,
        "latency_max_ms": mx,
        "degradation_level": _column(degradation_level, k),
        "transcript": _column(transcript, k),
        "trace_id": _column(trace_id, k),
    }


def call_record(*, call_id: str, started_s: float, ended_s: float, region: str, outcome: str,
                turn_latencies_ms: Sequence[float] = (), language: str = "", scenario: str = "", channel: str = "",
                intents: Sequence[str] = (), handoff_reason: str = "", degradation_level: str = "NORMAL",
                transcript: str = "", trace_id: str = "") -> dict[str, Any]:
    """One `calls` row as a dict (plain Python values), built by `call_columns`."""
    lat = np.asarray(turn_latencies_ms, dtype=np.float64).reshape(1, -1)
    cols = call_columns(call_id=[call_id], started_s=[started_s], ended_s=[ended_s], region=region, outcome=outcome,
                        turn_latency_ms=lat if lat.size else np.zeros((1, 1)), turns=[lat.size], language=language,
                        scenario=scenario, channel=channel, intents=[list(intents)], handoff_reason=handoff_reason,
                        degradation_level=degradation_level, transcript=transcript, trace_id=trace_id)
    return {name: (col[0].item() if isinstance(col, np.ndarray) else col[0]) for name, col in cols.items()}


SPAN_COLUMNS = (
    "trace_id", "span_id", "parent_span_id", "call_id", "turn", "name", "start_us", "duration_ms", "status",
    "attr_keys", "attr_values",
)


def span_columns(*, trace_id: Sequence[str], span_id: Sequence[str], parent_span_id, call_id, turn, name,
                 start_us, duration_ms, status="ok", attr_keys=None, attr_values=None,
                 attr_offsets=None) -> dict[str, Any]:
    """Rows of the `spans` table, as columns: the one builder of span rows (the tracer's span
    processor, the simulator's sampled calls, OTLP ingest). Times in the table's units (start in
    microseconds since the epoch, duration in milliseconds); text arguments are one string for every
    span or one per span; attributes are a list of keys and a list of values per span.

    The columnar form, for batches too large to afford a list per span (OTLP ingest): with
    `attr_offsets` (k + 1 ascending ints) `attr_keys`/`attr_values` are flat, every span's in one
    list, span i's at [offsets[i]:offsets[i + 1]]. The attribute columns are then Arrow lists built
    once from the flat lists and the numbers come in the table's types, so the batch is ready for
    `Sink.write_typed` with nothing left to check value by value."""
    k = len(trace_id)
    if attr_offsets is not None:
        return _span_columns_flat(k, trace_id=trace_id, span_id=span_id, parent_span_id=parent_span_id,
                                  call_id=call_id, turn=turn, name=name, start_us=start_us, duration_ms=duration_ms,
                                  status=status, attr_keys=attr_keys, attr_values=attr_values,
                                  attr_offsets=attr_offsets)
    cols = {
        "trace_id": list(trace_id), "span_id": _column(span_id, k), "parent_span_id": _column(parent_span_id, k),
        "call_id": _column(call_id, k), "turn": turn, "name": _column(name, k), "start_us": start_us,
        "duration_ms": duration_ms, "status": _column(status, k),
        "attr_keys": list(attr_keys) if attr_keys is not None else [[] for _ in range(k)],
        "attr_values": list(attr_values) if attr_values is not None else [[] for _ in range(k)],
    }
    for key in ("turn", "start_us", "duration_ms", "attr_keys", "attr_values"):
        if len(cols[key]) != k:
            raise ValueError(f"spans column {key}: expected {k} values, got {len(cols[key])}")
    return cols


def _span_columns_flat(k: int, *, trace_id, span_id, parent_span_id, call_id, turn, name, start_us, duration_ms,
                       status, attr_keys, attr_values, attr_offsets) -> dict[str, Any]:
    """span_columns' columnar form (see there): typed numbers, attributes as Arrow lists."""
    offsets = np.asarray(attr_offsets, dtype=np.int32)
    if offsets.shape != (k + 1,) or (k and (offsets[0] != 0 or np.any(np.diff(offsets) < 0))):
        raise ValueError(f"spans attr_offsets: expected {k + 1} ascending offsets from 0, got {offsets.shape[0]}")
    n_attrs = int(offsets[-1]) if k else 0
    if len(attr_keys) != n_attrs or len(attr_values) != n_attrs:
        raise ValueError(f"spans attributes: offsets end at {n_attrs}, got {len(attr_keys)} keys and {len(attr_values)} values")
    pa_offsets = pa.array(offsets)
    cols = {
        "trace_id": _text_column(trace_id, k), "span_id": _text_column(span_id, k),
        "parent_span_id": _text_column(parent_span_id, k), "call_id": _text_column(call_id, k),
        "turn": np.asarray(turn, dtype=np.uint16),
        "name": _column(name, k), "start_us": np.asarray(start_us, dtype=np.int64),
        "duration_ms": np.asarray(duration_ms, dtype=np.float64), "status": _column(status, k),
        "attr_keys": pa.ListArray.from_arrays(pa_offsets, pa.array(attr_keys, type=pa.string())),
        "attr_values": pa.ListArray.from_arrays(pa_offsets, pa.array(attr_values, type=pa.string())),
    }
    for key in ("turn", "start_us", "duration_ms"):
        if len(cols[key]) != k:
            raise ValueError(f"spans column {key}: expected {k} values, got {len(cols[key])}")
    if not np.isfinite(cols["duration_ms"]).all():
        raise ValueError("spans column duration_ms: non-finite value")
    return cols


def _text_column(value, k: int):
    """A text column of the columnar form: an Arrow string array as it is (checked for length), else as _column."""
    if isinstance(value, pa.Array):
        if len(value) != k or not pa.types.is_string(value.type):
            raise ValueError(f"expected {k} strings, got {len(value)} of {value.type}")
        return value
    return _column(value, k)


def _ns(seconds: float) -> int:
    return int(round(seconds * 1e9))


class _SeededIds(IdGenerator):
    """Trace/span ids from a seeded generator, so a seeded simulation replays the same ids."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def generate_span_id(self) -> int:
        return self._rng.getrandbits(64) or 1

    def generate_trace_id(self) -> int:
        return self._rng.getrandbits(128) or 1


class SpanRowProcessor(SpanProcessor):
    """Buffers finished spans as `spans` rows and hands them to the sink in columnar batches."""

    def __init__(self, tracing: CallTracing, batch_size: int) -> None:
        self._tracing = tracing
        self._batch_size = batch_size
        self._rows: list[tuple] = []
        self._lock = threading.Lock()

    def on_start(self, span, parent_context=None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        attrs = span.attributes or {}
        keys = [k for k in attrs if k not in _ROW_KEYS]
        parent = span.parent
        start = span.start_time or 0
        end = span.end_time or start
        row = (
            format(span.context.trace_id, "032x"),
            format(span.context.span_id, "016x"),
            format(parent.span_id, "016x") if parent is not None else "",
            str(attrs.get(CALL_ID, "")),
            int(attrs.get(TURN_NUMBER, 0)),
            span.name,
            start // 1000,
            (end - start) / 1e6,
            "error" if span.status.status_code is StatusCode.ERROR else "ok",
            keys,
            [str(attrs[k]) for k in keys],
        )
        with self._lock:
            self._rows.append(row)
            full = len(self._rows) >= self._batch_size
        if full:
            self.flush()

    def flush(self) -> int:
        with self._lock:
            rows, self._rows = self._rows, []
        if not rows:
            return 0
        cols = [list(c) for c in zip(*rows, strict=False)]
        self._tracing._emit("spans", span_columns(**dict(zip(SPAN_COLUMNS, cols, strict=True))))
        self._tracing._count_spans(_Tally(cols[5]))
        return len(rows)

    def shutdown(self) -> None:
        self.flush()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        self.flush()
        return True


class _NoopSpan:
    """What an unsampled call hands out for stages: every method does nothing."""

    __slots__ = ()
    sampled = False

    def set_attribute(self, key: str, value: Any) -> None:
        pass

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        pass

    def end(self, end: float | None = None, error: str | None = None,
            attributes: Mapping[str, Any] | None = None) -> None:
        pass


_NOOP_SPAN = _NoopSpan()


class StageSpan:
    """One stage of one turn (stt, nlu, llm, tts, tool, ...), started and not yet ended."""

    __slots__ = ("_span", "_clock")
    sampled = True

    def __init__(self, span, clock) -> None:
        self._span = span
        self._clock = clock

    def set_attribute(self, key: str, value: Any) -> None:
        self._span.set_attribute(key, value)

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        self._span.set_attributes(attributes)

    def end(self, end: float | None = None, error: str | None = None,
            attributes: Mapping[str, Any] | None = None) -> None:
        if attributes:
            self._span.set_attributes(attributes)
        if error is not None:
            self._span.set_status(Status(StatusCode.ERROR, error))
        self._span.end(end_time=_ns(self._clock.now() if end is None else end))


class TurnTrace:
    """One conversation turn: its stage spans, and its latency for the call record."""

    __slots__ = ("call", "number", "start", "_span", "_ctx", "_base", "ended")

    def __init__(self, call: CallTrace, number: int, start: float) -> None:
        self.call = call
        self.number = number
        self.start = start
        self.ended = False
        if call.sampled:
            self._base = {CALL_ID: call.call_id, TURN_NUMBER: number}
            self._span = call._tracing.tracer.start_span(
                "turn", context=call._ctx, start_time=_ns(start), attributes=self._base
            )
            self._ctx = otel_trace.set_span_in_context(self._span)
        else:
            self._span = self._ctx = self._base = None

    def stage(self, name: str, start: float | None = None,
              attributes: Mapping[str, Any] | None = None) -> StageSpan | _NoopSpan:
        """Start a stage span now (or at `start`); end it with `.end()`."""
        if self._span is None:
            return _NOOP_SPAN
        clock = self.call._tracing.clock
        attrs = {**self._base, **attributes} if attributes else self._base
        span = self.call._tracing.tracer.start_span(
            name, context=self._ctx, start_time=_ns(clock.now() if start is None else start), attributes=attrs
        )
        return StageSpan(span, clock)

    def record_stage(self, name: str, start: float, end: float,
                     attributes: Mapping[str, Any] | None = None, error: str | None = None) -> None:
        """A stage whose start and end are already known (the simulator's path): one call, no handle."""
        if self._span is None:
            return
        attrs = {**self._base, **attributes} if attributes else self._base
        span = self.call._tracing.tracer.start_span(name, context=self._ctx, start_time=_ns(start), attributes=attrs)
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, error))
        span.end(end_time=_ns(end))

    def end(self, end: float | None = None, latency_s: float | None = None, error: str | None = None,
            attributes: Mapping[str, Any] | None = None) -> None:
        """Close the turn. `latency_s` is the caller-perceived latency for the call record (default: the
        turn span's duration)."""
        if self.ended:
            return
        self.ended = True
        t_end = self.call._tracing.clock.now() if end is None else end
        self.call._latencies.append(t_end - self.start if latency_s is None else latency_s)
        if self._span is not None:
            if attributes:
                self._span.set_attributes(attributes)
            if latency_s is not None:
                self._span.set_attribute("voxwatch.turn_latency_s", float(latency_s))
            if error is not None:
                self._span.set_status(Status(StatusCode.ERROR, error))
            self._span.end(end_time=_ns(t_end))


class CallTrace:
    """One call: the conversation span (when sampled) and what its call record needs."""

    def __init__(self, tracing: CallTracing, call_id: str, *, region: str, language: str, channel: str,
                 scenario: str, start: float, sampled: bool, attributes: Mapping[str, Any] | None) -> None:
        self._tracing = tracing
        self.call_id = call_id
        self.region = region
        self.language = language
        self.channel = channel
        self.scenario = scenario
        self.start = start
        self.sampled = sampled
        self.intents: list[str] = []
        self.transcript_lines: list[str] = []
        self._latencies: list[float] = []
        self._turns = 0
        self.ended = False
        if sampled:
            attrs = {CALL_ID: call_id, "voxwatch.region": region, "voxwatch.language": language,
                     "voxwatch.channel": channel}
            if attributes:
                attrs.update(attributes)
            self._span = tracing.tracer.start_span("conversation", start_time=_ns(start), attributes=attrs)
            self._ctx = otel_trace.set_span_in_context(self._span)
            self.trace_id = format(self._span.get_span_context().trace_id, "032x")
        else:
            self._span = self._ctx = None
            self.trace_id = ""

    @property
    def turns(self) -> int:
        return self._turns

    def start_turn(self, start: float | None = None) -> TurnTrace:
        self._turns += 1
        return TurnTrace(self, self._turns, self._tracing.clock.now() if start is None else start)

    def add_intent(self, intent: str) -> None:
        self.intents.append(intent)

    def end(self, outcome: str, *, end: float | None = None, handoff_reason: str = "",
            intents: Iterable[str] | None = None, degradation_level: str = "", transcript: str | None = None,
            error: str | None = None) -> dict[str, Any]:
        """Close the conversation span and write the call's row into `calls`; returns the row."""
        if self.ended:
            raise RuntimeError(f"call {self.call_id} already ended")
        self.ended = True
        t_end = self._tracing.clock.now() if end is None else end
        row = call_record(
            call_id=self.call_id, started_s=self.start, ended_s=t_end, region=self.region, outcome=outcome,
            turn_latencies_ms=[x * 1000 for x in self._latencies], language=self.language, scenario=self.scenario,
            channel=self.channel, intents=list(self.intents if intents is None else intents),
            handoff_reason=handoff_reason, degradation_level=degradation_level,
            transcript="\n".join(self.transcript_lines) if transcript is None else transcript, trace_id=self.trace_id,
        )
        if self._span is not None:
            self._span.set_attribute("voxwatch.outcome", outcome)
            if error is not None:
                self._span.set_status(Status(StatusCode.ERROR, error))
            self._span.end(end_time=_ns(t_end))
        self._tracing._record_call(row)
        return row


class CallTracing:
    """The per-call tracer: starts calls, exports their spans and call records via the sink.

    Normally a Telemetry's (`tel.traces`: its clock, its sink, its self-metrics). Without one, pass
    `clock` and `sink` (the turn runner does when it runs without telemetry); `sink` also overrides
    the Telemetry's sink. Calls left unsampled still write their `calls` row."""

    def __init__(self, telemetry=None, sample_ratio: float = 0.1, seed: int | None = None,
                 batch_size: int = 2048, *, clock=None, sink=None) -> None:
        if not 0.0 <= sample_ratio <= 1.0:
            raise ValueError(f"trace sample_ratio must be within [0, 1], got {sample_ratio}")
        if telemetry is None and clock is None:
            raise ValueError("CallTracing needs a telemetry or a clock")
        self._tel = telemetry
        self._sink = sink
        self.clock = clock if clock is not None else telemetry.clock
        self.sample_ratio = sample_ratio
        self._rng = random.Random(seed)
        self.provider = TracerProvider(
            sampler=ALWAYS_ON,  # sampling is decided per call, before any span exists
            resource=Resource.create({"service.name": "voxwatch-pipeline"}),
            id_generator=_SeededIds(random.Random(None if seed is None else seed + 1)),
        )
        self._processor = SpanRowProcessor(self, batch_size)
        self.provider.add_span_processor(self._processor)
        self.tracer = self.provider.get_tracer("voxwatch.pipeline")
        self._calls: list[dict] = []
        self._lock = threading.Lock()
        self._batch_size = batch_size
        has = telemetry is not None and getattr(telemetry, "enabled", True)
        self._spans_metric = telemetry["voxwatch_trace_spans_exported_total"] if has and "voxwatch_trace_spans_exported_total" in telemetry else None
        calls_metric = telemetry["voxwatch_trace_calls_recorded_total"] if has and "voxwatch_trace_calls_recorded_total" in telemetry else None
        self._calls_sampled = calls_metric.labels(sampled="true") if calls_metric is not None else None
        self._calls_unsampled = calls_metric.labels(sampled="false") if calls_metric is not None else None

    def start_call(self, call_id: str, *, region: str = "", language: str = "", channel: str = "simulated",
                   scenario: str = "", start: float | None = None, sampled: bool | None = None,
                   attributes: Mapping[str, Any] | None = None) -> CallTrace:
        if sampled is None:
            sampled = self.sample_ratio >= 1.0 or (self.sample_ratio > 0.0 and self._rng.random() < self.sample_ratio)
        return CallTrace(self, call_id, region=region, language=language, channel=channel, scenario=scenario,
                         start=self.clock.now() if start is None else start, sampled=sampled, attributes=attributes)

    def flush(self) -> None:
        """Hand every buffered span and call record to the sink."""
        self._processor.flush()
        with self._lock:
            calls, self._calls = self._calls, []
        if calls:
            self._emit("calls", {k: [c[k] for c in calls] for k in calls[0]})

    def shutdown(self) -> None:
        self.flush()
        self.provider.shutdown()

    # ---- internals
    def _record_call(self, row: dict) -> None:
        if self._calls_sampled is not None:
            (self._calls_sampled if row["trace_id"] else self._calls_unsampled).inc()
        with self._lock:
            self._calls.append(row)
            full = len(self._calls) >= self._batch_size
        if full:
            self.flush()

    def _emit(self, table: str, columns: dict) -> None:
        sink = self._sink if self._sink is not None else getattr(self._tel, "sink", None)
        if sink is not None:
            sink.write_columns(table, columns)

    def _count_spans(self, by_name: Mapping[str, int]) -> None:
        if self._spans_metric is not None:
            for name, n in by_name.items():
                self._spans_metric.labels(span=name).inc(n)


class DisabledCallTracing(CallTracing):
    """Tracing off: no spans, but every call still gets its `calls` row (returned by `end()`, and
    written to `sink` when there is one)."""

    def __init__(self, clock=None, sink=None) -> None:
        super().__init__(None, 0.0, batch_size=1, clock=clock if clock is not None else WallClock(), sink=sink)

    def start_call(self, call_id: str, **kw) -> CallTrace:
        kw["sampled"] = False
        return super().start_call(call_id, **kw)


__all__ = [
    "CALL_COLUMNS",
    "SPAN_COLUMNS",
    "CALL_ID",
    "CallTrace",
    "CallTracing",
    "DisabledCallTracing",
    "GEN_AI_INPUT_TOKENS",
    "GEN_AI_OUTPUT_TOKENS",
    "GEN_AI_REQUEST_MODEL",
    "GEN_AI_SYSTEM",
    "StageSpan",
    "TURN_NUMBER",
    "TurnTrace",
    "call_columns",
    "call_record",
    "llm_attributes",
    "span_columns",
    "tool_attributes",
]
