"""A small october-3-like incident written straight into a store, for the query API and dashboard tests.

Two hours ending at `END_MS`: traffic in two regions, a CRM connection pool whose saturation creeps
up in the last 40 minutes, turn latency that follows it, a saturation finding with its forecast, a
predictive alert that fires, a page, a degradation action, and calls with turn/stage spans and
transcripts. Seeded, so the same rows (relative to END_MS) every run and tests can assert exact counts.
"""

from __future__ import annotations

import json
import time

import numpy as np

# The last whole hour: recent enough that the store's TTL retention (30-90 days) keeps every row.
END_MS = int(time.time() // 3600) * 3_600_000
START_MS = END_MS - 2 * 3_600_000
STEP_MS = 10_000
INCIDENT_MS = END_MS - 40 * 60_000
REGIONS = ("eu-west", "us-east")
INTENTS = ("order_status", "billing", "cancel_order", "address_change", "small_talk")
LANGUAGES = ("en", "de", "es")
OUTCOMES = ("completed", "completed", "completed", "completed", "handoff", "abandoned", "failed")
STAGES = ("stt", "nlu", "llm", "tts", "tool")
LE = ("0.1", "0.2", "0.3", "0.5", "1", "2.5", "+Inf")



def _catalog_id(name: str, fallback: int) -> tuple[str, int]:
    """The metric's id in telemetry's catalog when it declares it, so the API resolves it like real data."""
    try:
        from telemetry.catalog import default_catalog

        spec = default_catalog().get(name)
    except Exception:  # noqa: BLE001 - a catalog being edited must not break the fixture
        spec = None
    return name, int(spec.id) if spec is not None else fallback


SATURATION_METRIC = _catalog_id("voxwatch_pool_saturation_ratio", 9001)
POOL_IN_USE_METRIC = _catalog_id("voxwatch_pool_connections_in_use", 9002)
TURN_LATENCY_METRIC = _catalog_id("voxwatch_turn_latency_seconds", 9003)
CALLS_TOTAL_METRIC = _catalog_id("voxwatch_calls_started_total", 9004)
TRANSCRIPT_WORDS = {
    "order_status": "where is my order please it was due yesterday",
    "billing": "I was charged twice on my last invoice",
    "cancel_order": "please cancel the order I placed this morning",
    "address_change": "I moved and need to change my delivery address",
    "small_talk": "hello can you hear me",
}
N_CALLS = 360


def _fp(*parts: str) -> int:
    # a stable 63-bit id per series; the real fingerprint function lives in telemetry
    import hashlib

    return int.from_bytes(hashlib.blake2b("|".join(parts).encode(), digest_size=8).digest(), "big") >> 1


def fill(store, end_ms: int | None = None) -> dict:
    """Write the scenario ending at `end_ms` (default: the last whole hour); returns what tests assert
    against (ids, counts, times)."""
    END_MS = int(end_ms or globals()["END_MS"])  # noqa: N806 - the module constant, moved
    START_MS = END_MS - 2 * 3_600_000  # noqa: N806
    INCIDENT_MS = END_MS - 40 * 60_000  # noqa: N806
    rng = np.random.default_rng(3)
    ts = np.arange(START_MS, END_MS, STEP_MS, dtype=np.int64)
    progress = np.clip((ts - INCIDENT_MS) / (END_MS - INCIDENT_MS), 0, 1)
    series_rows, sample_cols = [], {"ts_ms": [], "fingerprint": [], "metric_id": [], "value": []}

    def add_series(metric, metric_type, sample_name, labels: dict, values: np.ndarray) -> int:
        fp = _fp(sample_name, *(f"{k}={v}" for k, v in sorted(labels.items())))
        series_rows.append({"fingerprint": fp, "metric_id": metric[1], "metric": metric[0], "sample_name": sample_name,
                            "metric_type": metric_type, "label_keys": list(labels), "label_values": list(labels.values()),
                            "first_seen_ms": int(ts[0])})
        sample_cols["ts_ms"].append(ts)
        sample_cols["fingerprint"].append(np.full(len(ts), fp, dtype=np.uint64))
        sample_cols["metric_id"].append(np.full(len(ts), metric[1], dtype=np.uint32))
        sample_cols["value"].append(values.astype(float))
        return fp

    fps = {}
    for region in REGIONS:
        for pool, base in (("crm", 0.35), ("llm", 0.25), ("payments", 0.2)):
            rising = pool == "crm" and region == "eu-west"
            ratio = base + rng.normal(0, 0.01, len(ts)) + (0.6 * progress if rising else 0)
            ratio = np.clip(ratio, 0, 1)
            fps[(region, pool)] = add_series(SATURATION_METRIC, "gauge", SATURATION_METRIC[0],
                                             {"pool": pool, "region": region}, ratio)
            add_series(POOL_IN_USE_METRIC, "gauge", POOL_IN_USE_METRIC[0], {"pool": pool, "region": region},
                       np.round(ratio * 50))
        # histogram: cumulative bucket counters of turn latency, slowing down with the incident
        per_step = rng.poisson(30, len(ts))
        cum = np.zeros((len(ts), len(LE)))
        for i, n in enumerate(per_step):
            lat = rng.lognormal(np.log(0.12 + (1.2 * progress[i] if region == "eu-west" else 0.0)), 0.3, n)
            bounds = np.array([float(x) for x in LE])
            cum[i] = (lat[:, None] <= bounds[None, :]).sum(axis=0)
        cum = np.cumsum(cum, axis=0)
        for j, le in enumerate(LE):
            add_series(TURN_LATENCY_METRIC, "histogram", TURN_LATENCY_METRIC[0] + "_bucket", {"region": region, "le": le},
                       cum[:, j])
        add_series(TURN_LATENCY_METRIC, "histogram", TURN_LATENCY_METRIC[0] + "_count", {"region": region},
                   cum[:, -1])
        add_series(CALLS_TOTAL_METRIC, "counter", CALLS_TOTAL_METRIC[0], {"region": region}, np.cumsum(per_step) / 5)

    store.insert("metric_series", {k: [r[k] for r in series_rows] for k in series_rows[0]})
    store.insert("metric_samples", {k: np.concatenate(v) for k, v in sample_cols.items()})

    calls, spans = _calls(rng, START_MS, END_MS, INCIDENT_MS)
    store.insert("calls", calls)
    store.insert("spans", spans)

    finding_ts = INCIDENT_MS + 12 * 60_000
    store.insert("anomaly_findings", {
        "ts_ms": [finding_ts, finding_ts + 60_000, INCIDENT_MS + 20 * 60_000],
        "finding_id": ["f-1", "f-2", "f-3"],
        "detector": ["saturation_trend", "saturation_trend", "robust_level"],
        "kind": ["saturation_trend", "saturation_trend", "level_shift"],
        "metric": [SATURATION_METRIC[0], SATURATION_METRIC[0], TURN_LATENCY_METRIC[0]],
        "fingerprint": [fps[("eu-west", "crm")]] * 2 + [0],
        "label_keys": [["pool", "region"]] * 2 + [["region"]],
        "label_values": [["crm", "eu-west"]] * 2 + [["eu-west"]],
        "score": [0.91, 0.95, 0.88], "value": [0.62, 0.66, 0.41], "expected_low": [0.3, 0.3, 0.12],
        "expected_high": [0.42, 0.42, 0.22], "time_to_exhaustion_s": [1260.0, 1080.0, float("nan")],
        "confidence": [0.8, 0.86, 0.7],
        "reason": ["crm pool saturation rising 1.6%/min; full in 21 min", "crm pool full in 18 min",
                   "turn latency level shift"],
    })
    fired = finding_ts + 15_000
    labels = (["alertname", "pool", "region", "severity"], ["PoolSaturationForecast", "crm", "eu-west", "page"])
    ann = (["summary"], ["crm pool in eu-west full in 18 min"])
    store.insert("alert_events", {
        "ts_ms": [finding_ts, fired], "rule": ["PoolSaturationForecast"] * 2, "alert_fingerprint": ["a-crm"] * 2,
        "state": ["pending", "firing"], "previous_state": ["inactive", "pending"], "severity": ["page"] * 2,
        "label_keys": [labels[0]] * 2, "label_values": [labels[1]] * 2, "annotation_keys": [ann[0]] * 2,
        "annotation_values": [ann[1]] * 2, "value": [1080.0, 1080.0], "active_since_ms": [finding_ts] * 2,
    })
    store.insert("alert_state", {
        "rule": ["PoolSaturationForecast"], "alert_fingerprint": ["a-crm"], "updated_ms": [fired], "state": ["firing"],
        "active_since_ms": [finding_ts], "fired_ms": [fired], "resolved_ms": [0], "last_notified_ms": [fired + 500],
        "payload_json": [json.dumps({"labels": dict(zip(*labels, strict=True)), "annotations": dict(zip(*ann, strict=True)),
                                     "severity": "page"})],
    })
    store.insert("notifications", {
        "ts_ms": [fired + 500], "notification_id": ["n-1"], "receiver": ["oncall-webhook"], "integration": ["webhook"],
        "group_key": ["{}:{alertname=\"PoolSaturationForecast\"}"], "status": ["firing"], "attempt": [1],
        "result": ["delivered"], "http_status": [200], "error": [""], "alert_fingerprints": [["a-crm"]],
        "payload": ["{}"],
    })
    action_ts = fired + 2_000
    store.insert("degradation_actions", {
        "ts_ms": [action_ts, action_ts], "action_id": ["deg-1", "deg-1"], "phase": ["requested", "applied"],
        "level": ["INTEGRATIONS_QUEUED"] * 2, "previous_level": ["NORMAL"] * 2, "region": ["", ""],
        "rule": ["PoolSaturationForecast"] * 2, "reason": ["crm pool saturation forecast"] * 2,
        "effect_metric": [SATURATION_METRIC[0]] * 2, "effect_value": [0.0, 0.0],
    })
    incident_id = _incident(store, finding_ts, fired, action_ts, labels, ann)
    return {"start_ms": START_MS, "end_ms": END_MS, "calls": N_CALLS, "call_ids": list(calls["call_id"]),
            "incident_id": incident_id,
            "call_starts": list(calls["started_ms"]),
            "slow_call_id": calls["call_id"][int(np.argmax(calls["latency_p95_ms"]))], "fired_ms": fired,
            "action_ms": action_ts, "series": len(series_rows), "samples": sum(len(v) for v in sample_cols["ts_ms"])}


def _incident(store, finding_ts: int, fired: int, action_ts: int, labels, ann) -> str:
    """The same story told to the alerts room's incident tracker, which writes the incident as the
    engine's would (finding, alert firing, page delivered, action applied)."""
    from alerts import StoreWriter
    from alerts.incidents import IncidentTracker
    from alerts.model import Alert
    from anomaly.finding import Finding
    from telemetry.clock import VirtualClock

    clock = VirtualClock(fired / 1000)
    tracker = IncidentTracker(clock, StoreWriter(store), store)
    ls = dict(zip(*labels, strict=True))
    tracker.on_finding(Finding(finding_ts / 1000, "saturation_trend", "saturation_trend", SATURATION_METRIC[0],
                               {"pool": "crm", "region": "eu-west"}, 0.95, 0.66, time_to_exhaustion_s=1080.0))
    alert = Alert("PoolSaturationForecast", "a-crm", ls, dict(zip(*ann, strict=True)), "firing", 1080.0,
                  finding_ts / 1000, fired / 1000)
    tracker.on_transitions([{"ts": fired / 1000, "alert": alert, "state": "firing", "previous_state": "pending"}])
    tracker.on_notification({"ts_ms": fired + 500, "notification_id": "n-1", "receiver": "oncall-webhook",
                             "integration": "webhook", "status": "firing", "attempt": 1, "result": "delivered",
                             "http_status": 200, "error": "", "alert_fingerprints": ["a-crm"]})
    tracker.on_action({"ts_ms": action_ts, "action_id": "deg-1", "phase": "applied", "level": "INTEGRATIONS_QUEUED",
                       "region": "", "rule": "PoolSaturationForecast", "reason": "crm pool saturation forecast",
                       "effect_metric": SATURATION_METRIC[0], "effect_value": 0.66})
    (incident_id,) = tracker.incidents
    return incident_id


def _calls(rng, START_MS, END_MS, INCIDENT_MS):  # noqa: N803 - same names as in fill
    starts = np.sort(rng.integers(START_MS, END_MS - 120_000, N_CALLS))
    calls = {k: [] for k in ("call_id", "started_ms", "ended_ms", "region", "language", "scenario", "channel", "intents",
                             "outcome", "handoff", "handoff_reason", "turns", "latency_p50_ms", "latency_p95_ms",
                             "latency_max_ms", "degradation_level", "transcript", "trace_id")}
    spans = {k: [] for k in ("trace_id", "span_id", "parent_span_id", "call_id", "turn", "name", "start_us",
                             "duration_ms", "status", "attr_keys", "attr_values")}

    def span(trace, sid, parent, call_id, turn, name, start_us, dur, status="ok", attrs=None):
        attrs = attrs or {}
        for k, v in (("trace_id", trace), ("span_id", sid), ("parent_span_id", parent), ("call_id", call_id),
                     ("turn", turn), ("name", name), ("start_us", int(start_us)), ("duration_ms", float(dur)),
                     ("status", status), ("attr_keys", list(attrs)), ("attr_values", list(attrs.values()))):
            spans[k].append(v)

    for i, start in enumerate(starts):
        call_id = f"call-{i:05d}"
        trace = f"{i:032x}"
        region = REGIONS[i % 2]
        slow = 1.0 + (8.0 * max(0.0, (start - INCIDENT_MS) / (END_MS - INCIDENT_MS)) if region == "eu-west" else 0.0)
        n_turns = int(rng.integers(2, 6))
        intents = list(rng.choice(INTENTS, size=int(rng.integers(1, 3)), replace=False))
        t_us = int(start) * 1000
        lats, words = [], []
        for turn in range(1, n_turns + 1):
            turn_start = t_us
            sid_turn = f"{i:05d}-t{turn}"
            cursor = turn_start
            for stage in STAGES:
                base = {"stt": 45, "nlu": 12, "llm": 70, "tts": 30, "tool": 20}[stage]
                dur = float(rng.gamma(4, base / 4)) * (slow if stage == "tool" else 1.0)
                status = "error" if stage == "tool" and slow > 6 and rng.random() < 0.2 else "ok"
                span(trace, f"{sid_turn}-{stage}", sid_turn, call_id, turn, stage, cursor, dur, status,
                     {"gen_ai.system": "sim"} if stage == "llm" else {})
                cursor += int(dur * 1000)
            turn_ms = (cursor - turn_start) / 1000
            span(trace, sid_turn, f"{i:05d}-c", call_id, turn, "turn", turn_start, turn_ms)
            lats.append(turn_ms)
            words.append(TRANSCRIPT_WORDS[intents[(turn - 1) % len(intents)]])
            t_us = cursor + 1_500_000
        span(trace, f"{i:05d}-c", "", call_id, 0, "conversation", int(start) * 1000, (t_us - int(start) * 1000) / 1000)
        outcome = str(OUTCOMES[i % len(OUTCOMES)])
        transcript = "\n".join(f"caller: {w}\nagent: ok" for w in words)
        for k, v in (("call_id", call_id), ("started_ms", int(start)), ("ended_ms", t_us // 1000), ("region", region),
                     ("language", LANGUAGES[i % 3]), ("scenario", "october-3-mini"), ("channel", "simulated"),
                     ("intents", intents), ("outcome", outcome), ("handoff", 1 if outcome == "handoff" else 0),
                     ("handoff_reason", "caller_request" if outcome == "handoff" else ""), ("turns", n_turns),
                     ("latency_p50_ms", float(np.percentile(lats, 50))), ("latency_p95_ms", float(np.percentile(lats, 95))),
                     ("latency_max_ms", float(max(lats))), ("degradation_level", "NORMAL"), ("transcript", transcript),
                     ("trace_id", trace)):
            calls[k].append(v)
    return calls, spans
