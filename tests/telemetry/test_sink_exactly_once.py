"""Exactly-once through a crash: the writing process is SIGKILLed after the store accepted a spooled
batch and before its spool file was deleted; a fresh process replays the spool. With insert tokens
(the batch's id) every call is stored once; the control run without tokens shows the crash really
landed between the insert and the deletion (that batch arrives twice)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CALLS = 1000


def _child(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tests.telemetry.sink_crash_child", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("dedup", [True, False], ids=["with-tokens", "control-without-tokens"])
def test_a_batch_replayed_after_sigkill_is_stored_once(tmp_path, dedup):
    folder = str(tmp_path / "store")
    extra = [] if dedup else ["--no-dedup"]
    crash = _child("crash", folder, str(CALLS), *extra)
    assert crash.returncode == -signal.SIGKILL, crash.stdout + crash.stderr
    spool = Path(f"{folder}.spool") / "voxwatch"
    assert len(list(spool.glob("*.arrow"))) == CALLS // 100  # the stored batch's file is still there
    recover = _child("recover", folder, str(CALLS), *extra)
    assert recover.returncode == 0, recover.stderr
    got = json.loads(recover.stdout.strip().splitlines()[-1])
    assert got["spooled_left"] == 0 and got["ids"] == CALLS
    if dedup:
        assert got["rows"] == CALLS and got["checksum"] == got["want_checksum"]
    else:
        assert got["rows"] == CALLS + 100  # the first batch, stored before the kill, came again
