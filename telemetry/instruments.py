"""Instruments: the typed way code reaches a declared metric, backed by one prometheus-client registry.

    tel = Telemetry()                                   # the shipped catalog, a private registry
    tel["voxwatch_pool_connections_in_use"].labels(pool="crm").set(3)
    wait = tel["voxwatch_pool_wait_seconds"].labels(pool="crm")   # bind once on hot paths...
    wait.observe(0.012)                                             # ...then observe cheaply

Each `Telemetry` owns its own `CollectorRegistry` (never the process-global one) so tests and
simulations running side by side never share counters. Mistakes fail loudly: an undeclared metric is
a KeyError, an undeclared or missing label a ValueError, both naming the metric. Data mistakes are
counted, not raised: NaN/infinite observations and negative counter increments go to
`voxwatch_instrument_rejected_observations_total{metric,reason}` and are never stored. A per-metric
series limit guards label cardinality: label sets beyond it fold into one `__overflow__` series and are
counted in `voxwatch_instrument_series_overflow_total{metric}`.

`Telemetry.disabled()` has the same surface and records nothing (the baseline of the overhead bench).
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_left
from typing import TYPE_CHECKING, Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from telemetry.catalog import DEFAULT_SERIES_LIMIT, Catalog, MetricSpec, default_catalog
from telemetry.clock import Clock, WallClock

if TYPE_CHECKING:
    from telemetry.traces import CallTracing

OVERFLOW = "__overflow__"
REJECTED_METRIC = "voxwatch_instrument_rejected_observations_total"
OVERFLOW_METRIC = "voxwatch_instrument_series_overflow_total"
_SELF_METRICS = (REJECTED_METRIC, OVERFLOW_METRIC)
_INF = math.inf


def _reject_reason(value: float) -> str:
    if value != value:
        return "nan"
    if value in (_INF, -_INF):
        return "inf"
    return "negative_increment"


# ---- children: one label set of one metric (what hot paths hold on to)

class CounterChild:
    __slots__ = ("_c", "_v", "_inst")

    def __init__(self, prom, inst: Instrument) -> None:
        self._c = prom
        self._v = prom._value  # the locked value behind prometheus' inc(): same effect, half the cost
        self._inst = inst

    def inc(self, amount: float = 1.0) -> None:
        if 0.0 <= amount < _INF:  # NaN fails every comparison
            self._v.inc(amount)
        else:
            self._inst._reject(amount)


class GaugeChild:
    __slots__ = ("_g", "_v", "_inst")

    def __init__(self, prom, inst: Instrument) -> None:
        self._g = prom
        self._v = prom._value
        self._inst = inst

    def set(self, value: float) -> None:
        if -_INF < value < _INF:
            self._v.set(float(value))
        else:
            self._inst._reject(value)

    def inc(self, amount: float = 1.0) -> None:
        if -_INF < amount < _INF:
            self._v.inc(amount)
        else:
            self._inst._reject(amount)

    def dec(self, amount: float = 1.0) -> None:
        if -_INF < amount < _INF:
            self._v.inc(-amount)
        else:
            self._inst._reject(amount)


class HistogramChild:
    __slots__ = ("_h", "_inst", "_bounds", "_bounds_list", "_buckets", "_sum")

    def __init__(self, prom, inst: Instrument) -> None:
        self._h = prom
        self._inst = inst
        self._bounds = None
        # prometheus keeps one (non-cumulative) value per bucket and makes them cumulative on collect;
        # a value belongs to the first bucket whose upper bound is >= it: bisect_left finds it in
        # O(log n) where prometheus' observe() walks the list
        self._bounds_list = list(prom._upper_bounds)
        self._buckets = prom._buckets
        self._sum = prom._sum

    def observe(self, value: float) -> None:
        if -_INF < value < _INF:
            self._buckets[bisect_left(self._bounds_list, value)].inc(1.0)
            self._sum.inc(value)
        else:
            self._inst._reject(value)

    def observe_many(self, values) -> None:
        """Observe a batch at once (the simulator's path): one bucket count per bucket, not per value."""
        v = np.asarray(values, dtype=np.float64).ravel()
        if v.size == 0:
            return
        finite = np.isfinite(v)
        if not finite.all():
            bad = v[~finite]
            nan = int(np.isnan(bad).sum())
            if nan:
                self._inst._reject(math.nan, nan)
            if bad.size - nan:
                self._inst._reject(_INF, bad.size - nan)
            v = v[finite]
            if v.size == 0:
                return
        h = self._h
        if self._bounds is None:
            self._bounds = np.asarray(h._upper_bounds, dtype=np.float64)
        # prometheus puts a value in the first bucket whose upper bound is >= value (buckets are
        # stored per-bucket and made cumulative on collect), which is searchsorted side="left"
        counts = np.bincount(np.searchsorted(self._bounds, v, side="left"), minlength=self._bounds.size)
        for i in np.flatnonzero(counts):
            h._buckets[i].inc(float(counts[i]))
        h._sum.inc(float(v.sum()))


_CHILD = {"counter": CounterChild, "gauge": GaugeChild, "histogram": HistogramChild}
_PROM = {"counter": Counter, "gauge": Gauge, "histogram": Histogram}


# ---- instruments: one declared metric

class Instrument:
    """A declared metric. Labelled metrics hand out children with `labels(...)`; unlabelled ones record
    directly (`inc`, `set`, `observe`)."""

    __slots__ = ("spec", "name", "prom", "_labelnames", "_series", "_children", "_limit", "_tel",
                 "_lock", "_only", "_child_cls")

    def __init__(self, spec: MetricSpec, tel: Telemetry, registry: CollectorRegistry, series_limit: int):
        self.spec = spec
        self.name = spec.name
        self._tel = tel
        self._labelnames = spec.labels
        self._limit = spec.series_limit or series_limit
        self._lock = threading.Lock()
        self._child_cls = _CHILD[spec.type]
        kwargs: dict[str, Any] = {"labelnames": spec.labels, "registry": registry}
        if spec.type == "histogram":
            kwargs["buckets"] = spec.buckets
        self.prom = _PROM[spec.type](spec.prometheus_name, spec.description, **kwargs)
        self._series: dict[tuple[str, ...], Any] = {}  # label values (as str) -> child
        self._children: dict[tuple, Any] = {}  # label values as given -> child (lookup cache)
        self._only = None if spec.labels else self._child_cls(self.prom, self)

    def __repr__(self) -> str:
        return f"<{self.spec.type} {self.name} labels={list(self._labelnames)}>"

    @property
    def series_count(self) -> int:
        return len(self._series) if self._labelnames else 1

    @property
    def series_limit(self) -> int:
        """Label sets this metric may hold before new ones fold into `__overflow__`."""
        return self._limit

    def labels(self, *values, **labels):
        """The child for one label set, by position (catalog order) or by name."""
        if labels:
            if values:
                raise ValueError(f"{self.name}: give label values by position or by name, not both")
            try:
                values = tuple([labels[n] for n in self._labelnames])
            except KeyError as exc:
                raise ValueError(f"{self.name}: missing label {exc.args[0]!r}; "
                                 f"declared labels: {list(self._labelnames)}") from None
            if len(labels) != len(self._labelnames):
                extra = sorted(set(labels) - set(self._labelnames))
                raise ValueError(f"{self.name}: unknown label {extra[0]!r}; "
                                 f"declared labels: {list(self._labelnames)}")
        elif len(values) != len(self._labelnames):
            if not self._labelnames:
                raise ValueError(f"{self.name} has no labels; record on it directly")
            raise ValueError(f"{self.name}: expected {len(self._labelnames)} label values "
                             f"{list(self._labelnames)}, got {len(values)}")
        child = self._children.get(values)
        if child is None:
            child = self._bind(values)
        return child

    def _bind(self, values: tuple):
        key = tuple(v if type(v) is str else str(v) for v in values)
        with self._lock:
            child = self._series.get(key)
            if child is None:
                if len(self._series) >= self._limit:
                    # not cached: every lookup beyond the limit is counted
                    self._tel._overflowed(self.name)
                    return self._overflow_child()
                child = self._child_cls(self.prom.labels(*key), self)
                self._series[key] = child
            if len(self._children) < 2 * self._limit:
                self._children[values] = child
            return child

    def _overflow_child(self):
        key = (OVERFLOW,) * len(self._labelnames)
        child = self._series.get(key)
        if child is None:
            child = self._child_cls(self.prom.labels(*key), self)
            self._series[key] = child  # the overflow series itself may exceed the limit by one
        return child

    def children(self) -> dict[tuple[str, ...], Any]:
        """Every live series of this metric: label values -> child (a copy)."""
        if not self._labelnames:
            return {(): self._only}
        with self._lock:
            return dict(self._series)

    def _unlabelled(self):
        if self._only is None:
            raise ValueError(f"{self.name} has labels {list(self._labelnames)}; call .labels(...) first")
        return self._only

    def _reject(self, value: float, count: int = 1) -> None:
        self._tel._rejected(self.name, _reject_reason(value), count)


class CounterInstrument(Instrument):
    __slots__ = ()

    def inc(self, amount: float = 1.0) -> None:
        self._unlabelled().inc(amount)


class GaugeInstrument(Instrument):
    __slots__ = ()

    def set(self, value: float) -> None:
        self._unlabelled().set(value)

    def inc(self, amount: float = 1.0) -> None:
        self._unlabelled().inc(amount)

    def dec(self, amount: float = 1.0) -> None:
        self._unlabelled().dec(amount)


class HistogramInstrument(Instrument):
    __slots__ = ()

    def observe(self, value: float) -> None:
        self._unlabelled().observe(value)

    def observe_many(self, values) -> None:
        self._unlabelled().observe_many(values)


_INSTRUMENT = {"counter": CounterInstrument, "gauge": GaugeInstrument, "histogram": HistogramInstrument}


class Telemetry:
    """Every declared metric as an instrument, one registry, and the per-call tracer.

    `sink` (a telemetry.sink.Sink) receives spans and call records; `clock` stamps them.
    `trace_sample_ratio` is the share of calls whose spans are kept (call records are always written).
    """

    enabled = True

    def __init__(
        self,
        catalog: Catalog | None = None,
        *,
        registry: CollectorRegistry | None = None,
        series_limit: int = DEFAULT_SERIES_LIMIT,
        clock: Clock | None = None,
        sink: Any = None,
        trace_sample_ratio: float = 0.1,
        seed: int | None = None,
    ) -> None:
        self.catalog = catalog if catalog is not None else default_catalog()
        missing = [m for m in _SELF_METRICS if m not in self.catalog]
        if missing:
            # a custom (test) catalog still gets the two metrics instruments report into
            shipped = default_catalog()
            self.catalog = Catalog([*self.catalog, *(shipped[m] for m in missing)], self.catalog.sources)
        self.registry = registry if registry is not None else CollectorRegistry()
        self.series_limit = series_limit
        self.clock = clock if clock is not None else WallClock()
        self.sink = sink
        self.trace_sample_ratio = trace_sample_ratio
        self._seed = seed
        self._instruments: dict[str, Instrument] = {
            spec.name: _INSTRUMENT[spec.type](spec, self, self.registry, series_limit) for spec in self.catalog
        }
        self._rejected_inst = self._instruments[REJECTED_METRIC]
        self._overflow_inst = self._instruments[OVERFLOW_METRIC]
        self._traces: CallTracing | None = None

    def __getitem__(self, name: str) -> Any:
        try:
            return self._instruments[name]
        except KeyError:
            self.catalog[name]  # raises the KeyError naming the metric, with suggestions
            raise

    def __contains__(self, name: object) -> bool:
        return name in self._instruments

    def __iter__(self):
        return iter(self._instruments.values())

    @property
    def traces(self) -> CallTracing:
        """The per-call tracer (OpenTelemetry SDK, spans and call records through the sink)."""
        if self._traces is None:
            from telemetry.traces import CallTracing

            self._traces = CallTracing(self, sample_ratio=self.trace_sample_ratio, seed=self._seed)
        return self._traces

    def flush(self) -> None:
        """Hand buffered spans and call records to the sink (the sink's own flush writes them)."""
        if self._traces is not None:
            self._traces.flush()

    def _rejected(self, metric: str, reason: str, count: int = 1) -> None:
        self._rejected_inst.labels(metric, reason).inc(count)

    def _overflowed(self, metric: str) -> None:
        self._overflow_inst.labels(metric).inc()

    @classmethod
    def disabled(cls, catalog: Catalog | None = None, **_ignored) -> DisabledTelemetry:
        """A Telemetry that checks metric names and records nothing."""
        return DisabledTelemetry(catalog)


# ---- telemetry off

class _NoopRecorder:
    """Stands in for every instrument and child of a disabled Telemetry."""

    __slots__ = ()

    def labels(self, *values, **labels):
        return self

    def inc(self, amount: float = 1.0) -> None:
        pass

    def dec(self, amount: float = 1.0) -> None:
        pass

    def set(self, value: float) -> None:
        pass

    def observe(self, value: float) -> None:
        pass

    def observe_many(self, values) -> None:
        pass

    def children(self) -> dict:
        return {}


_NOOP = _NoopRecorder()


class DisabledTelemetry:
    """Same surface as Telemetry; names are still checked, nothing is recorded or exported."""

    enabled = False

    def __init__(self, catalog: Catalog | None = None) -> None:
        self.catalog = catalog if catalog is not None else default_catalog()
        self.registry = CollectorRegistry()
        self.clock = WallClock()
        self.sink = None
        self.trace_sample_ratio = 0.0
        self._traces = None

    def __getitem__(self, name: str) -> Any:
        self.catalog[name]
        return _NOOP

    def __contains__(self, name: object) -> bool:
        return name in self.catalog

    def __iter__(self):
        return iter(())

    @property
    def traces(self) -> CallTracing:
        if self._traces is None:
            from telemetry.traces import DisabledCallTracing

            self._traces = DisabledCallTracing(self.clock, self.sink)
        return self._traces

    def flush(self) -> None:
        pass


__all__ = [
    "OVERFLOW",
    "CounterChild",
    "DisabledTelemetry",
    "GaugeChild",
    "HistogramChild",
    "Instrument",
    "Telemetry",
]
