"""OTLP metrics -> `metric_series` and `metric_samples` rows, the same rows the snapshotter writes.

A metric whose name is in the catalog keeps the catalog's id (its type must agree); any other name is
*external*: its name is made a Prometheus name (`http.server.duration` -> `http_server_duration`,
monotonic sums get `_total`) and its id is taken from a hash in the upper half of the id space
(>= EXTERNAL_ID_BASE), where the catalog never goes, so a reader can tell the two apart.

Labels are the data point's attributes (dots become underscores) plus the resource's `source`
(service.name) and `environment` (deployment.environment), so several pipelines sit side by side.
Per-call identifiers (call_id, trace_id, ...) are refused as labels, as the catalog refuses them.

- gauge -> one sample per point;
- sum, cumulative -> the value (a counter when monotonic, else a gauge);
- sum, delta -> a running total per series, so rate() works as on our own counters;
- explicit-bucket histogram -> `_bucket{le=...}` (cumulative, `+Inf` = count), `_sum`, `_count`, delta
  temporality folded into running totals the same way;
- exponential histograms and summaries are refused (unsupported_type), counted, never half-stored.

The running totals of delta series are the only state, bounded (`max_delta_series`, oldest evicted).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import math
import re
from collections import OrderedDict

import numpy as np
from opentelemetry.proto.metrics.v1 import metrics_pb2
from prometheus_client.utils import floatToGoString

from telemetry.catalog import FORBIDDEN_LABELS
from telemetry.ingest.spans import IngestLimits, IngestResult, Source, any_value, as_text
from telemetry.snapshot import series_fingerprint

EXTERNAL_ID_BASE = 2**31
_DELTA = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
_CUMULATIVE = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
_NO_RECORDED_VALUE = metrics_pb2.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK
_BAD_CHARS = re.compile(r"[^a-zA-Z0-9_]")


@functools.lru_cache(maxsize=65536)
def prometheus_name(name: str) -> str:
    n = _BAD_CHARS.sub("_", name)
    return "_" + n if n[:1].isdigit() else n


def external_id(name: str) -> int:
    h = hashlib.blake2b(name.encode(), digest_size=4).digest()
    return EXTERNAL_ID_BASE + (int.from_bytes(h, "little") & 0x7FFFFFFF)


class MetricIngest:
    """Maps ExportMetricsServiceRequests into sample rows through a sink."""

    def __init__(self, telemetry, *, limits: IngestLimits | None = None, clock=None,
                 max_delta_series: int = 200_000, max_known_series: int = 1_000_000) -> None:
        self.telemetry = telemetry
        self.sink = telemetry.sink
        self.catalog = telemetry.catalog
        self.limits = limits or IngestLimits()
        self.clock = clock or telemetry.clock
        self.max_delta_series = max_delta_series
        self.max_known_series = max_known_series
        self._totals: OrderedDict[int, float] = OrderedDict()  # fingerprint -> running total of a delta series
        self._known: OrderedDict[int, None] = OrderedDict()  # series already written to metric_series
        self._m_points = telemetry["voxwatch_ingest_points_total"] if "voxwatch_ingest_points_total" in telemetry else None
        # (metric, labels, bounds) -> [(sample name, fingerprint)]: hashing labels is most of a point's cost
        self._plans: dict[tuple, list[tuple[str, int]]] = {}
        self.max_plans = 500_000

    def ingest(self, request) -> IngestResult:
        res = IngestResult()
        now_ns = int(self.clock.now() * 1e9)
        lo = now_ns - int(self.limits.max_age_s * 1e9)
        hi = now_ns + int(self.limits.max_future_s * 1e9)
        out = _Rows()
        for rm in request.resource_metrics:
            rattrs = {kv.key: any_value(kv.value) for kv in rm.resource.attributes}
            src = Source.of(rattrs)
            base = {"source": src.name}
            if src.environment:
                base["environment"] = src.environment
            before = res.accepted
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    self._metric(metric, base, lo, hi, out, res)
            if self._m_points is not None and res.accepted > before:
                self._m_points.labels(source=src.name).inc(res.accepted - before)
        out.write(self.sink)
        return res

    # ---- one metric
    def _metric(self, metric, base, lo, hi, out: _Rows, res: IngestResult) -> None:
        kind = metric.WhichOneof("data")
        if kind == "gauge":
            points, mtype, temporality = metric.gauge.data_points, "gauge", _CUMULATIVE
        elif kind == "sum":
            s = metric.sum
            points, temporality = s.data_points, s.aggregation_temporality
            mtype = "counter" if s.is_monotonic else "gauge"
        elif kind == "histogram":
            points, mtype, temporality = metric.histogram.data_points, "histogram", metric.histogram.aggregation_temporality
        else:
            n = len(getattr(metric, kind).data_points) if kind else 1
            res.refuse("unsupported_type", max(n, 1))
            return
        if not metric.name:
            res.refuse("missing_name", len(points))
            return
        spec = self.catalog.get(metric.name)
        if spec is not None:
            if spec.type != mtype:
                res.refuse("type_mismatch", len(points))
                return
            name, metric_id = spec.name, spec.id
        else:
            name = prometheus_name(metric.name)
            if mtype == "counter" and not name.endswith("_total"):
                name += "_total"
            metric_id = external_id(name)
        if temporality not in (_DELTA, _CUMULATIVE):
            res.refuse("unspecified_temporality", len(points))
            return
        delta = temporality == _DELTA
        for p in points:
            if p.flags & _NO_RECORDED_VALUE:
                continue  # the spec's explicit "no value here": nothing to store, nothing wrong
            ts = p.time_unix_nano
            if not ts:
                res.refuse("bad_timestamp")
                continue
            if ts < lo or ts > hi:
                res.refuse("timestamp_out_of_range")
                continue
            labels = dict(base)
            bad = False
            for kv in p.attributes:
                key = prometheus_name(kv.key)
                if key in FORBIDDEN_LABELS or key == "le":
                    bad = True
                    break
                text = as_text(any_value(kv.value))
                if len(text) > self.limits.max_attribute_chars:
                    bad = True
                    break
                labels[key] = text
            if bad:
                res.refuse("bad_label")
                continue
            ts_ms = ts // 1_000_000
            if mtype == "histogram":
                ok = self._histogram(p, name, metric_id, labels, ts_ms, delta, out)
            else:
                v = p.as_double if p.WhichOneof("value") == "as_double" else float(p.as_int)
                ok = math.isfinite(v)
                if ok:
                    ((_, fp),) = self._plan(name, metric_id, mtype, labels, (), ts_ms, out)
                    if delta:
                        v = self._accumulate(fp, v)
                    out.sample(ts_ms, fp, metric_id, v)
            if ok:
                res.accepted += 1
            else:
                res.refuse("non_finite")

    def _plan(self, name, metric_id, mtype, labels, bounds, ts_ms, out: _Rows) -> list[tuple[str, int]]:
        """The samples one point becomes, with their fingerprints; new series are written to metric_series."""
        key = (name, tuple(labels.items()), bounds)
        plan = self._plans.get(key)
        if plan is not None:
            return plan
        if mtype == "histogram":
            samples = [(f"{name}_bucket", {**labels, "le": floatToGoString(b)}) for b in (*bounds, math.inf)]
            samples += [(f"{name}_sum", labels), (f"{name}_count", labels)]
        else:
            samples = [(name, labels)]
        plan = []
        for sample_name, lab in samples:
            fp = series_fingerprint(sample_name, lab)
            self._series(fp, metric_id, name, sample_name, mtype, lab, ts_ms, out)
            plan.append((sample_name, fp))
        if len(self._plans) >= self.max_plans:
            self._plans.clear()
        self._plans[key] = plan
        return plan

    def _histogram(self, p, name, metric_id, labels, ts_ms, delta, out: _Rows) -> bool:
        bounds = tuple(p.explicit_bounds)
        counts = list(p.bucket_counts)
        if counts and len(counts) != len(bounds) + 1:
            return False
        has_sum = p.HasField("sum")
        if any(not math.isfinite(b) for b in bounds) or (has_sum and not math.isfinite(p.sum)):
            return False
        values = list(itertools.accumulate(float(c) for c in counts)) if counts else [0.0] * (len(bounds) + 1)
        values.append(p.sum if has_sum else 0.0)
        values.append(float(p.count))
        plan = self._plan(name, metric_id, "histogram", labels, bounds, ts_ms, out)
        for (_, fp), v in zip(plan, values, strict=True):
            if delta:
                v = self._accumulate(fp, v)
            out.sample(ts_ms, fp, metric_id, v)
        return True

    def _accumulate(self, fp: int, v: float) -> float:
        total = self._totals.get(fp, 0.0) + v
        self._totals[fp] = total
        self._totals.move_to_end(fp)
        if len(self._totals) > self.max_delta_series:
            self._totals.popitem(last=False)
        return total

    def _series(self, fp, metric_id, name, sample_name, mtype, labels, ts_ms, out: _Rows) -> None:
        if fp in self._known:
            return
        self._known[fp] = None
        if len(self._known) > self.max_known_series:
            self._known.popitem(last=False)  # written again if it comes back: the table keeps one row per series
        keys = sorted(labels)
        out.series(fp, metric_id, name, sample_name, mtype, keys, [labels[k] for k in keys], ts_ms)


class _Rows:
    """Columns of one request's rows, handed to the sink in one batch per table."""

    def __init__(self) -> None:
        self.ts, self.fp, self.ids, self.values = [], [], [], []
        self.s = {k: [] for k in ("fingerprint", "metric_id", "metric", "sample_name", "metric_type",
                                  "label_keys", "label_values", "first_seen_ms")}

    def sample(self, ts_ms, fp, metric_id, v) -> None:
        self.ts.append(ts_ms)
        self.fp.append(fp)
        self.ids.append(metric_id)
        self.values.append(v)

    def series(self, fp, metric_id, name, sample_name, mtype, keys, values, ts_ms) -> None:
        s = self.s
        s["fingerprint"].append(fp)
        s["metric_id"].append(metric_id)
        s["metric"].append(name)
        s["sample_name"].append(sample_name)
        s["metric_type"].append(mtype)
        s["label_keys"].append(keys)
        s["label_values"].append(values)
        s["first_seen_ms"].append(ts_ms)

    def write(self, sink) -> None:
        if sink is None:
            return
        if self.s["fingerprint"]:
            s = dict(self.s)
            s["fingerprint"] = np.array(s["fingerprint"], dtype=np.uint64)
            s["metric_id"] = np.array(s["metric_id"], dtype=np.uint32)
            s["first_seen_ms"] = np.array(s["first_seen_ms"], dtype=np.int64)
            sink.write_columns("metric_series", s)
        if self.ts:
            sink.write_columns("metric_samples", {
                "ts_ms": np.array(self.ts, dtype=np.int64),
                "fingerprint": np.array(self.fp, dtype=np.uint64),
                "metric_id": np.array(self.ids, dtype=np.uint32),
                "value": np.array(self.values, dtype=np.float64),
            })
