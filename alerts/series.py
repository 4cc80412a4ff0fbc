"""An in-memory view of the recent samples of the metrics that rules read, fed at each tick.

Rules are evaluated every (simulated) second, so they read from memory rather than querying the
store each time: a fine history (every sample, `fine_retention` seconds) for short windows and a
coarse one (one sample per `coarse_step`) for the long SLO windows (up to days). The view is fed
from a prometheus-client registry (`scrape_registry`), from stored samples (`alerts.backtest`), or
directly (`ingest`).
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

LabelSet = tuple[tuple[str, str], ...]


def labelset(labels: Mapping[str, str] | LabelSet) -> LabelSet:
    if isinstance(labels, tuple):
        return labels
    return tuple(sorted((str(k), str(v)) for k, v in labels.items()))


@dataclass
class Series:
    name: str
    labels: LabelSet
    ts: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    coarse_ts: list[float] = field(default_factory=list)
    coarse_values: list[float] = field(default_factory=list)

    @property
    def label_dict(self) -> dict[str, str]:
        return dict(self.labels)

    def last(self) -> float | None:
        return self.values[-1] if self.values else None

    def window(self, start: float, end: float) -> list[float]:
        """Samples with start < ts <= end (fine history, falling back to coarse for older spans)."""
        if self.ts and start >= self.ts[0] - 1e-9:
            i = bisect.bisect_right(self.ts, start)
            j = bisect.bisect_right(self.ts, end)
            return self.values[i:j]
        i = bisect.bisect_right(self.coarse_ts, start)
        first_fine = self.ts[0] if self.ts else math.inf
        j = bisect.bisect_left(self.coarse_ts, first_fine)
        out = self.coarse_values[i:j]
        k = bisect.bisect_right(self.ts, end)
        return out + self.values[:k]

    def at(self, t: float) -> float | None:
        """The latest sample at or before t (None if there is none)."""
        if self.ts and t >= self.ts[0]:
            i = bisect.bisect_right(self.ts, t)
            return self.values[i - 1]
        i = bisect.bisect_right(self.coarse_ts, t)
        if i > 0:
            return self.coarse_values[i - 1]
        return None

    def first_ts(self) -> float | None:
        if self.coarse_ts:
            return self.coarse_ts[0]
        return self.ts[0] if self.ts else None

    def value_at_or_after(self, t: float) -> float | None:
        """The earliest sample after t: the start value of a counter whose series began inside the window."""
        i = bisect.bisect_right(self.coarse_ts, t)
        if i < len(self.coarse_ts):
            return self.coarse_values[i]
        i = bisect.bisect_right(self.ts, t)
        if i < len(self.ts):
            return self.values[i]
        return None

    def increase(self, start: float, end: float) -> float | None:
        """Counter increase over (start, end]; a decrease (counter reset) counts from zero."""
        v_end = self.at(end)
        if v_end is None:
            return None
        v_start = self.at(start)
        if v_start is None:
            # the series started inside the window: count from its first sample (no extrapolation)
            v_start = self.value_at_or_after(start)
            if v_start is None:
                return None
        d = v_end - v_start
        return v_end if d < 0 else d


class MetricView:
    """Recent samples per series, by sample name. Cheap to feed every tick, cheap to query."""

    def __init__(self, fine_retention: float = 900.0, coarse_step: float = 60.0, coarse_retention: float = 3 * 86400.0 + 3600):
        self.fine_retention = fine_retention
        self.coarse_step = coarse_step
        self.coarse_retention = coarse_retention
        self._by_name: dict[str, dict[LabelSet, Series]] = {}
        self.now: float = 0.0
        self._last_trim = 0.0

    def names(self) -> list[str]:
        return list(self._by_name)

    def ingest(self, ts: float, samples: Iterable[tuple[str, Mapping[str, str] | LabelSet, float]]) -> int:
        n = 0
        for name, labels, value in samples:
            value = float(value)
            if not math.isfinite(value):
                continue  # a NaN gauge says nothing; the rule sees the gap as "no data"
            ls = labelset(labels)
            per = self._by_name.setdefault(name, {})
            s = per.get(ls)
            if s is None:
                s = per[ls] = Series(name, ls)
            if s.ts and ts < s.ts[-1]:
                continue  # out of order: ignore rather than corrupt the window
            if s.ts and ts == s.ts[-1]:
                s.values[-1] = value
            else:
                s.ts.append(ts)
                s.values.append(value)
            if not s.coarse_ts or ts - s.coarse_ts[-1] >= self.coarse_step:
                s.coarse_ts.append(ts)
                s.coarse_values.append(value)
            n += 1
        self.now = max(self.now, ts)
        if self.now - self._last_trim >= 30.0:
            self._trim()
        return n

    def _trim(self) -> None:
        self._last_trim = self.now
        fine_cut = self.now - self.fine_retention
        coarse_cut = self.now - self.coarse_retention
        for per in self._by_name.values():
            for s in per.values():
                i = bisect.bisect_left(s.ts, fine_cut)
                if i > 0:
                    del s.ts[:i]
                    del s.values[:i]
                j = bisect.bisect_left(s.coarse_ts, coarse_cut)
                if j > 0:
                    del s.coarse_ts[:j]
                    del s.coarse_values[:j]

    def select(self, name: str, match: Mapping[str, str] | None = None, match_re: Mapping[str, str] | None = None) -> list[Series]:
        per = self._by_name.get(name)
        if not per:
            return []
        match = match or {}
        regexes = {k: re.compile(v) for k, v in (match_re or {}).items()}
        out = []
        for s in per.values():
            d = s.label_dict
            if any(d.get(k, "") != v for k, v in match.items()):
                continue
            if any(not r.fullmatch(d.get(k, "")) for k, r in regexes.items()):
                continue
            out.append(s)
        return out

    def scrape_registry(self, registry, ts: float, names: Iterable[str] | None = None) -> int:
        """Ingest the current samples of a prometheus-client registry (only `names` if given)."""
        reg = registry.restricted_registry(list(names)) if names is not None else registry
        samples = []
        for metric in reg.collect():
            for s in metric.samples:
                if s.name.endswith("_created"):
                    continue
                samples.append((s.name, s.labels, s.value))
        return self.ingest(ts, samples)


def sample_names_for(metric: str) -> list[str]:
    """Every sample name a catalog metric may expose (counter _total, histogram _bucket/_sum/_count)."""
    base = metric.removesuffix("_total")
    return sorted({metric, base, base + "_total", metric + "_bucket", metric + "_sum", metric + "_count"})
