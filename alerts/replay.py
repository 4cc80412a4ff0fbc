"""Replay stored history through the rules: read the samples the rules need (metric_samples +
metric_series) and the recorded findings (anomaly_findings) for a time range, feed them to an
engine on a virtual clock second by second, and return when each rule would have fired.

No notification leaves: the engine runs without its dispatcher. The SQL runs on chdb and on the
18.16 server (no joins, no window functions; `has()` instead of IN over a parameter array).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from alerts.engine import AlertEngine
from anomaly.finding import Finding
from telemetry.store.series_reads import findings_between, samples_of_series, series_by_sample_names

CHUNK_S = 600.0  # samples are read ten minutes at a time, so memory stays bounded


def _warmup(ruleset) -> float:
    """History needed before the first evaluation: the longest short-term window (SLO windows
    longer than this simply use what the range holds)."""
    w = [getattr(r, "window", 0.0) for r in ruleset.rules() if r.type != "slo"]
    return min(max(w, default=60.0), 3600.0)


def replay_store(ruleset, store, start: float, end: float, *, step: float = 1.0) -> AlertEngine:
    """Evaluate `ruleset` over stored data from `start` to `end` (epoch seconds)."""
    from telemetry.clock import VirtualClock

    if end <= start:
        raise ValueError("the replay range must end after it starts")
    warm = _warmup(ruleset)
    clock = VirtualClock(start - warm)
    engine = AlertEngine(ruleset, clock, notify=False)
    names = engine.wanted_sample_names()
    series = series_by_sample_names(store, names)
    meta = {int(fp): (name, dict(zip(keys, values))) for fp, name, keys, values in
            zip(series["fingerprint"], series["s_name"], series["s_keys"], series["s_values"])}
    fps = sorted(meta)
    findings = findings_between(store, int((start - warm) * 1000), int(end * 1000))
    pending_findings = [Finding.of(r._asdict()) for r in findings.itertuples(index=False)]
    fi = 0
    t = start - warm
    chunk_start = t
    while chunk_start < end:
        chunk_end = min(end, chunk_start + CHUNK_S)
        by_ts: dict[int, list] = defaultdict(list)
        if fps:
            df = samples_of_series(store, fps, int(chunk_start * 1000), int(chunk_end * 1000))
            ts = df["ts_ms"].to_numpy(dtype=np.int64)
            for i, (fp, v) in enumerate(zip(df["fingerprint"], df["value"])):
                name, labels = meta[int(fp)]
                by_ts[int(ts[i])].append((name, labels, float(v)))
        stamps = sorted(by_ts)
        si = 0
        while t < chunk_end - 1e-9:
            t = min(chunk_end, t + step)
            while si < len(stamps) and stamps[si] <= t * 1000 + 1e-6:
                engine.view.ingest(stamps[si] / 1000.0, by_ts[stamps[si]])
                si += 1
            while fi < len(pending_findings) and pending_findings[fi].ts <= t:
                engine.on_finding(pending_findings[fi])
                fi += 1
            clock.advance_to(t)
            if t >= start:
                engine.evaluate()
        chunk_start = chunk_end
    return engine
