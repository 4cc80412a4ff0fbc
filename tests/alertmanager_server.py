"""Start Debian's prometheus-alertmanager (0.25) as a user process with its own config, port and
storage folder, clustering off. Used by the tests that judge the Alertmanager receiver by what the
real Alertmanager shows (`GET /api/v2/alerts`) and what it notifies its own webhook receivers.
Nothing here touches the system service or /var/lib/prometheus.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

BINARY_CANDIDATES = ("/usr/bin/prometheus-alertmanager", "/usr/bin/alertmanager")

CONFIG = """global:
  resolve_timeout: {resolve_timeout}
route:
  receiver: hook
  group_by: [alertname]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: {webhook_url}
        send_resolved: true
"""


def binary() -> str | None:
    for cand in BINARY_CANDIDATES:
        if os.path.exists(cand):
            return cand
    return shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AlertmanagerServer:
    """One Alertmanager. Its own notifications go to `webhook_url` (a test's local receiver)."""

    def __init__(self, root: Path, webhook_url: str, resolve_timeout: str = "5m") -> None:
        self.root = Path(root)
        self.port = free_port()
        self.webhook_url = webhook_url
        self.resolve_timeout = resolve_timeout
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> AlertmanagerServer:
        exe = binary()
        if exe is None:
            raise RuntimeError("prometheus-alertmanager is not installed (scripts/bootstrap.sh prometheus-alertmanager)")
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        cfg = self.root / "alertmanager.yml"
        cfg.write_text(CONFIG.format(webhook_url=self.webhook_url, resolve_timeout=self.resolve_timeout))
        self.proc = subprocess.Popen(
            [exe, f"--config.file={cfg}", f"--storage.path={self.root / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address=", "--log.level=warn"],
            stdout=open(self.root / "alertmanager.log", "ab"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"alertmanager exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"alertmanager did not answer on {self.url} in {timeout}s: {self.log_tail()}")

    def alerts(self, **filters) -> list[dict]:
        """What Alertmanager holds as not resolved (`GET /api/v2/alerts`)."""
        r = httpx.get(f"{self.url}/api/v2/alerts", params=filters, timeout=5.0)
        r.raise_for_status()
        return r.json()

    def log_tail(self) -> str:
        p = self.root / "alertmanager.log"
        return p.read_text(errors="replace")[-1500:] if p.exists() else ""

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
