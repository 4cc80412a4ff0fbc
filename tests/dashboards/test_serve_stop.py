"""`voxwatch serve` stops gracefully on SIGTERM: rows the service accepted just before (a degradation
change, buffered in the sink) are in the store afterwards, and the process exits by itself, cleanly,
with the store closed (another process can open it)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import httpx

VOXWATCH = [sys.executable, "-c", "import sys; from voxwatch.cli import main; sys.exit(main())"]


def test_sigterm_flushes_what_was_accepted_and_closes_the_store(tmp_path):
    from voxwatch.commands.serve import free_port

    port = free_port()
    store = f"chdb://{tmp_path / 'store'}"
    proc = subprocess.Popen([*VOXWATCH, "serve", "--store", store, "--port", str(port)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = [proc.stdout.readline() for _ in range(4)]
        admin = re.search(r"local-admin \(admin\): (\S+)", "".join(lines)).group(1)
        r = httpx.post(f"http://127.0.0.1:{port}/api/v1/degradation", headers={"Authorization": f"Bearer {admin}"},
                       json={"level": "CACHED_RESPONSES", "reason": "just before the stop"}, timeout=30)
        assert r.status_code == 200 and r.json()["action"]["phase"] == "applied"
    finally:
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=60)  # bounded: it must stop by itself
    assert proc.returncode == 0 and "voxwatch: stopped" in rest, rest
    probe = subprocess.run(
        [sys.executable, "-c", "from telemetry.store import open_store; "
         f"s = open_store('{store}'); print(s.scalar(\"SELECT count() FROM degradation_actions "
         "WHERE reason LIKE 'just before the stop%' AND phase = 'applied'\")); s.close()"],
        capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip().splitlines()[-1] == "1"
