"""What each kind of rule computes at one evaluation: the label sets for which its condition holds,
with the value that made it hold.

Threshold and SLO rules read the in-memory `MetricView`; anomaly and predictive rules read the
recent findings (`FindingLog`) handed over by the anomaly service; predictive rules can also
project a series themselves (least squares, as Prometheus' predict_linear).
"""

from __future__ import annotations

import fnmatch
import math
import operator
import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from alerts.ruleset import AnomalyRule, PredictiveRule, Selector, SloRule, ThresholdRule, format_duration
from alerts.series import LabelSet, MetricView, Series
from anomaly.finding import Finding
from telemetry.quantiles import histogram_quantile

OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq, "!=": operator.ne}


@dataclass
class FindingLog:
    """The findings of the last `retention` seconds, oldest first."""

    retention: float = 3600.0
    items: deque = field(default_factory=deque)

    def add(self, finding: Any) -> Finding:
        """Keep a finding: an anomaly.Finding, or a dict/row of one."""
        rec = Finding.of(finding)
        self.items.append(rec)
        return rec

    def recent(self, now: float, window: float) -> Iterable[Finding]:
        while self.items and self.items[0].ts < now - self.retention:
            self.items.popleft()
        start = now - window
        return [f for f in self.items if start < f.ts <= now + 1e-9]


def _group_key(labels: dict[str, str], by: list[str] | None) -> LabelSet:
    if by is None:
        return tuple(sorted(labels.items()))
    return tuple((k, labels.get(k, "")) for k in sorted(by))


def _resolve(view: MetricView, sel: Selector, kind: str) -> list[Series]:
    """Series of a selector by sample name: a counter may be exposed with or without _total."""
    m = sel.metric
    if kind == "counter":
        candidates = [m, m + "_total", m.removesuffix("_total")]
    else:
        candidates = [m]
    for name in candidates:
        found = view.select(name, sel.match, sel.match_re)
        if found:
            return found
    return []


def _increase_by(view: MetricView, sel: Selector, by: list[str] | None, now: float, window: float, suffix: str = "") -> dict[LabelSet, float]:
    sub = Selector(metric=sel.metric + suffix, match=sel.match, match_re=sel.match_re) if suffix else sel
    out: dict[LabelSet, float] = {}
    for s in _resolve(view, sub, "counter"):
        inc = s.increase(now - window, now)
        if inc is None:
            continue
        k = _group_key(s.label_dict, by)
        out[k] = out.get(k, 0.0) + inc
    return out


def _quantile_by(view: MetricView, sel: Selector, q: float, by: list[str] | None, now: float, window: float) -> dict[LabelSet, float]:
    per_group: dict[LabelSet, dict[float, float]] = {}
    bsel = Selector(metric=sel.metric + "_bucket", match=sel.match, match_re=sel.match_re)
    for s in view.select(bsel.metric, bsel.match, bsel.match_re):
        d = s.label_dict
        try:
            le = float(d.get("le", "nan"))
        except ValueError:
            continue
        inc = s.increase(now - window, now)
        if inc is None:
            continue
        k = _group_key({k2: v for k2, v in d.items() if k2 != "le"}, by)
        b = per_group.setdefault(k, {})
        b[le] = b.get(le, 0.0) + inc
    out = {}
    for k, b in per_group.items():
        bounds = sorted(b)
        v = histogram_quantile(q, bounds, [b[le] for le in bounds])
        if not math.isnan(v):
            out[k] = v
    return out


def aggregate(view: MetricView, sel: Selector, aggregation: str, by: list[str] | None, now: float, window: float, q: float | None = None) -> dict[LabelSet, float]:
    """One value per `by` group: the aggregation over the window, combined across series."""
    if aggregation in ("rate", "increase"):
        inc = _increase_by(view, sel, by, now, window)
        return {k: (v / window if aggregation == "rate" else v) for k, v in inc.items()}
    if aggregation == "quantile":
        return _quantile_by(view, sel, q or 0.99, by, now, window)
    if aggregation == "mean_from_histogram":
        sums = _increase_by(view, sel, by, now, window, "_sum")
        counts = _increase_by(view, sel, by, now, window, "_count")
        return {k: sums[k] / c for k, c in counts.items() if c > 0 and k in sums}
    groups: dict[LabelSet, list[float]] = {}
    for s in _resolve(view, sel, "gauge"):
        vals = s.window(now - window, now)
        if not vals:
            continue
        if aggregation == "avg":
            v = sum(vals) / len(vals)
        elif aggregation == "min":
            v = min(vals)
        elif aggregation in ("max",):
            v = max(vals)
        elif aggregation == "sum":
            v = sum(vals) / len(vals)  # sum across series of each series' mean level
        else:  # last
            v = vals[-1]
        groups.setdefault(_group_key(s.label_dict, by), []).append(v)
    combine = {"avg": lambda xs: sum(xs) / len(xs), "min": min, "max": max, "sum": sum, "last": max}[aggregation]
    return {k: combine(vs) for k, vs in groups.items()}


def eval_threshold(rule: ThresholdRule, view: MetricView, now: float) -> dict[LabelSet, float]:
    num = aggregate(view, rule.expr, rule.aggregation, rule.by, now, rule.window, rule.quantile)
    if rule.ratio_to is not None:
        den = aggregate(view, rule.ratio_to, rule.aggregation, rule.by, now, rule.window, rule.quantile)
        values = {}
        for k, d in den.items():
            if d > 0 and d >= rule.min_denominator:
                values[k] = num.get(k, 0.0) / d
    else:
        values = num
    cmp = OPS[rule.op]
    return {k: v for k, v in values.items() if cmp(v, rule.threshold)}


def _finding_matches(f: Finding, kinds, metric: str | None, detector: str | None, rule=None) -> bool:
    if f.kind not in kinds:
        return False
    if rule is not None:
        if any(f.labels.get(k, "") != v for k, v in rule.match.items()):
            return False
        if any(not re.fullmatch(v, f.labels.get(k, "")) for k, v in rule.match_re.items()):
            return False
    if metric and not (f.metric == metric or fnmatch.fnmatchcase(f.metric, metric)):
        return False
    if detector and f.detector != detector:
        return False
    return True


def _confident(f: Finding, minimum: float) -> bool:
    """A finding without a confidence (NaN) is not filtered by it."""
    return math.isnan(f.confidence) or f.confidence >= minimum


def _finding_labels(f: Finding) -> dict[str, str]:
    return {**f.labels, "metric": f.metric}


def eval_anomaly(rule: AnomalyRule, findings: FindingLog, now: float) -> dict[LabelSet, float]:
    out: dict[LabelSet, float] = {}
    for f in findings.recent(now, rule.window):
        if not _finding_matches(f, rule.kinds, rule.metric, rule.detector, rule):
            continue
        if f.score < rule.min_score or not _confident(f, rule.min_confidence):
            continue
        k = _group_key(_finding_labels(f), rule.by)
        out[k] = max(out.get(k, 0.0), f.score)
    return out


def eval_predictive(rule: PredictiveRule, view: MetricView, findings: FindingLog, now: float) -> dict[LabelSet, float]:
    if rule.source == "findings":
        latest: dict[LabelSet, Finding] = {}
        for f in findings.recent(now, rule.window):
            if not _finding_matches(f, ("saturation_trend",), rule.metric, None, rule):
                continue
            latest[_group_key(_finding_labels(f), rule.by)] = f  # oldest first: the last one wins
        return {
            k: f.time_to_exhaustion_s
            for k, f in latest.items()
            if _confident(f, rule.min_confidence)
            and not math.isnan(f.time_to_exhaustion_s)
            and f.time_to_exhaustion_s < rule.horizon
        }
    out: dict[LabelSet, float] = {}
    for s in _resolve(view, rule.expr, "gauge"):
        if rule.min_value is not None and (s.last() is None or s.last() < rule.min_value):
            continue
        tte = predict_exhaustion(s, now, rule.window, rule.capacity)
        if tte is None or tte >= rule.horizon:
            continue
        k = _group_key(s.label_dict, rule.by)
        out[k] = min(out.get(k, math.inf), tte)
    return out


def predict_exhaustion(s: Series, now: float, window: float, capacity: float) -> float | None:
    """Seconds until a least-squares line over the window reaches `capacity` (0 if already there)."""
    import bisect

    i = bisect.bisect_right(s.ts, now - window)
    j = bisect.bisect_right(s.ts, now)
    if j - i < 3:
        return None
    t = np.asarray(s.ts[i:j]) - now
    y = np.asarray(s.values[i:j])
    if y[-1] >= capacity:
        return 0.0
    slope, intercept = np.polyfit(t, y, 1)
    if slope <= 0:
        return None
    return float(max(0.0, (capacity - intercept) / slope))


def _bad_ratio(rule: SloRule, view: MetricView, now: float, window: float) -> tuple[float, float] | None:
    """(bad fraction, events) over the window, summed over all matching series."""
    sli = rule.sli
    if sli.kind == "latency":
        sel = Selector(metric=sli.metric, match=sli.match)
        total = sum(_increase_by(view, sel, [], now, window, "_count").values())
        good = 0.0
        found = False
        for s in view.select(sli.metric + "_bucket", sli.match):
            try:
                le = float(s.label_dict.get("le", "nan"))
            except ValueError:
                continue
            if math.isclose(le, sli.threshold, rel_tol=1e-9, abs_tol=1e-12):
                inc = s.increase(now - window, now)
                if inc is not None:
                    good += inc
                    found = True
        if not found or total <= 0:
            return None
        return max(0.0, 1.0 - good / total), total
    bad = sum(_increase_by(view, sli.bad, [], now, window).values())
    total = sum(_increase_by(view, sli.total, [], now, window).values())
    if total <= 0:
        return None
    return bad / total, total


def _history_start(rule: SloRule, view: MetricView) -> float | None:
    name = rule.sli.metric + "_count" if rule.sli.kind == "latency" else rule.sli.total.metric
    starts = [s.first_ts() for s in _resolve(view, Selector(metric=name), "counter")]
    starts = [t for t in starts if t is not None]
    return min(starts) if starts else None


def eval_slo(rule: SloRule, view: MetricView, now: float) -> dict[LabelSet, float]:
    budget = 1.0 - rule.objective
    out: dict[LabelSet, float] = {}
    cache: dict[float, tuple[float, float] | None] = {}
    first = _history_start(rule, view)
    for bw in rule.burn_windows:
        # a pair is judged only once the view holds its short window: ten seconds of a fresh
        # process are not "the last 6 hours"
        if first is None or now - first < bw.short:
            continue
        burns = []
        for w in (bw.long, bw.short):
            if w not in cache:
                cache[w] = _bad_ratio(rule, view, now, w)
            r = cache[w]
            if r is None or r[1] < rule.min_events:
                break
            burns.append(r[0] / budget)
        if len(burns) == 2 and burns[0] > bw.factor and burns[1] > bw.factor:
            key = (("burn_window", f"{format_duration(bw.long)}/{format_duration(bw.short)}"), ("severity", bw.severity))
            out[key] = burns[0]
    return out


def evaluate(rule, view: MetricView, findings: FindingLog, now: float) -> dict[LabelSet, float]:
    if rule.type == "threshold":
        return eval_threshold(rule, view, now)
    if rule.type == "anomaly":
        return eval_anomaly(rule, findings, now)
    if rule.type == "predictive":
        return eval_predictive(rule, view, findings, now)
    return eval_slo(rule, view, now)


def metrics_of(rule) -> list[str]:
    """Catalog metric names a rule reads from the view."""
    if rule.type == "threshold":
        return [rule.expr.metric] + ([rule.ratio_to.metric] if rule.ratio_to else [])
    if rule.type == "predictive" and rule.source == "series":
        return [rule.expr.metric]
    if rule.type == "slo":
        if rule.sli.kind == "latency":
            return [rule.sli.metric]
        return [rule.sli.bad.metric, rule.sli.total.metric]
    return []
