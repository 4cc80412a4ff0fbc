"""Lead time: how long before callers hear it does the saturation detector see it coming, and how does
a Prometheus-style `predict_linear` rule over the same series compare.

`predict_linear(v[window], horizon) >= capacity` fits an ordinary least-squares line to the samples
of the last `window` seconds and fires when the line, extended `horizon` seconds, reaches capacity.
`lead_time` runs both over one saturation series and reports, against the moment a latency series
crosses its budget, when each first fired.

>>> import numpy as np
>>> t = np.arange(0, 3600, 15.0)
>>> util = np.clip(0.5 + np.where(t > 600, (t - 600) / 3000 * 0.5, 0), 0, 1)  # full at 3600 s
>>> p99 = np.where(t > 3300, 2.0, 0.2)
>>> r = lead_time(t, util, 1.0, t, p99, budget=0.3)
>>> r["latency_crossed_s"], r["detector_lead_s"] > 600
(3315.0, True)
"""

from __future__ import annotations

import math

import numpy as np

from anomaly.likelihood import LikelihoodGate
from anomaly.saturation_trend import SaturationTrend


def predict_linear(ts: np.ndarray, values: np.ndarray, window_s: float, horizon_s: float) -> np.ndarray:
    """At every sample time t: the OLS line through the samples in (t - window_s, t], evaluated at
    t + horizon_s. NaN until the series is `window_s` old (a rule over a half-empty range fits a line
    to two or three points and fires on noise; the detector waits for a full window too).
    O(n) with running sums."""
    ts = np.asarray(ts, dtype=float)
    v = np.asarray(values, dtype=float)
    ok = np.isfinite(v)
    ts, v = ts[ok], v[ok]
    out = np.full(ok.size, np.nan)
    if ts.size == 0:
        return out
    t0 = ts[0]
    x = ts - t0  # centred for numerical stability
    c = [np.r_[0.0, np.cumsum(a)] for a in (np.ones_like(x), x, v, x * x, x * v)]
    hi = np.arange(1, ts.size + 1)
    lo = np.searchsorted(ts, ts - window_s, side="right")
    n, sx, sv, sxx, sxv = (a[hi] - a[lo] for a in c)
    with np.errstate(divide="ignore", invalid="ignore"):
        denom = n * sxx - sx * sx
        slope = np.where(denom > 0, (n * sxv - sx * sv) / denom, np.nan)
        intercept = (sv - slope * sx) / n
    pred = intercept + slope * (x + horizon_s)
    pred[(n < 2) | (x < window_s)] = np.nan
    out[ok] = pred
    return out


def first_time(ts: np.ndarray, mask: np.ndarray) -> float | None:
    idx = np.flatnonzero(mask)
    return float(ts[idx[0]]) if idx.size else None


def saturation_findings(ts, values, capacity: float, *, window: int = 40, horizon_s: float = 1800.0,
                        min_rise_sigmas: float = 3.0, threshold: float = 0.4, cooldown_s: float = 900.0):
    """Times and forecasts of the saturation findings the service would raise on one series."""
    det = SaturationTrend(capacity=capacity, window=window, horizon_s=horizon_s, min_rise_sigmas=min_rise_sigmas)
    gate = LikelihoodGate(mode="direct", threshold=threshold, cooldown_s=cooldown_s)
    out = []
    for t, v in zip(ts, values):
        s = det.update(t, [v])
        if gate.update(t, s.score).fired[0]:
            out.append({"ts": float(t), "value": float(v), "time_to_exhaustion_s": float(s.time_to_exhaustion_s[0]),
                        "confidence": float(s.confidence[0]), "score": float(s.score[0])})
    return out


def lead_time(sat_ts, sat_values, capacity: float, lat_ts, lat_values, budget: float, *,
              window: int = 40, horizon_s: float = 1800.0, threshold: float = 0.4,
              rule_window_s: float | None = None) -> dict:
    """First saturation finding and first predict_linear firing, each against the first time the
    latency series exceeds `budget`. Lead times are positive when the warning came first."""
    sat_ts = np.asarray(sat_ts, dtype=float)
    sat_values = np.asarray(sat_values, dtype=float)
    lat_ts = np.asarray(lat_ts, dtype=float)
    lat_values = np.asarray(lat_values, dtype=float)
    findings = saturation_findings(sat_ts, sat_values, capacity, window=window, horizon_s=horizon_s,
                                   threshold=threshold)
    if rule_window_s is None:  # the same span of history the detector looks at
        step = float(np.median(np.diff(sat_ts))) if sat_ts.size > 1 else 1.0
        rule_window_s = window * step
    rule = predict_linear(sat_ts, sat_values, rule_window_s, horizon_s)
    crossed = first_time(lat_ts, lat_values > budget)
    first_finding = findings[0]["ts"] if findings else None
    rule_first = first_time(sat_ts, rule >= capacity)

    def lead(t):
        return None if t is None or crossed is None else crossed - t

    return {
        "latency_crossed_s": crossed,
        "detector_first_s": first_finding,
        "detector_lead_s": lead(first_finding),
        "detector_findings": len(findings),
        "detector_first": findings[0] if findings else None,
        "predict_linear_first_s": rule_first,
        "predict_linear_lead_s": lead(rule_first),
        "predict_linear_rule": f"predict_linear(series[{rule_window_s:g}s], {horizon_s:g}) >= {capacity:g}",
        "predict_linear_firing_points": int(np.count_nonzero(rule >= capacity)),
        "detector_ahead_of_predict_linear_s": (
            None if first_finding is None else (math.inf if rule_first is None else rule_first - first_finding)
        ),
    }
