"""Anomaly detection: streaming detectors over the stored or live metric series, and the service
that runs them and records findings (anomaly_findings) for the alert engine.

Public surface:

- `AnomalyService(sink, clock, catalog, settings, on_finding=[...])`: `observe(ts, samples)` for a live
  tick, `poll_store(store)` / `await run(store, interval_s)` for stored samples; every finding is
  written through the Sink and handed to each callable in `service.on_finding`.
- `Finding`: ts, detector, kind, metric, labels, score, value, expected_low/high,
  time_to_exhaustion_s, confidence, reason (see anomaly/finding.py).
- Detectors (river-style, one per file; vectorised `update(ts, values)` over many series, and
  `learn_one` / `score_one` / `process_one` for one): `SaturationTrend`, `RobustLevel`,
  `MultivariateIsolation`; the findings stage `LikelihoodGate`.
- `anomaly.nab`: the NAB corpus, scorer and runner; `anomaly.lead_time`: lead time against a
  predict_linear rule.
"""

from anomaly.base import LEVEL_SHIFT, MULTIVARIATE, SATURATION_TREND, SPIKE, Detector, TickScores
from anomaly.finding import Finding
from anomaly.isolation_forest import MultivariateIsolation
from anomaly.likelihood import GateResult, LikelihoodGate
from anomaly.robust_level import RobustLevel
from anomaly.saturation_trend import SaturationTrend
from anomaly.series import Sample, SeriesKey
from anomaly.service import AnomalyService, AnomalySettings

__all__ = [
    "AnomalyService", "AnomalySettings", "Detector", "Finding", "GateResult", "LEVEL_SHIFT", "LikelihoodGate",
    "MULTIVARIATE", "MultivariateIsolation", "RobustLevel", "SATURATION_TREND", "SPIKE", "Sample",
    "SaturationTrend", "SeriesKey", "TickScores",
]
