"""OTLP logs -> `logs` rows.

Every log record with a time and well-formed ids becomes one row: its time (the record's, else the time
its SDK observed it), the sender (`service.name`), severity, body (text; structured bodies as JSON),
trace and span ids (hex; `call_id` is the trace id, as for ingested spans and calls, so a call's logs
join its `calls` row) and *all* its attributes plus its resource's, as the span mapper stores them
(telemetry/ingest/spans.py): the record's own value wins over the resource's, long values are cut and
counted, attributes past the limit are counted in `otel.dropped_attributes_count`. Nothing is kept
between requests.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from telemetry.ingest.spans import IngestLimits, IngestResult, Source, _cut, any_value, as_text, attributes

_ZERO_TRACE, _ZERO_SPAN = bytes(16), bytes(8)
_MAX_SEVERITY = 24  # SeverityNumber's last value (FATAL4)


class LogIngest:
    """Maps ExportLogsServiceRequests into `logs` rows through a Telemetry's sink."""

    def __init__(self, telemetry, *, limits: IngestLimits | None = None, clock=None) -> None:
        self.sink = telemetry.sink
        self.limits = limits or IngestLimits()
        self.clock = clock or telemetry.clock
        name = "voxwatch_ingest_log_records_total"
        self._stored = telemetry[name] if name in telemetry else None

    def ingest(self, request) -> IngestResult:
        res = IngestResult()
        now_ns = int(self.clock.now() * 1e9)
        lo = now_ns - int(self.limits.max_age_s * 1e9)
        hi = now_ns + int(self.limits.max_future_s * 1e9)
        cap, max_attrs = self.limits.max_attribute_chars, self.limits.max_attributes
        cols: dict[str, list] = {k: [] for k in ("ts_ms", "source", "severity_number", "severity_text", "body",
                                                 "trace_id", "span_id", "call_id", "attr_keys", "attr_values")}
        per_source: Counter = Counter()
        for rl in request.resource_logs:
            rattrs = attributes(rl.resource.attributes)
            src = Source.of(rattrs)
            rtexts = {k: _cut(as_text(v), cap, res) for k, v in rattrs.items()}
            for sl in rl.scope_logs:
                extra = {**rtexts, "otel.scope.name": sl.scope.name} if sl.scope.name else rtexts
                for rec in sl.log_records:
                    tid, sid = rec.trace_id, rec.span_id
                    # ids are optional on a log record; present, they must be whole
                    if (tid and (len(tid) != 16 or tid == _ZERO_TRACE)) or (sid and (len(sid) != 8 or sid == _ZERO_SPAN)):
                        res.refuse("missing_id")
                        continue
                    ts = rec.time_unix_nano or rec.observed_time_unix_nano
                    if not ts:
                        res.refuse("bad_timestamp")
                        continue
                    if not lo <= ts <= hi:
                        res.refuse("timestamp_out_of_range")
                        continue
                    own = {kv.key: _cut(as_text(any_value(kv.value)), cap, res) for kv in rec.attributes}
                    if rec.event_name:
                        own["otel.event_name"] = rec.event_name
                    severity = int(rec.severity_number)
                    if not 0 <= severity <= _MAX_SEVERITY:  # outside the enum: kept as said, stored as unset
                        own["otel.severity_number"] = str(severity)
                        severity = 0
                    keys = [*own, *(k for k in extra if k not in own)]
                    texts = [own[k] if k in own else extra[k] for k in keys]
                    if len(keys) > max_attrs:
                        dropped = len(keys) - max_attrs + 1
                        res.truncated += dropped
                        keys, texts = keys[: max_attrs - 1], texts[: max_attrs - 1]
                        keys.append("otel.dropped_attributes_count")
                        texts.append(str(dropped))
                    body = _cut(as_text(any_value(rec.body)), cap, res) if rec.HasField("body") else ""
                    tid_hex = tid.hex()
                    cols["ts_ms"].append(ts // 1_000_000)
                    cols["source"].append(src.name)
                    cols["severity_number"].append(severity)
                    cols["severity_text"].append(rec.severity_text)
                    cols["body"].append(body)
                    cols["trace_id"].append(tid_hex)
                    cols["span_id"].append(sid.hex())
                    cols["call_id"].append(tid_hex)
                    cols["attr_keys"].append(keys)
                    cols["attr_values"].append(texts)
                    per_source[src.name] += 1
        res.accepted = len(cols["ts_ms"])
        if res.accepted and self.sink is not None:
            cols["ts_ms"] = np.array(cols["ts_ms"], dtype=np.int64)
            cols["severity_number"] = np.array(cols["severity_number"], dtype=np.uint8)
            self.sink.write_columns("logs", cols)
        if self._stored is not None:
            for name, n in per_source.items():
                self._stored.labels(source=name).inc(n)
        return res
