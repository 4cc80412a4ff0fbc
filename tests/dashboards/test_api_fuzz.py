"""The whole HTTP API under schemathesis (generated from its own OpenAPI document), with a read and
an admin token: no input may produce a server error, and every status code must be documented.

Bounded: a fixed number of examples per operation, deterministic generation, so it takes a minute
or two. It runs against a real uvicorn over its own database (the admin token changes state).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.dashboards.conftest import ADMIN_TOKEN, READ_TOKEN, settings

pytestmark = pytest.mark.slow

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


@pytest.fixture(scope="module")
def fuzz_api(chdb_root, tmp_path_factory):
    from voxwatch.commands.serve import build_context, start_api, start_monitoring
    from voxwatch.reload import Reloader

    s = settings().model_copy(update={"store": f"chdb://{chdb_root}?database=fuzz_{os.getpid()}",
                                      "spool_dir": str(tmp_path_factory.mktemp("fuzz-spool"))})
    ctx = build_context(s)
    ctx.sink.write("calls", [{"call_id": "fuzz-call-1", "started_ms": 1_700_000_000_000, "outcome": "completed"}])
    ctx.sink.flush()
    reloader = Reloader(ctx, None)
    ctx.extras["reloader"] = reloader
    running = start_api(ctx)
    # the alert engine and the reload path, as `serve` runs them
    stop_monitoring = start_monitoring(ctx, external_url=running.url, reloader=reloader)
    reloader.loaded(True)
    yield running.url
    stop_monitoring()
    running.stop()
    ctx.sink.close()
    ctx.store.drop_database()
    ctx.store.close()


@pytest.mark.skipif(not SCHEMATHESIS.exists(), reason="schemathesis is a test dependency (pip install -e '.[dev]')")
@pytest.mark.parametrize("token", [READ_TOKEN, ADMIN_TOKEN], ids=["read", "admin"])
def test_no_generated_request_causes_a_server_error(fuzz_api, token, tmp_path):
    report = tmp_path / "schemathesis.txt"
    cmd = [
        str(SCHEMATHESIS), "run", f"{fuzz_api}/openapi.json",
        "--checks", "not_a_server_error,status_code_conformance",
        "--max-examples", "12", "--generation-deterministic", "--workers", "1",
        "--request-timeout", "20", "--phases", "examples,coverage,fuzzing",
        "-H", f"Authorization: Bearer {token}",
        # WebRTC signalling starts media peers for each accepted offer: fuzzed by its own tests
        "--exclude-path", "/v1/calls",
    ]
    env = dict(os.environ, NO_COLOR="1", SCHEMATHESIS_HOOKS="")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    report.write_text(proc.stdout + proc.stderr)
    out = Path(__file__).resolve().parents[2] / "test-output"
    out.mkdir(exist_ok=True)
    shutil.copy(report, out / f"schemathesis-{token[:4]}.txt")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
