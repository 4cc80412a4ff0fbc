"""Store rows to API models: the one place a row of the store becomes a typed payload, and values
become JSON-safe (NaN and infinities are null, numpy scalars plain numbers)."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from telemetry.values import finite_float
from voxwatch.api.query_models import (
    AlertEvent,
    CallDetail,
    CallSummary,
    DegradationAction,
    Matcher,
    Silence,
    Span,
    Turn,
)

num = finite_float  # one rule for a value, shared with OTLP ingest (telemetry/values.py)


def int_or_none(v) -> int | None:
    f = num(v)
    return int(f) if f is not None else None


def tte(v) -> float | None:
    # Findings without a forecast carry NaN, which the store may hand back as 0: neither is a forecast.
    f = num(v)
    return f if f is not None and f > 0 else None


def pairs(keys, values) -> dict[str, str]:
    if keys is None or values is None:
        return {}
    return {str(k): str(v) for k, v in zip(list(keys), list(values), strict=False)}


def cell(v: Any) -> Any:
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        f = float(v)
        return f if math.isfinite(f) else None
    if isinstance(v, (np.bool_,)):
        return bool(v)
    if isinstance(v, np.ndarray):
        return [cell(x) for x in v.tolist()]
    if isinstance(v, (list, tuple)):
        return [cell(x) for x in v]
    if isinstance(v, dict):
        return {str(k): cell(x) for k, x in v.items()}
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if v is None or isinstance(v, (str, int, bool)):
        return v
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return str(v)



def json_obj(text) -> dict:
    if not text:
        return {}
    try:
        v = json.loads(text)
    except (TypeError, ValueError):
        return {}
    return v if isinstance(v, dict) else {}


def str_map(v) -> dict[str, str]:
    return {str(k): str(x) for k, x in v.items()} if isinstance(v, dict) else {}


def call_summary(r: dict) -> CallSummary:
    return CallSummary(
        call_id=str(r["call_id"]), started_ms=int(r["started_ms"]), ended_ms=int(r["ended_ms"]), region=str(r["region"]),
        language=str(r["language"]), scenario=str(r["scenario"]), channel=str(r["channel"]),
        intents=[str(x) for x in r["intents"]], outcome=str(r["outcome"]), handoff=bool(r["handoff"]),
        handoff_reason=str(r["handoff_reason"]), turns=int(r["turns"]), latency_p50_ms=num(r["latency_p50_ms"]) or 0.0,
        latency_p95_ms=num(r["latency_p95_ms"]) or 0.0, latency_max_ms=num(r["latency_max_ms"]) or 0.0,
        degradation_level=str(r["degradation_level"]), trace_id=str(r["trace_id"]))


def span(r: dict) -> Span:
    return Span(span_id=str(r["span_id"]), parent_span_id=str(r["parent_span_id"]), turn=int(r["turn"]), name=str(r["name"]),
                start_us=int(r["start_us"]), duration_ms=num(r["duration_ms"]) or 0.0, status=str(r["status"]),
                attributes=pairs(r["attr_keys"], r["attr_values"]))


def call_detail(d: dict) -> CallDetail:
    spans = [span(r) for r in d["spans"].to_dict("records")]
    conversation = next((s for s in spans if s.name == "conversation"), None)
    turn_spans = {s.turn: s for s in spans if s.name == "turn"}
    stages: dict[int, list[Span]] = {}
    for s in spans:
        if s.name not in ("turn", "conversation"):
            stages.setdefault(s.turn, []).append(s)
    turns = []
    for n in sorted(set(turn_spans) | set(stages)):
        parts = stages.get(n, [])
        ts = turn_spans.get(n)
        if ts is not None:
            start, dur, status = ts.start_us, ts.duration_ms, ts.status
        else:  # no turn span recorded: the stages' envelope stands in for it
            start = min(p.start_us for p in parts)
            end = max(p.start_us + p.duration_ms * 1000 for p in parts)
            dur, status = (end - start) / 1000.0, "error" if any(p.status == "error" for p in parts) else "ok"
        turns.append(Turn(turn=n, start_us=start, duration_ms=dur, status=status, stages=parts))
    return CallDetail(call=call_summary(d["call"]), transcript=str(d["call"].get("transcript", "")), turns=turns,
                      conversation=conversation, alerts=[alert_event(r) for r in d["alerts"].to_dict("records")],
                      actions=[action(r) for r in d["actions"].to_dict("records")])


def alert_event(r: dict) -> AlertEvent:
    return AlertEvent(ts_ms=int(r["ts_ms"]), rule=str(r["rule"]), alert_fingerprint=str(r["alert_fingerprint"]),
                      state=str(r["state"]), previous_state=str(r.get("previous_state", "") or ""),
                      severity=str(r["severity"]), labels=pairs(r["label_keys"], r["label_values"]),
                      annotations=pairs(r["annotation_keys"], r["annotation_values"]), value=num(r["value"]),
                      active_since_ms=int_or_none(r.get("active_since_ms")))


def action(r: dict) -> DegradationAction:
    return DegradationAction(ts_ms=int(r["ts_ms"]), action_id=str(r["action_id"]), phase=str(r["phase"]),
                             level=str(r["level"]), previous_level=str(r.get("previous_level", "")),
                             region=str(r.get("region", "") or ""), rule=str(r.get("rule", "") or ""),
                             reason=str(r.get("reason", "") or ""), effect_metric=str(r.get("effect_metric", "") or ""),
                             effect_value=num(r.get("effect_value")))


def silence_from(s, now_ms: int) -> Silence:
    """The API's view of an alerts-room `Silence` (times in epoch ms)."""
    return Silence(silence_id=s.silence_id, matchers=[Matcher(**m.as_dict()) for m in s.matchers],
                   starts_ms=int(round(s.starts_at * 1000)), ends_ms=int(round(s.ends_at * 1000)),
                   created_ms=int(round(s.created_at * 1000)), updated_ms=int(round(s.updated_at * 1000)),
                   created_by=s.created_by, comment=s.comment, state=s.state(now_ms / 1000.0))


def silence_row(r: dict, now: int) -> Silence:
    try:
        matchers = [Matcher(**m) for m in json.loads(r["matchers_json"] or "[]")]
    except (TypeError, ValueError):
        matchers = []
    starts, ends = int(r["starts_ms"]), int(r["ends_ms"])
    # The state follows the clock: a silence whose end has passed is expired whatever its row says.
    state = "expired" if ends <= now or r["state"] == "expired" else ("pending" if starts > now else "active")
    return Silence(silence_id=str(r["silence_id"]), matchers=matchers, starts_ms=starts, ends_ms=ends,
                   created_ms=int(r["created_ms"]), updated_ms=int(r["updated_ms"]), created_by=str(r["created_by"]),
                   comment=str(r["comment"]), state=state)
