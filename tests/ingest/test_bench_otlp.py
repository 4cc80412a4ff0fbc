"""`voxwatch bench otlp` as a person runs it (a real subprocess, small sizes): every span and point it
sends is stored, both raw baselines are measured, and with mapping workers both receivers are compared
and stopped cleanly (two servers share one context there)."""

from __future__ import annotations

import json
import subprocess
import sys


def test_bench_otlp_reports_both_paths_and_their_ratios_and_exits_cleanly():
    out = subprocess.run([sys.executable, "-m", "voxwatch.cli", "bench", "otlp", "--spans", "6000", "--points", "4000",
                          "--batch", "1000", "--repeat", "1", "--overload-seconds", "0", "--map-workers", "2", "--json"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["spans"] == 6000 and r["points"] == 4000 and r["metric_samples_rows"] >= 4000
    assert r["spans_per_s"] > 0 and r["raw_spans_per_s"] > 0 and r["raw_spans_from_python_columns_per_s"] > 0
    assert abs(r["spans_ratio"] - r["spans_per_s"] / r["raw_spans_per_s"]) < 0.002
    side = r["traces_by_map_workers"]
    assert side["map_workers"] == [0, 2] and all(v > 0 for v in side["spans_per_s"])
    assert side["workers_cpu_us_per_span"][1] > 0  # the mapping really ran in the workers
    assert set(r["met"]) == {"spans_per_s", "spans_ratio"}
