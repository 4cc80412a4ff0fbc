"""Per-call traces for the turn runner: conversation -> turn -> stage.

With a Telemetry, spans go through its OpenTelemetry tracer (`OtelCallTrace`, sampled per call, and
the call record is written by `CallTrace.end`). Without one, `CallTrace` collects span rows in the
shape of the store's `spans` table and the runner writes them with the call record when it ends.
"""

from __future__ import annotations

import itertools
from typing import Any

_span_ids = itertools.count(1)


def _span_id() -> str:
    return f"{next(_span_ids):016x}"


class CallTrace:
    def __init__(self, call_id: str, trace_id: str, started_at: float) -> None:
        self.call_id = call_id
        self.trace_id = trace_id
        self.started_at = started_at
        self.root_id = _span_id()
        self.rows: list[dict[str, Any]] = []

    def _row(self, span_id, parent, turn, name, start, duration_s, status, attrs) -> dict[str, Any]:
        attrs = attrs or {}
        return {
            "trace_id": self.trace_id,
            "span_id": span_id,
            "parent_span_id": parent,
            "call_id": self.call_id,
            "turn": int(turn),
            "name": name,
            "start_us": int(start * 1_000_000),
            "duration_ms": float(duration_s * 1000.0),
            "status": status,
            "attr_keys": [str(k) for k in attrs],
            "attr_values": [str(v) for v in attrs.values()],
        }

    def begin_turn(self, turn: int, start: float) -> dict[str, Any]:
        return {"id": _span_id(), "turn": turn, "start": start}

    def stage(self, turn_span: dict, name: str, start: float, duration_s: float, status: str, attrs: dict | None = None) -> None:
        self.rows.append(self._row(_span_id(), turn_span["id"], turn_span["turn"], name, start, duration_s, status, attrs))

    def end_turn(self, turn_span: dict, duration_s: float, status: str, attrs: dict | None = None) -> None:
        self.rows.append(self._row(turn_span["id"], self.root_id, turn_span["turn"], "turn", turn_span["start"], duration_s, status, attrs))

    def finish(self, ended_at: float, outcome: str, ctx=None) -> list[dict[str, Any]]:
        attrs = {"outcome": outcome}
        if ctx is not None:
            attrs.update(region=ctx.origin_region, language=ctx.language, channel=ctx.channel)
        status = "error" if outcome == "failed" else "ok"
        self.rows.append(self._row(self.root_id, "", 0, "conversation", self.started_at, ended_at - self.started_at, status, attrs))
        return self.rows


class OtelCallTrace:
    """The same surface as CallTrace, over telemetry.traces (OpenTelemetry SDK spans)."""

    def __init__(self, tracing, ctx) -> None:
        self.call = tracing.start_call(ctx.call_id, region=ctx.origin_region, language=ctx.language, channel=ctx.channel, scenario=ctx.scenario, start=ctx.started_at)
        ctx.trace_id = self.call.trace_id  # "" when this call is not sampled

    def begin_turn(self, turn: int, start: float):
        return self.call.start_turn(start)

    def stage(self, turn_span, name: str, start: float, duration_s: float, status: str, attrs: dict | None = None) -> None:
        turn_span.record_stage(name, start, start + duration_s, attrs, error=None if status == "ok" else status)

    def end_turn(self, turn_span, duration_s: float, status: str, attrs: dict | None = None) -> None:
        turn_span.end(turn_span.start + duration_s, latency_s=duration_s, error=None if status != "error" else "turn failed", attributes=attrs)

    def finish_call(self, ended_at: float, outcome: str, ctx, level: str) -> dict:
        return self.call.end(outcome, end=ended_at, handoff_reason=ctx.handoff_reason, intents=ctx.intents, degradation_level=level, transcript=ctx.transcript_text())
