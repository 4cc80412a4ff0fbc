"""One finding type for the anomaly service and the alert rules: a stored anomaly_findings row (or a
dict) comes back as the same `anomaly.Finding`."""

from __future__ import annotations

import math

from anomaly.finding import Finding


def test_a_stored_row_reads_back_as_the_same_finding():
    f = Finding(ts=1_700_000_000.25, detector="saturation_trend", kind="saturation_trend", metric="voxwatch_pool_saturation_ratio",
                labels={"pool": "orders"}, score=0.9, value=0.83, time_to_exhaustion_s=840.0, confidence=0.7,
                reason="orders pool fills in 14 min", fingerprint=42)
    back = Finding.of(f.to_row())
    assert back.to_row()["ts_ms"] == f.to_row()["ts_ms"] and back.labels == {"pool": "orders"}
    assert back.finding_id == f.finding_id and back.fingerprint == 42 and back.time_to_exhaustion_s == 840.0
    assert math.isnan(back.expected_low) and back.reason == f.reason
    assert Finding.of(f) is f


def test_a_dict_in_the_findings_own_words_needs_only_what_it_has():
    f = Finding.of({"ts": 10.0, "kind": "spike", "metric": "voxwatch_turn_latency_seconds", "score": 0.5})
    assert f.kind == "spike" and f.labels == {} and math.isnan(f.value) and math.isnan(f.confidence)
