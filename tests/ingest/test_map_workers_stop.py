"""The mapping workers' life (`ingest.map_workers`): `voxwatch serve` stops them on SIGTERM (what it
accepted is stored, no worker nor the fork server they start from outlives it), and a worker that stops
answering is replaced after the pool's timeout."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import httpx

from tests.ingest.test_bad_input import span, traces_request

VOXWATCH = [sys.executable, "-c", "import sys; from voxwatch.cli import main; sys.exit(main())"]


def _descendants(pid: int) -> set[int]:
    """Every live process below `pid`, from /proc (the pool's workers are children of the fork server)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                children.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.add(c)
            todo.append(c)
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_sigterm_stops_the_mapping_workers_after_storing_what_was_accepted(tmp_path):
    from voxwatch.commands.serve import free_port

    port = free_port()
    store = f"chdb://{tmp_path / 'store'}"
    proc = subprocess.Popen([*VOXWATCH, "serve", "--store", store, "--port", str(port)], cwd=tmp_path,
                            env=dict(os.environ, VOXWATCH_INGEST_MAP_WORKERS="2"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = [proc.stdout.readline() for _ in range(4)]
        admin = re.search(r"local-admin \(admin\): (\S+)", "".join(lines)).group(1)
        r = httpx.post(f"http://127.0.0.1:{port}/v1/traces", content=traces_request(span("stt")).SerializeToString(),
                       headers={"Authorization": f"Bearer {admin}", "Content-Type": "application/x-protobuf"}, timeout=30)
        assert r.status_code == 200
        below = _descendants(proc.pid)
        assert len(below) >= 3  # the fork server and the two workers
    finally:
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "voxwatch: stopped" in rest, rest
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in below) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in below if _alive(p)]
    probe = subprocess.run(
        [sys.executable, "-c", "from telemetry.store import open_store; "
         f"s = open_store('{store}'); print(s.scalar(\"SELECT count() FROM spans WHERE name = 'stt'\")); s.close()"],
        capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip().splitlines()[-1] == "1"


def test_a_stuck_mapping_worker_is_replaced_after_the_timeout():
    """A worker that stops answering (SIGSTOP: alive, not dying) costs its request a WorkerLost (the
    receiver's 503 + Retry-After) after the pool's timeout, not a hang, and the next request is mapped."""
    import asyncio

    from telemetry.ingest.workers import MapPool, WorkerLost

    pool = MapPool(1, timeout_s=2.0)
    body = traces_request(span("stt")).SerializeToString()
    try:
        pool.wait_ready(60)
        assert asyncio.run(pool.map(body, "application/x-protobuf", time.time_ns())).result.accepted == 1
        (stuck,) = pool.pids()
        os.kill(stuck, signal.SIGSTOP)
        try:
            asyncio.run(pool.map(body, "application/x-protobuf", time.time_ns()))
        except WorkerLost as exc:
            assert "took over 2 s" in str(exc)
        else:
            raise AssertionError("a stuck worker answered")
        assert asyncio.run(pool.map(body, "application/x-protobuf", time.time_ns())).result.accepted == 1
        assert pool.restarts == 1 and stuck not in pool.pids()
    finally:
        pool.shutdown()
