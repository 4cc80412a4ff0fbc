"""From stored samples to the series detectors watch.

Gauges are watched as they are. Counters are cumulative, so they are watched as a rate per second
between consecutive samples (a drop is a counter reset: that interval is skipped and counted).
Histograms are cumulative buckets, so each interval's P99 is estimated from the bucket increments,
with telemetry's `histogram_quantile` (Prometheus' rule), and watched under the histogram's name with the label
stat="p99" (only for steps with at least `min_observations` observations). Every sample left out is counted by cause in `skipped`.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np

from telemetry.quantiles import histogram_quantile  # the one rule, +Inf included

Labels = tuple[tuple[str, str], ...]  # sorted (key, value) pairs: hashable label sets


def labels_key(labels: dict[str, str] | Labels) -> Labels:
    items = labels.items() if isinstance(labels, dict) else labels
    return tuple(sorted((str(k), str(v)) for k, v in items))


@dataclass(frozen=True)
class SeriesKey:
    """A watched series: the catalog metric and its labels (histogram statistics carry `stat`)."""

    metric: str
    labels: Labels
    fingerprint: int = 0

    @property
    def labels_dict(self) -> dict[str, str]:
        return dict(self.labels)

    def describe(self) -> str:
        inner = ",".join(f'{k}="{v}"' for k, v in self.labels)
        return f"{self.metric}{{{inner}}}" if inner else self.metric


@dataclass
class Sample:
    """One stored or live sample, as metric_samples + metric_series describe it."""

    metric: str
    labels: dict[str, str]
    value: float
    sample_name: str = ""  # e.g. *_bucket, *_sum, *_count, *_total; empty = the metric itself
    metric_type: str = "gauge"
    fingerprint: int = 0
    sample_ts: float | None = None  # when the value was taken, if not the tick's time (stepped reads)


@dataclass
class SeriesDeriver:
    """Keeps the previous cumulative values it needs and turns one tick of samples into
    (SeriesKey, value) pairs."""

    quantile: float = 0.99
    # a P99 of a handful of observations is their maximum, i.e. noise: fewer than this in a step and
    # the step's quantile is not judged
    min_observations: int = 50
    skipped: Counter = field(default_factory=Counter)
    # per derived quantile series: the width of the bucket its latest estimate fell in. Within one
    # bucket the estimate is interpolation, so moves smaller than that are not news. Per rate of a
    # counter of whole events: one event over the interval, the smallest move it can make.
    resolution: dict = field(default_factory=dict)
    _prev: dict = field(default_factory=dict)  # (sample key) -> (ts, value)

    def derive(self, ts: float, samples: list[Sample]) -> list[tuple[SeriesKey, float]]:
        out: list[tuple[SeriesKey, float]] = []
        buckets: dict[tuple[str, Labels], list[tuple[float, float, int]]] = defaultdict(list)
        for s in samples:
            if s.metric_type == "histogram" or s.sample_name.endswith(("_bucket", "_sum", "_count")):
                if s.sample_name.endswith("_bucket"):
                    le = s.labels.get("le")
                    try:
                        bound = float(le) if le is not None else math.nan
                    except ValueError:
                        bound = math.nan
                    if math.isnan(bound):
                        self.skipped["bad_bucket"] += 1
                        continue
                    rest = labels_key({k: v for k, v in s.labels.items() if k != "le"})
                    buckets[(s.metric, rest)].append((bound, s.value, s.fingerprint))
                continue  # _sum/_count: the buckets carry what the P99 needs
            key = SeriesKey(s.metric, labels_key(s.labels), s.fingerprint)
            if s.metric_type == "counter" or s.sample_name.endswith("_total"):
                value = self._rate(key, ts if s.sample_ts is None else s.sample_ts, s.value)
                if value is not None:
                    out.append((key, value))
            else:
                out.append((key, s.value))
        for (metric, rest), rows in buckets.items():
            value = self._interval_quantile(metric, rest, ts, rows)
            if value is not None:
                key = SeriesKey(metric, labels_key(rest + (("stat", f"p{round(self.quantile * 100):d}"),)))
                bounds = np.array(sorted(r[0] for r in rows))
                finite = bounds[np.isfinite(bounds)]
                i = int(np.searchsorted(finite, value, side="left"))
                lower = finite[i - 1] if 0 < i <= len(finite) else 0.0
                upper = finite[min(i, len(finite) - 1)] if len(finite) else 0.0
                self.resolution[key] = float(max(upper - lower, 0.0))
                out.append((key, value))
        return out

    def _rate(self, key: SeriesKey, ts: float, value: float) -> float | None:
        if not math.isfinite(value):
            self.skipped["non_finite"] += 1
            return None
        prev = self._prev.get(key)
        self._prev[key] = (ts, value)
        if prev is None:
            self.skipped["first_sample"] += 1
            return None
        t0, v0 = prev
        if ts <= t0:
            self.skipped["out_of_order"] += 1
            return None
        if value < v0:
            self.skipped["counter_reset"] += 1
            return None
        if float(value).is_integer() and float(v0).is_integer():
            # a counter of events: its rate over the interval is coarse at one event
            self.resolution[key] = 1.0 / (ts - t0)
        return (value - v0) / (ts - t0)

    def _interval_quantile(self, metric: str, rest: Labels, ts: float, rows) -> float | None:
        rows.sort()
        bounds = np.array([r[0] for r in rows])
        cum = np.array([r[1] for r in rows], dtype=float)
        if not np.all(np.isfinite(cum)):
            self.skipped["non_finite"] += 1
            return None
        key = ("hist", metric, rest)
        prev = self._prev.get(key)
        self._prev[key] = (ts, bounds, cum)
        if prev is None:
            self.skipped["first_sample"] += 1
            return None
        t0, b0, c0 = prev
        if ts <= t0:
            self.skipped["out_of_order"] += 1
            return None
        if len(b0) != len(bounds) or not np.array_equal(b0, bounds) or np.any(cum < c0):
            self.skipped["counter_reset"] += 1
            return None
        inc = cum - c0
        if not inc[-1] > 0:
            self.skipped["empty_interval"] += 1  # nothing observed: no latency to judge
            return None
        if inc[-1] < self.min_observations:
            self.skipped["few_observations"] += 1
            return None
        return histogram_quantile(self.quantile, bounds, inc)
