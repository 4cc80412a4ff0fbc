"""Settings files (TOML/YAML, env override, errors naming file and field) and `voxwatch serve` as a
real process: it owns the store, answers with scoped tokens, refuses a bad config in one line, and
stops cleanly on Ctrl-C."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import httpx
import pytest

from voxwatch.config import ConfigError, Scope, load_settings

# the console script, as a person runs it (`python -m voxwatch.cli` would load the CLI module twice)
VOXWATCH = [sys.executable, "-c", "import sys; from voxwatch.cli import main; sys.exit(main())"]


def test_settings_load_from_toml_with_scoped_tokens(tmp_path):
    f = tmp_path / "voxwatch.toml"
    f.write_text('store = "chdb:///srv/voxwatch"\nport = 9000\n\n[[tokens]]\nname = "grafana"\n'
                 'token = "0123456789abcdef0123"\nscopes = ["read"]\n\n[limits]\nsql_max_rows = 50\n')
    s = load_settings(f, env={})
    assert s.store == "chdb:///srv/voxwatch" and s.port == 9000 and s.limits.sql_max_rows == 50
    assert s.token_for("0123456789abcdef0123").name == "grafana"
    assert s.token_for("0123456789abcdef0123").allows(Scope.READ)
    assert not s.token_for("0123456789abcdef0123").allows(Scope.ADMIN)


def test_env_overrides_the_file_and_the_flag_overrides_both(tmp_path):
    f = tmp_path / "v.yaml"
    f.write_text("store: chdb:///a\n")
    assert load_settings(f, env={"VOXWATCH_STORE": "chdb:///b"}).store == "chdb:///b"
    assert load_settings(f, store="clickhouse://default@h:9000/db", env={"VOXWATCH_STORE": "chdb:///b"}).store.startswith(
        "clickhouse://")


@pytest.mark.parametrize(("text", "fragment"), [
    ("port: 99999\n", "port"),
    ("store: mysql://x\n", "store: Value error, must start with chdb:// or clickhouse://"),
    ("tokens:\n  - {name: a, token: short}\n", "tokens.0.token"),
    ("tokens:\n  - {name: a, token: 0123456789abcdefg, scopes: [root]}\n", "tokens.0.scopes.0"),
    ("colour: blue\n", "colour: Extra inputs are not permitted"),
    ("port: [1\n", "not valid YAML"),
])
def test_a_bad_settings_file_names_the_file_and_the_field(tmp_path, text, fragment):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_settings(f, env={})
    assert str(err.value).startswith(str(f)) and fragment in str(err.value)


def test_serve_refuses_a_bad_config_with_one_line(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("port: -1\n")
    r = subprocess.run([*VOXWATCH, "serve", "--config", str(f)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.startswith(f"voxwatch: error: {f}: port") and r.stderr.count("\n") == 1


def test_serve_owns_the_store_generates_tokens_and_stops_on_ctrl_c(tmp_path):
    from voxwatch.commands.serve import free_port

    port = free_port()
    proc = subprocess.Popen([*VOXWATCH, "serve", "--store", f"chdb://{tmp_path / 'store'}",
                             "--port", str(port)], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        lines = []
        deadline = time.monotonic() + 60
        while len(lines) < 4 and time.monotonic() < deadline:
            lines.append(proc.stdout.readline())
        out = "".join(lines)
        assert f"API on http://127.0.0.1:{port}" in out
        read = re.search(r"local-read \(read\): (\S+)", out).group(1)
        admin = re.search(r"local-admin \(admin\): (\S+)", out).group(1)
        base = f"http://127.0.0.1:{port}/api/v1"
        assert httpx.get(f"{base}/calls").status_code == 401
        assert httpx.get(f"{base}/calls", headers={"Authorization": f"Bearer {read}"}).json()["total"] == 0
        r = httpx.post(f"{base}/silences", headers={"Authorization": f"Bearer {admin}"},
                       json={"matchers": [{"name": "alertname", "value": "X"}], "duration_s": 60, "comment": "t"})
        assert r.status_code == 201
        # a second process cannot open the embedded store: serve owns it
        probe = subprocess.run([sys.executable, "-c", f"from telemetry.store import open_store; "
                                f"open_store('chdb://{tmp_path / 'store'}')"], capture_output=True, text=True, timeout=60)
        assert probe.returncode != 0
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "voxwatch: stopped" in rest


def test_start_service_gives_the_demo_both_urls_and_tokens(store):
    from voxwatch.commands.serve import start_service
    from voxwatch.context import AppContext

    ctx = AppContext(store=store)
    service = start_service(ctx)
    try:
        assert service.dashboard_url.startswith("http://127.0.0.1:")
        assert httpx.get(service.dashboard_url + "/_stcore/health").status_code == 200
        r = httpx.get(service.api_url + "/api/v1/overview", headers={"Authorization": f"Bearer {service.read_token}"})
        assert r.status_code == 200 and r.json()["degradation"]["level"] == "NORMAL"
        r = httpx.post(service.api_url + "/api/v1/degradation", json={"level": 1, "reason": "x"},
                       headers={"Authorization": f"Bearer {service.read_token}"})
        assert r.status_code == 403
    finally:
        service.stop()
    assert service.dashboard.process.poll() is not None
