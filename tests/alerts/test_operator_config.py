"""The operator's path, as the README's "Configure" section tells it: `voxwatch init DIR`, add a rule
and an Alertmanager receiver, `voxwatch config check`, `voxwatch serve --config`, and the real
Alertmanager shows the alert; then reloads (POST /-/reload, SIGHUP) that refuse a bad config whole
and take a good one without losing alert state. No file inside the package is edited."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import httpx
import pytest

from voxwatch.config import ConfigError, load_settings

VOXWATCH = [sys.executable, "-c", "import sys; from voxwatch.cli import main; sys.exit(main())"]

MY_RULES = """
groups:
  - name: mine
    interval: 1s
    rules:
      - alert: ServeRunsThreads
        type: threshold
        expr: {metric: voxwatch_runtime_threads}
        aggregation: last
        window: 30s
        by: [process]
        threshold: 1
        for: 0s
        severity: ticket
        labels: {team: oncall}
        annotations:
          summary: "{{ $labels.process }} runs {{ $value }} threads"
"""

SECOND_RULE = """
      - alert: ServeRunsThreadsToo
        type: threshold
        expr: {metric: voxwatch_runtime_threads}
        aggregation: last
        window: 30s
        threshold: 1
        for: 0s
        severity: ticket
"""


def cli(*args, env=None, cwd=None):
    return subprocess.run([*VOXWATCH, *args], capture_output=True, text=True, timeout=120, env=env, cwd=cwd)


def test_init_writes_a_starter_folder_that_checks_clean(tmp_path):
    r = cli("init", str(tmp_path / "cfg"))
    assert r.returncode == 0, r.stderr
    cfg = tmp_path / "cfg" / "voxwatch.yaml"
    assert sorted(p.name for p in (tmp_path / "cfg" / "rules").iterdir()) == ["degradation.yaml", "golden_signals.yaml", "slo.yaml"]
    r = cli("config", "check", str(cfg), env={k: v for k, v in os.environ.items() if not k.startswith(("VOXWATCH_", "PAGERDUTY"))})
    assert r.returncode == 0, r.stderr
    assert "ok: 18 rules" in r.stdout and "alertmanager (alertmanager, off)" in r.stdout
    # a second init does not overwrite what the operator edited
    again = cli("init", str(tmp_path / "cfg"))
    assert again.returncode == 2 and "already exist" in again.stderr


def test_config_check_prints_one_line_per_problem_naming_file_and_field(tmp_path):
    assert cli("init", str(tmp_path)).returncode == 0
    cfg = tmp_path / "voxwatch.yaml"
    text = cfg.read_text().replace("port: 8000", "port: 99999").replace("receiver: tickets\n", "receiver: nobody\n", 1)
    cfg.write_text(text + 'external_url: "${NOT_SET_ANYWHERE}"\n')
    (tmp_path / "rules" / "mine.yaml").write_text(MY_RULES.replace("voxwatch_runtime_threads", "voxwatch_no_such_metric"))
    r = cli("config", "check", str(cfg))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1
    # the unset variable stops the file from being read at all: that is the only problem reported
    assert lines == [f"{cfg}: line {text.count(chr(10)) + 1}: environment variable NOT_SET_ANYWHERE is not set "
                     "(write ${NOT_SET_ANYWHERE:-} if it may be empty)"]
    cfg.write_text(text)
    r = cli("config", "check", str(cfg))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and lines == [f"{cfg}: port: Input should be less than or equal to 65535"]
    cfg.write_text(text.replace("port: 99999", "port: 8000"))
    r = cli("config", "check", str(cfg))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and lines == [f"{cfg}: alerting: route: receiver 'nobody' is not defined in 'receivers'"]
    cfg.write_text(text.replace("port: 99999", "port: 8000").replace("receiver: nobody", "receiver: tickets"))
    r = cli("config", "check", str(cfg))
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [
        f"{tmp_path / 'rules' / 'mine.yaml'}: group 'mine', rule 'ServeRunsThreads', field expr.metric: "
        "metric 'voxwatch_no_such_metric' is not in the catalog"]
    (tmp_path / "rules" / "broken.yaml").write_text("groups:\n  - name: b\n    rules:\n      - alert: B\n        type: threshold\n")
    (tmp_path / "rules" / "mine.yaml").write_text("groups: [\n")
    r = cli("config", "check", str(cfg))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) >= 2
    assert any(line.startswith(f"{tmp_path / 'rules' / 'broken.yaml'}: group 'b', rule 'B', field expr") for line in lines)
    assert any(line.startswith(f"{tmp_path / 'rules' / 'mine.yaml'}: line") and "not valid YAML" in line for line in lines)


def test_rule_files_are_relative_to_the_config_and_globs_must_match(tmp_path):
    from voxwatch.config_rules import load_ruleset

    (tmp_path / "teams" / "a").mkdir(parents=True)
    (tmp_path / "teams" / "a" / "alerts.yaml").write_text(MY_RULES)
    cfg = tmp_path / "v.yaml"
    cfg.write_text("rule_files: ['teams/*/alerts.yaml']\nalerting:\n  route: {receiver: am}\n  receivers:\n"
                   "    - {name: am, type: alertmanager, urls: ['${AM_URL}']}\n")
    settings = load_settings(cfg, env={"AM_URL": "http://am.example:9093"})
    rs = load_ruleset(settings, str(cfg))
    assert [r.name for r in rs.rules()] == ["ServeRunsThreads"]
    assert rs.receiver("am").all_urls() == ["http://am.example:9093"]
    cfg.write_text("rule_files: ['nowhere/*.yaml']\n")
    with pytest.raises(ConfigError, match=r"rule_files\[0\]: .*nowhere/\*\.yaml' matches no file"):
        load_ruleset(load_settings(cfg, env={}), str(cfg))


def test_pagerduty_routing_key_comes_from_the_documented_variable(tmp_path):
    from voxwatch.config_rules import load_ruleset

    cfg = tmp_path / "v.yaml"
    cfg.write_text("alerting:\n  route: {receiver: pd}\n  receivers:\n    - {name: pd, type: pagerduty}\n")
    settings = load_settings(cfg, env={})
    assert load_ruleset(settings, env={"PAGERDUTY_ROUTING_KEY": "k" * 32}).receiver("pd").routing_key == "k" * 32
    assert load_ruleset(settings, env={}).receiver("pd").routing_key == ""
    # the shipped routing has a PagerDuty receiver for pages, on once the variable is set
    from alerts.ruleset import load_rules

    assert load_rules(env={"PAGERDUTY_ROUTING_KEY": "abc"}).receiver("pagerduty").routing_key == "abc"


@pytest.mark.slow
def test_serve_from_a_starter_folder_pages_a_real_alertmanager_and_reloads(tmp_path):
    from tests.alertmanager_server import AlertmanagerServer, binary
    from voxwatch.commands.serve import free_port

    if binary() is None:
        pytest.skip("prometheus-alertmanager is not installed")
    am = AlertmanagerServer(tmp_path / "am", webhook_url="http://127.0.0.1:9/unused").start()
    folder = tmp_path / "oncall"
    assert cli("init", str(folder)).returncode == 0
    cfg = folder / "voxwatch.yaml"
    (folder / "rules" / "mine.yaml").write_text(MY_RULES)
    port = free_port()
    text = (cfg.read_text().replace("port: 8000", f"port: {port}")
            .replace("store: chdb://./var/voxwatch", f"store: chdb://{tmp_path / 'store'}")
            .replace("url: ${VOXWATCH_ALERTMANAGER_URL:-}", "url: ${MY_ALERTMANAGER}"))
    cfg.write_text(text)
    env = dict(os.environ, MY_ALERTMANAGER=am.url)
    r = cli("config", "check", str(cfg), env=env)
    assert r.returncode == 0 and "alertmanager (alertmanager)" in r.stdout, r.stderr
    admin = re.search(r'name: oncall, token: "([^"]+)"', text).group(1)
    read = re.search(r'name: dashboard, token: "([^"]+)"', text).group(1)
    proc = subprocess.Popen([*VOXWATCH, "serve", "--config", str(cfg)], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        assert f"API on {base}" in proc.stdout.readline()

        def in_am():
            return [a for a in am.alerts() if a["labels"]["alertname"] == "ServeRunsThreads"]

        deadline = time.monotonic() + 60
        while not in_am() and time.monotonic() < deadline:
            time.sleep(0.5)
        (held,) = in_am()
        assert held["status"]["state"] == "active" and held["labels"]["team"] == "oncall"
        assert held["labels"]["process"] == "voxwatch-serve"
        assert held["annotations"]["summary"].startswith("voxwatch-serve runs ")
        assert held["generatorURL"] == f"{base}/alerts/ServeRunsThreads"
        page = httpx.get(held["generatorURL"], params={"format": "json"}, timeout=5).json()
        (before,) = page["alerts"]
        assert before["state"] == "firing"

        def metric(name):
            body = httpx.get(f"{base}/metrics", timeout=5).text
            return float(re.search(rf"^{name} (\S+)$", body, re.M).group(1))

        assert metric("voxwatch_config_last_reload_successful") == 1
        # every push is counted by receiver and result
        assert metric(r'voxwatch_notifications_total\{receiver="alertmanager",result="delivered"\}') >= 1
        t_start = metric("voxwatch_config_last_reload_success_timestamp_seconds")

        # a bad rule file: refused whole, the running config stays
        (folder / "rules" / "mine.yaml").write_text(MY_RULES + SECOND_RULE.replace("threshold: 1", "threshold: high"))
        assert httpx.post(f"{base}/-/reload", timeout=30).status_code == 401
        assert httpx.post(f"{base}/-/reload", headers={"Authorization": f"Bearer {read}"}, timeout=30).status_code == 403
        r = httpx.post(f"{base}/-/reload", headers={"Authorization": f"Bearer {admin}"}, timeout=30)
        assert r.status_code == 400
        assert any("rule 'ServeRunsThreadsToo', field threshold" in p for p in r.json()["problems"])
        assert metric("voxwatch_config_last_reload_successful") == 0
        assert httpx.get(f"{base}/alerts/ServeRunsThreadsToo", timeout=5).status_code == 404
        assert in_am()

        # a good one, by SIGHUP: the new rule runs and the old alert keeps its state
        (folder / "rules" / "mine.yaml").write_text(MY_RULES + SECOND_RULE)
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while httpx.get(f"{base}/alerts/ServeRunsThreadsToo", timeout=5).status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.3)
        assert metric("voxwatch_config_last_reload_successful") == 1
        assert metric("voxwatch_config_last_reload_success_timestamp_seconds") > t_start
        after = httpx.get(f"{base}/alerts/ServeRunsThreads", params={"format": "json"}, timeout=5).json()["alerts"]
        assert [(a["fingerprint"], a["state"], a["fired_at"]) for a in after] == [
            (before["fingerprint"], "firing", before["fired_at"])]
        deadline = time.monotonic() + 30
        while not [a for a in am.alerts() if a["labels"]["alertname"] == "ServeRunsThreadsToo"] and time.monotonic() < deadline:
            time.sleep(0.5)
        assert [a for a in am.alerts() if a["labels"]["alertname"] == "ServeRunsThreadsToo"]
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
        am.stop()
    assert proc.returncode == 0, out
    assert "config reloaded (20 rules)" in out
