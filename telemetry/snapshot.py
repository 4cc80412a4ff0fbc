"""The snapshotter: reads a Telemetry's registry at a fixed interval and writes every sample as a row.

Each tick becomes rows of `metric_samples` (ts_ms, fingerprint, metric_id, value): counters, gauges,
and each histogram's cumulative buckets, sum and count, the same samples `/metrics` shows. A series
is identified by its fingerprint, a stable 64-bit hash of the sample name and its sorted labels; its
label set goes into `metric_series` once, when the series first appears.

It is cheap by construction (thousands of series per tick): the per-series plan (fingerprint, id,
value reader) is built once, a tick only reads current values into numpy columns and hands one
columnar batch to the sink. `snapshot_once(now_ms)` serves virtual-clock simulations; `run(clock)`
is the live loop (default every 1 s of the injected clock).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from prometheus_client.utils import floatToGoString

from telemetry.clock import Clock

__all__ = ["Snapshotter", "series_fingerprint"]


def series_fingerprint(sample_name: str, labels: Mapping[str, str]) -> int:
    """Stable 64-bit id of a series: blake2b over the sample name and its labels sorted by name.

    The same in every process and run, so series from several workers and restarts line up.
    """
    h = hashlib.blake2b(sample_name.encode(), digest_size=8)
    for key in sorted(labels):
        h.update(b"\x00" + key.encode() + b"\x01" + str(labels[key]).encode())
    return int.from_bytes(h.digest(), "little")


class Snapshotter:
    """Copies a Telemetry's samples into ClickHouse through the sink, one batch per tick."""

    def __init__(self, telemetry, sink: Any = None, clock: Clock | None = None, interval_s: float = 1.0) -> None:
        if interval_s <= 0:
            raise ValueError(f"snapshot interval must be positive, got {interval_s}")
        self.telemetry = telemetry
        self.sink = sink if sink is not None else telemetry.sink
        self.clock = clock if clock is not None else telemetry.clock
        self.interval_s = float(interval_s)
        # The plan, appended to as series appear. `_raw_values` hold the raw values (prometheus' value of a
        # counter or gauge; a histogram's per-bucket counts and its sum). Output samples are copies of a
        # raw value (`_direct`) or, for histograms, cumulative buckets and the count derived from the
        # bucket segments. The index arrays are rebuilt only when series are added.
        self._fps: list[int] = []
        self._ids: list[int] = []
        self._raw_values: list = []
        self._hist_segments: list[tuple[int, int, int]] = []  # (raw start, n buckets, output start)
        self._direct: list[tuple[int, int]] = []  # (output index, raw index)
        self._index_stale = True
        self._planned: dict[str, set] = {}  # metric name -> label keys already planned
        self._stopped = False
        self.ticks = 0
        self.samples_written = 0
        tel = telemetry
        self._m_seconds = tel["voxwatch_snapshot_seconds"] if "voxwatch_snapshot_seconds" in tel else None
        self._m_samples = tel["voxwatch_snapshot_samples_total"] if "voxwatch_snapshot_samples_total" in tel else None
        self._m_series = tel["voxwatch_snapshot_series"] if "voxwatch_snapshot_series" in tel else None
        self._m_delay = tel["voxwatch_snapshot_delay_seconds"] if "voxwatch_snapshot_delay_seconds" in tel else None
        self._m_cardinality = tel["voxwatch_instrument_series"] if "voxwatch_instrument_series" in tel else None
        # the capacity the cardinality gauge saturates against, so a label leak is forecast like any resource
        self._m_series_limit = tel["voxwatch_instrument_series_limit"] if "voxwatch_instrument_series_limit" in tel else None

    @property
    def series(self) -> int:
        """Series (sample streams) a tick writes."""
        return len(self._fps)

    # ---- planning: once per new series
    def _plan_new_series(self, now_ms: int) -> None:
        rows: dict[str, list] = {k: [] for k in ("fingerprint", "metric_id", "metric", "sample_name",
                                                "metric_type", "label_keys", "label_values")}

        def series_row(fp: int, spec, sample: str, keys: list, values: list) -> None:
            rows["fingerprint"].append(fp)
            rows["metric_id"].append(spec.id)
            rows["metric"].append(spec.name)
            rows["sample_name"].append(sample)
            rows["metric_type"].append(spec.type)
            rows["label_keys"].append(keys)
            rows["label_values"].append(values)

        grew = False
        for inst in self.telemetry:
            planned = self._planned.setdefault(inst.name, set())
            if inst.series_count == len(planned):
                continue
            spec = inst.spec
            for key, child in inst.children().items():
                if key in planned:
                    continue
                planned.add(key)
                keys = list(spec.labels)
                values = list(key)
                labels = dict(zip(keys, values, strict=False))
                if spec.type == "histogram":
                    prom = child._h
                    out0 = len(self._fps)
                    raw0 = len(self._raw_values)
                    for bound in prom._upper_bounds:
                        le = floatToGoString(bound)
                        fp = series_fingerprint(f"{spec.name}_bucket", {**labels, "le": le})
                        series_row(fp, spec, f"{spec.name}_bucket", keys + ["le"], values + [le])
                        self._fps.append(fp)
                    self._raw_values.extend(prom._buckets)
                    nb = len(prom._buckets)
                    self._hist_segments.append((raw0, nb, out0))
                    fp = series_fingerprint(spec.name + "_sum", labels)
                    series_row(fp, spec, spec.name + "_sum", keys, values)
                    self._fps.append(fp)
                    self._direct.append((out0 + nb, len(self._raw_values)))
                    self._raw_values.append(prom._sum)
                    fp = series_fingerprint(spec.name + "_count", labels)
                    series_row(fp, spec, spec.name + "_count", keys, values)
                    self._fps.append(fp)  # filled from the last cumulative bucket
                    self._ids.extend([spec.id] * (nb + 2))
                else:
                    prom = child._c if spec.type == "counter" else child._g
                    fp = series_fingerprint(spec.name, labels)
                    series_row(fp, spec, spec.name, keys, values)
                    self._direct.append((len(self._fps), len(self._raw_values)))
                    self._fps.append(fp)
                    self._ids.append(spec.id)
                    self._raw_values.append(prom._value)
                grew = True
            if self._m_cardinality is not None and spec.labels:
                self._m_cardinality.labels(metric=spec.name).set(inst.series_count)
                if self._m_series_limit is not None:
                    self._m_series_limit.labels(metric=spec.name).set(inst.series_limit)
        if grew:
            self._index_stale = True
        if rows["fingerprint"] and self.sink is not None:
            n = len(rows["fingerprint"])
            rows["fingerprint"] = np.array(rows["fingerprint"], dtype=np.uint64)
            rows["metric_id"] = np.array(rows["metric_id"], dtype=np.uint32)
            rows["first_seen_ms"] = np.full(n, now_ms, dtype=np.int64)
            self.sink.write_columns("metric_series", rows)

    # ---- one tick
    def _build_index(self) -> None:
        self._fps_arr = np.array(self._fps, dtype=np.uint64)
        self._ids_arr = np.array(self._ids, dtype=np.uint32)
        direct = np.array(self._direct, dtype=np.int64).reshape(-1, 2)
        self._out_direct, self._raw_direct = direct[:, 0], direct[:, 1]
        seg = np.array(self._hist_segments, dtype=np.int64).reshape(-1, 3)
        raw0, nb, out0 = seg[:, 0], seg[:, 1], seg[:, 2]
        self._seg_len = nb
        self._raw_buckets = np.concatenate([np.arange(r, r + n) for r, n in zip(raw0, nb, strict=True)]) \
            if len(seg) else np.empty(0, dtype=np.int64)
        self._out_buckets = np.concatenate([np.arange(o, o + n) for o, n in zip(out0, nb, strict=True)]) \
            if len(seg) else np.empty(0, dtype=np.int64)
        ends = np.cumsum(nb) - 1  # position of each histogram's last bucket in the flat bucket array
        self._seg_end = ends
        self._seg_first = ends - nb + 1
        self._out_count = out0 + nb + 1
        self._index_stale = False

    def read(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Current (fingerprints, metric ids, values) of every series, without writing anything."""
        if self._index_stale:
            self._build_index()
        # prometheus' values are floats behind a lock; reading one attribute is atomic under the GIL and a
        # snapshot is not transactional anyway (collect() locks bucket by bucket too), so skip the lock
        raw = np.array([v._value for v in self._raw_values], dtype=np.float64)
        out = np.empty(len(self._fps), dtype=np.float64)
        out[self._out_direct] = raw[self._raw_direct]
        if len(self._seg_len):
            # cumulative buckets per histogram: one cumsum over all, minus what precedes each histogram
            flat = np.cumsum(raw[self._raw_buckets])
            before = np.where(self._seg_first > 0, flat[self._seg_first - 1], 0.0)
            cum = flat - np.repeat(before, self._seg_len)
            out[self._out_buckets] = cum
            out[self._out_count] = cum[self._seg_end]
        return self._fps_arr, self._ids_arr, out

    def snapshot_once(self, now_ms: int | None = None) -> int:
        """Write one sample of every series at `now_ms` (default: the clock's now); returns rows written."""
        t0 = time.perf_counter()
        if now_ms is None:
            now_ms = self.clock.now_ms()
        self.telemetry.flush()  # spans and call records go out with the tick
        self._plan_new_series(now_ms)
        fps, ids, values = self.read()
        n = len(fps)
        if n and self.sink is not None:
            self.sink.write_columns("metric_samples", {
                "ts_ms": np.full(n, now_ms, dtype=np.int64),
                "fingerprint": fps,
                "metric_id": ids,
                "value": values,
            })
        self.ticks += 1
        self.samples_written += n
        # about itself, seen from the next tick on
        if self._m_samples is not None:
            self._m_samples.inc(n)
            self._m_series.set(n)
            self._m_seconds.observe(time.perf_counter() - t0)
        return n

    # ---- the live loop
    def stop(self) -> None:
        self._stopped = True

    async def run(self, clock: Clock | None = None) -> None:
        """Snapshot on every interval boundary of `clock` until `stop()` (or cancellation)."""
        clock = clock if clock is not None else self.clock
        self._stopped = False
        step = self.interval_s
        due = (math.floor(clock.now() / step) + 1) * step
        while not self._stopped:
            await clock.sleep(max(0.0, due - clock.now()))
            if self._stopped:
                break
            now = clock.now()
            if self._m_delay is not None:
                self._m_delay.observe(max(0.0, now - due))
            # stamped with the scheduled tick so series from every process line up on the same instants
            self.snapshot_once(int(round(due * 1000)))
            due += step
            if due <= now:  # fell behind: skip the missed ticks rather than bursting
                due = (math.floor(now / step) + 1) * step
