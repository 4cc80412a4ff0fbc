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
from telemetry.quantiles import histogram_quantiles
from telemetry.store.series_reads import gauge_steps, histogram_bucket_steps, samples_time_span


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


def first_time(ts: np.ndarray, mask: np.ndarray, sustain: int = 1) -> float | None:
    """The first time `mask` holds for `sustain` consecutive points (a crossing that lasts)."""
    mask = np.asarray(mask, dtype=bool)
    if sustain > 1 and mask.size >= sustain:
        run = np.convolve(mask.astype(int), np.ones(sustain, dtype=int), mode="valid") == sustain
        idx = np.flatnonzero(run)
    else:
        idx = np.flatnonzero(mask)
    return float(ts[idx[0]]) if idx.size else None


def saturation_findings(ts, values, capacity: float, *, window: int = 40, horizon_s: float = 2700.0,
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
              window: int = 40, horizon_s: float = 2700.0, threshold: float = 0.4,
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


# -- over a simulated scenario in the store --------------------------------------------------------
def histogram_quantile_series(store, metric_id: int, metric: str, step_s: float, q: float = 0.99):
    """(step start times in s, the q-quantile of each step's observations across every label set),
    from the stored cumulative buckets."""
    step_ms = int(step_s * 1000)
    frame = histogram_bucket_steps(store, metric_id, metric, step_ms)
    if frame.empty:
        return np.array([]), np.array([])
    frame["bound"] = frame["le"].map(lambda s: math.inf if s in ("+Inf", "inf", "Inf") else float(s))
    table = frame.pivot_table(index="bucket_ms", columns="bound", values="cum", aggfunc="sum").sort_index()
    table = table.reindex(sorted(table.columns), axis=1).ffill().fillna(0.0)
    bounds = np.array(table.columns, dtype=float)
    cum = table.to_numpy()
    inc = np.diff(cum, axis=0)
    ts = table.index.to_numpy()[1:] / 1000.0
    out = histogram_quantiles(q, bounds, inc) if len(inc) else np.zeros(0)
    out[np.any(inc < 0, axis=1)] = np.nan  # a counter reset inside the step: no estimate
    return ts, out


def gauge_series(store, metric_id: int, metric: str, step_s: float) -> dict:
    """{labels tuple: (times s, step averages)} for every series of a gauge."""
    frame = gauge_steps(store, metric_id, metric, int(step_s * 1000))
    out = {}
    for _fp, g in frame.groupby("fingerprint"):
        labels = tuple(sorted(zip(g["label_keys"].iloc[0], g["label_values"].iloc[0])))
        out[labels] = (g["bucket_ms"].to_numpy() / 1000.0, g["value"].to_numpy(dtype=float))
    return out


def saturation_series(store, catalog, step_s: float, exclude=()) -> dict:
    """{(metric, labels tuple): (times s, usage / capacity)} for every stored gauge the anomaly service
    forecasts: those the catalog gives a fixed `capacity`, and those with a `capacity_metric`, divided
    step by step by the capacity gauge with the matching labels."""
    out = {}
    for spec in catalog:
        if spec.type != "gauge" or spec.name in exclude or (spec.capacity is None and not spec.capacity_metric):
            continue
        used = gauge_series(store, spec.id, spec.name, step_s)
        if not used:
            continue
        if spec.capacity is not None:
            for labels, (ts, v) in used.items():
                out[(spec.name, labels)] = (ts, v / float(spec.capacity))
            continue
        cap_spec = catalog.get(spec.capacity_metric)
        if cap_spec is None:
            continue
        caps = gauge_series(store, cap_spec.id, cap_spec.name, step_s)
        for labels, (ts, v) in used.items():
            d = dict(labels)
            want = tuple(sorted((k, d.get(k, "")) for k in cap_spec.labels))
            if want not in caps:
                continue
            cts, cv = caps[want]
            common, iu, ic = np.intersect1d(ts, cts, return_indices=True)
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(cv[ic] > 0, v[iu] / cv[ic], np.nan)
            out[(spec.name, labels)] = (common, ratio)
    return out


def predict_linear_rule(watched: dict, window_s: float, horizon_s: float, for_s: float, step_s: float) -> dict:
    """The Prometheus rule `predict_linear(x[window], horizon) >= 1` with `for: for_s` over every series
    in `watched` (usage as a fraction of capacity): when each first fired, which series fired at all."""
    sustain = 1 + int(round(for_s / step_s))
    firing, first_on = [], {}
    for (metric, labels), (ts, v) in watched.items():
        if ts.size < 2:
            continue
        pred = predict_linear(ts, v, window_s, horizon_s)
        hit = first_time(ts, pred >= 1.0, sustain)
        if hit is not None:
            # a rule with `for:` fires when the condition has held that long, not when it began
            hit = float(ts[np.searchsorted(ts, hit) + sustain - 1])
            name = metric + "{" + ",".join(f'{k}="{val}"' for k, val in labels) + "}"
            firing.append((hit, name))
            first_on[metric] = min(hit, first_on.get(metric, math.inf))
    firing.sort()
    return {
        "rule": f"predict_linear(x[{window_s:g}s], {horizon_s:g}) >= capacity, for {for_s:g}s",
        "horizon_s": horizon_s, "for_s": for_s,
        "first_ts": firing[0][0] if firing else None,
        "first_series": firing[0][1] if firing else None,
        "series_firing": len(firing),
        "firing": [name for _, name in firing][:20],
        "first_on": first_on,
    }


def compare_with_predict_linear(incident: dict, baseline: dict | None) -> dict:
    """The fair comparison: among the predict_linear rules that stay quiet on the normal day (no series
    firing), the one that fires first on the incident, against the detector's first saturation
    finding. A rule that fires on a normal day would page someone for nothing, like a false finding."""
    quiet = [name for name, r in incident["predict_linear"].items()
             if baseline is None or baseline["predict_linear"].get(name, {}).get("series_firing", 1) == 0]
    fired = [(incident["predict_linear"][n]["first_s"], n) for n in quiet
             if incident["predict_linear"][n]["first_s"] is not None]
    best = min(fired) if fired else None
    det = incident.get("first_saturation_finding_s")
    return {
        "rules_quiet_on_baseline": quiet,
        "rules_firing_on_baseline": [n for n in incident["predict_linear"] if n not in quiet],
        "baseline_findings": None if baseline is None else baseline["findings"],
        "best_quiet_rule": None if best is None else best[1],
        "best_quiet_rule_first_s": None if best is None else best[0],
        "detector_first_s": det,
        "detector_ahead_s": (None if det is None else (math.inf if best is None else best[0] - det)),
    }


def scenario_report(store, catalog, settings=None, *, budget_s: float = 0.3,
                    saturation_metric: str = "voxwatch_pool_saturation_ratio",
                    latency_metric: str = "voxwatch_turn_latency_seconds",
                    rule_window_s: float | None = None, rule_horizons_s=(1800.0, 2700.0, 3600.0, 7200.0),
                    rule_for_s=(0.0, 300.0),
                    latency_curve: tuple | None = None, sustain_s: float = 120.0,
                    explosion_s: float = 2.0) -> dict:
    """Run the anomaly service over everything a scenario stored, then compare its first saturation
    finding, and predict_linear rules over the same saturation series (every series the service
    forecasts, as a fraction of its capacity; several horizons, with and without a `for:`), with the
    moment turn-latency P99 first exceeds `budget_s` for `sustain_s`. `latency_curve` = (epoch seconds, P99 seconds), e.g. the
    simulator's exact per-minute P99; without it the P99 is estimated from the stored buckets."""
    from anomaly.service import AnomalyService, AnomalySettings
    from telemetry.clock import VirtualClock

    settings = settings or AnomalySettings()
    step_s = settings.step_s
    t0_ms, t1_ms = samples_time_span(store)
    service = AnomalyService(clock=VirtualClock(t0_ms / 1000.0), catalog=catalog, settings=settings)
    findings = []
    chunk_ms = 300_000  # five minutes of samples per poll, as a running service would read them
    step_ms = int(step_s * 1000)
    end_ms = t1_ms // step_ms * step_ms  # the last step may hold a lone final sample: not a whole step
    t = t0_ms
    while t < end_ms:
        t = min(t + chunk_ms, end_ms)
        findings.extend(service.poll_store(store, until_ms=t))

    if latency_curve is not None:
        lat_ts, p99 = (np.asarray(a, dtype=float) for a in latency_curve)
        latency_source = "simulator per-minute P99"
    else:
        lat_ts, p99 = histogram_quantile_series(store, catalog[latency_metric].id, latency_metric, step_s)
        latency_source = f"P99 from stored {latency_metric} buckets"
    lat_step = float(np.median(np.diff(lat_ts))) if lat_ts.size > 1 else step_s
    sustain = max(1, int(round(sustain_s / lat_step)))
    crossed = first_time(lat_ts, p99 > budget_s, sustain) if lat_ts.size else None
    # when callers plainly hear it (the incident's 180 ms -> 2.4 s): meaningful even where the P99
    # sits above the budget from the start
    exploded = first_time(lat_ts, p99 > explosion_s, sustain) if lat_ts.size else None
    settled = p99[: max(1, len(p99) // 10)]
    sat_findings = [f for f in findings if f.kind == "saturation_trend"]
    first = min(sat_findings, key=lambda f: f.ts) if sat_findings else None
    on_metric = [f for f in sat_findings if f.metric == saturation_metric]
    first_on_metric = min(on_metric, key=lambda f: f.ts) if on_metric else None

    window_s = rule_window_s or settings.saturation.window * step_s
    watched = saturation_series(store, catalog, step_s, exclude=settings.saturation.exclude)
    rules = {}
    for horizon in rule_horizons_s:
        for for_s in rule_for_s:
            r = predict_linear_rule(watched, window_s, horizon, for_s, step_s)
            r["lead_s"] = None if r["first_ts"] is None or crossed is None else crossed - r["first_ts"]
            r["lead_to_explosion_s"] = (None if r["first_ts"] is None or exploded is None
                                        else exploded - r["first_ts"])
            r["first_on"] = {m: v - t0_ms / 1000.0 for m, v in r["first_on"].items()}
            r["first_on_saturation_metric_s"] = r["first_on"].get(saturation_metric)
            r["first_s"] = None if r["first_ts"] is None else r["first_ts"] - t0_ms / 1000.0
            rules[r.pop("rule")] = r

    def rel(x):
        return None if x is None else x - t0_ms / 1000.0

    return {
        "start_ms": t0_ms,
        "duration_s": (t1_ms - t0_ms) / 1000.0,
        "latency_p99_crossed_s": rel(crossed),
        "latency_source": latency_source,
        "latency_p99_first_tenth_ms": float(np.nanmedian(settled) * 1000) if len(settled) else None,
        "first_saturation_finding_s": rel(first.ts) if first else None,
        "first_saturation_finding": None if first is None else {
            "metric": first.metric, "labels": first.labels, "value": first.value,
            "time_to_exhaustion_s": first.time_to_exhaustion_s, "confidence": first.confidence,
            "reason": first.reason},
        "detector_lead_s": None if first is None or crossed is None else crossed - first.ts,
        "latency_p99_explosion_s": rel(exploded),
        "explosion_threshold_s": explosion_s,
        "detector_lead_to_explosion_s": None if first is None or exploded is None else exploded - first.ts,
        "first_finding_on_saturation_metric_s": rel(first_on_metric.ts) if first_on_metric else None,
        "lead_to_explosion_on_saturation_metric_s": (
            None if first_on_metric is None or exploded is None else exploded - first_on_metric.ts),
        "findings": len(findings),
        "findings_by_kind": dict(service.findings_total),
        "findings_list": [{"t_s": rel(f.ts), "kind": f.kind, "metric": f.metric, "labels": f.labels,
                           "reason": f.reason} for f in findings],
        "predict_linear": rules,
        "series": service.stats()["series"],
        "skipped": service.skipped(),
    }
