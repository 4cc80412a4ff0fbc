"""Debian's Prometheus (2.42) scrapes the service's /metrics: the target is up, the config reload
gauges arrive, and `promtool check metrics` has nothing to say about the exposition."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import httpx
import pytest

from tests.alertmanager_server import free_port

CONFIG = """global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: voxwatch
    static_configs:
      - targets: ["{target}"]
"""


@pytest.mark.slow
def test_prometheus_scrapes_the_service_and_promtool_finds_nothing(tmp_path, store):
    if not shutil.which("prometheus") or not shutil.which("promtool"):
        pytest.skip("Debian's prometheus is not installed")
    from voxwatch.commands.serve import build_context, start_api
    from voxwatch.config import Settings
    from voxwatch.reload import Reloader

    ctx = build_context(Settings(), store=store)
    Reloader(ctx, None).loaded(True)
    api = start_api(ctx)
    port = free_port()
    (tmp_path / "prometheus.yml").write_text(CONFIG.format(target=api.url.removeprefix("http://")))
    proc = subprocess.Popen(["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}",
                             "--log.level=warn"], stdout=open(tmp_path / "prometheus.log", "wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        up = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/api/v1/query",
                              params={"query": "voxwatch_config_last_reload_successful"}, timeout=2).json()
                if r["data"]["result"]:
                    targets = httpx.get(f"http://127.0.0.1:{port}/api/v1/targets", timeout=2).json()
                    up = [t["health"] for t in targets["data"]["activeTargets"]]
                    break
            except (httpx.HTTPError, KeyError, ValueError):
                pass
            time.sleep(0.5)
        assert up == ["up"], (tmp_path / "prometheus.log").read_text()[-2000:]
        assert r["data"]["result"][0]["value"][1] == "1"
        body = httpx.get(f"{api.url}/metrics", timeout=5).text
        check = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, text=True, timeout=60)
        assert (check.returncode, check.stdout, check.stderr) == (0, "", "")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
        api.stop()
        ctx.sink.close()
