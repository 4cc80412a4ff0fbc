"""`voxwatch demo`, the product's front door, end to end in a subprocess: the replay pages a real
HTTP receiver (signature verified), applies a degradation action, and leaves its rows in the store."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_demo_replays_october_3_pages_acts_and_stores(tmp_path):
    store = f"chdb://{tmp_path}/store?database=demo_test"
    started = time.time()
    out = subprocess.run(
        [sys.executable, "-m", "voxwatch", "demo", "--speed", "max", "--calls", "300", "--duration", "1800",
         "--no-dashboard", "--exit-after-replay", "--port", "0", "--json", "--store", store],
        cwd=tmp_path, capture_output=True, text=True, timeout=900,
    )
    ended = time.time()
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["simulated_s"] >= 1800
    firing = [p for p in result["pages"] if p["status"] == "firing" and p["receiver"] == "pager"]
    assert firing, result["pages"]
    assert any("Pool" in name for p in firing for name in p["alerts"])
    assert result["refused_deliveries"] == 0  # every delivery carried a valid signature
    applied = [a for a in result["actions"] if a["phase"] == "applied"]
    assert any(a["level"] == "INTEGRATIONS_QUEUED" for a in applied)
    assert result["rows"]["calls"] > 100 and result["rows"]["metric_samples"] > 100_000
    assert result["rows"]["alert_events"] > 0 and result["rows"]["notifications"] > 0

    # the replay ends when it starts on the wall clock: nothing stamped in the future for a later reader
    last = subprocess.run([sys.executable, "-m", "voxwatch", "store", "sql", "--store", store, "--json",
                           "SELECT max(started_ms) AS last_ms, min(started_ms) AS first_ms FROM calls"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert last.returncode == 0, last.stderr[-3000:]
    row = json.loads(last.stdout)[0]
    # (calls in progress when the replay begins started before it: the first start is earlier still).
    # The replay's clock starts at the demo's own start minus the scenario, a few seconds of imports after
    # `started`; a replay stamped forward from its start would end 1,800 s after it, long after `ended`.
    assert int(row["first_ms"]) / 1000 < started - 1800 + 60 < int(row["last_ms"]) / 1000 <= ended
