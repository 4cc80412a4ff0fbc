"""`voxwatch bench instrumentation` runs end to end and reports its figures (no timing is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_instrumentation_bench_prints_per_turn_cost_and_overhead_ratio():
    # a subprocess: the bench opens its own chdb folder, and chdb allows one folder per process
    out = subprocess.run(
        [sys.executable, "-m", "voxwatch.cli", "bench", "instrumentation", "--json",
         "--turns", "400", "--rounds", "1", "--turns-per-call", "4", "--sample-ratio", "0.5", "--no-stt"],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=300,
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert result["bench"] == "instrumentation"
    for key in ("per_turn_us", "overhead_ratio", "per_turn_us_all_spans", "simulated_turn_cpu_us",
                "snapshot_ms_per_tick"):
        assert key in result
    assert result["turn_with_telemetry_cpu_us"] > result["turn_without_telemetry_cpu_us"] > 0
    # what the measured turns recorded really reached the store: every call record, and spans
    assert result["calls_stored"] == result["calls_recorded"] > 0
    assert result["spans_stored"] > 0
