"""A finding: what the anomaly service tells the store and the alert engine.

Fields (the same names as the anomaly_findings table's columns, labels as a dict):

- ts: epoch seconds of the sample that raised it
- detector: which detector (saturation_trend, robust_level, isolation_forest)
- kind: saturation_trend | spike | level_shift | multivariate
- metric: the catalog name of the metric (histograms: the histogram's name, labels say which statistic)
- labels: the series' labels, e.g. {"region": "eu-west", "stat": "p99"}
- score: [0, 1], higher is more anomalous (the findings stage's score, not the raw detector score)
- value: the value observed
- expected_low, expected_high: the range the detector expected (NaN when it has none)
- time_to_exhaustion_s: seconds until the resource hits its capacity (saturation only, else NaN)
- confidence: [0, 1], how sure the detector is of the forecast or the anomaly
- reason: one line for a person: what was seen and why it matters
- fingerprint: the series' fingerprint in metric_series (0 for series fed live without one)
- finding_id: unique id of this finding
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Finding:
    ts: float
    detector: str
    kind: str
    metric: str
    labels: dict[str, str]
    score: float
    value: float
    expected_low: float = math.nan
    expected_high: float = math.nan
    time_to_exhaustion_s: float = math.nan
    confidence: float = math.nan
    reason: str = ""
    fingerprint: int = 0
    finding_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @classmethod
    def of(cls, data) -> Finding:
        """A Finding from itself, a dict in its own field names, or an anomaly_findings row
        (`ts_ms`, `label_keys`/`label_values`); missing numbers are NaN, as the row would have them."""
        if isinstance(data, cls):
            return data
        get = data.get if isinstance(data, Mapping) else (lambda k, d=None: getattr(data, k, d))
        ts = get("ts")
        if ts is None and get("ts_ms") is not None:
            ts = get("ts_ms") / 1000.0
        labels = get("labels")
        if labels is None and get("label_keys") is not None:
            labels = dict(zip(get("label_keys"), get("label_values"), strict=False))

        def number(key: str, default: float = math.nan) -> float:
            v = get(key)
            return float(v) if v is not None else default

        extra = {"finding_id": str(get("finding_id"))} if get("finding_id") else {}
        return cls(
            ts=float(ts), detector=str(get("detector") or ""), kind=str(get("kind") or ""), metric=str(get("metric") or ""),
            labels={str(k): str(v) for k, v in (labels or {}).items()}, score=number("score", 0.0), value=number("value"),
            expected_low=number("expected_low"), expected_high=number("expected_high"),
            time_to_exhaustion_s=number("time_to_exhaustion_s"), confidence=number("confidence"),
            reason=str(get("reason") or ""), fingerprint=int(get("fingerprint") or 0), **extra,
        )

    def to_row(self) -> dict:
        """The anomaly_findings row for this finding."""
        keys = sorted(self.labels)
        return {
            "ts_ms": int(round(self.ts * 1000)),
            "finding_id": self.finding_id,
            "detector": self.detector,
            "kind": self.kind,
            "metric": self.metric,
            "fingerprint": int(self.fingerprint),
            "label_keys": keys,
            "label_values": [str(self.labels[k]) for k in keys],
            "score": float(self.score),
            "value": float(self.value),
            "expected_low": float(self.expected_low),
            "expected_high": float(self.expected_high),
            "time_to_exhaustion_s": float(self.time_to_exhaustion_s),
            "confidence": float(self.confidence),
            "reason": self.reason,
        }
