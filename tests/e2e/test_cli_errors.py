"""Bad store URLs and busy ports end in one line and a non-zero exit, never a traceback, and the
store password never appears in what Voxwatch prints (issue 19)."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from telemetry.store import InvalidStoreURL, open_store, redact_url


def _voxwatch(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "voxwatch.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("argv", [
    ["store", "--store", "chdb:///proc/voxwatch-nope", "info"],
    ["store", "--store", "chdb:///etc/passwd", "info"],
    ["simulate", "--store", "chdb:///proc/voxwatch-nope", "--calls", "10", "--duration", "1"],
    ["demo", "--store", "chdb:///proc/voxwatch-nope", "--calls", "10", "--no-dashboard"],
])
def test_an_unusable_embedded_store_is_one_line(argv):
    r = _voxwatch(*argv)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr, r.stderr
    assert "cannot open embedded store" in r.stderr


def test_the_store_password_is_never_printed():
    r = _voxwatch("store", "--store", "clickhouse://analyst:S3CRET-pw@127.0.0.1:1/db?connect_timeout=1", "info")
    assert r.returncode != 0
    assert "S3CRET" not in r.stdout + r.stderr
    with pytest.raises(InvalidStoreURL) as exc:
        open_store("clickhouse://analyst:S3CRET-pw@127.0.0.1:1/db?bogus=1")
    assert "S3CRET" not in str(exc.value) and "***" in str(exc.value)
    assert redact_url("clickhouse://u:p%40ss@h:9000/db") == "clickhouse://u:***@h:9000/db"
    assert redact_url("chdb:///var/voxwatch") == "chdb:///var/voxwatch"


def test_serve_on_a_busy_port_says_so_and_prints_no_tokens(tmp_path):
    store_url = f"chdb://{tmp_path}/store"  # its own folder: this test process may own the shared one
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = _voxwatch("serve", "--store", store_url, "--port", str(port))
    assert r.returncode != 0
    assert f"cannot serve on 127.0.0.1:{port}" in r.stderr
    assert "Traceback" not in r.stderr
    assert "generated for this run" not in r.stdout
