"""`voxwatch rules test` never delivers to the receivers a rule set configures (a literal URL in
routing included) unless --deliver is given: it reports what would have been sent."""

from __future__ import annotations

import json
import shutil

import pytest

from alerts.ruleset import DEFAULT_RULES_DIR
from voxwatch.cli import main

ROUTING = """
route:
  receiver: hook
  group_wait: 0s
  group_interval: 1m
  routes:
    - {{receiver: am, continue: true}}
    - {{receiver: pd, match: {{severity: page}}, continue: true}}
    - {{receiver: hook}}
receivers:
  - {{name: hook, type: webhook, url: "{url}/hook"}}
  - {{name: am, type: alertmanager, url: "{url}/am"}}
  - {{name: pd, type: pagerduty, url: "{url}/pd", routing_key: "0123456789abcdef0123456789abcdef"}}
"""


def rules_dir(tmp_path, url):
    d = tmp_path / "rules"
    d.mkdir()
    for f in DEFAULT_RULES_DIR.glob("*.yaml"):
        if f.name != "routing.yaml":
            shutil.copy(f, d / f.name)
    (d / "routing.yaml").write_text(ROUTING.format(url=url))
    return d


@pytest.mark.slow
def test_a_backtest_reports_what_it_would_send_and_sends_nothing(tmp_path, receiver, capsys):
    d = rules_dir(tmp_path, receiver.url)
    assert main(["rules", "test", str(d), "--scenario", "region-outage", "--calls", "300", "--duration", "400",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert receiver.requests == []
    assert report["delivered"] is False
    sends = report["would_send"]
    by = {n["integration"] for n in sends}
    assert by == {"webhook", "alertmanager", "pagerduty"}
    assert any(n["integration"] == "pagerduty" and n["alerts"][0].startswith("trigger voxwatch/RegionDown/")
               for n in sends)
    assert any("RegionDown until" in a for n in sends if n["integration"] == "alertmanager" for a in n["alerts"])
    assert all(n["url"].startswith(receiver.url) for n in sends)
    # the text report says so too
    assert main(["rules", "test", str(d), "--scenario", "region-outage", "--calls", "300", "--duration", "400"]) == 0
    out = capsys.readouterr().out
    assert "notifications (not sent; --deliver sends them)" in out and receiver.requests == []
    # and --deliver really sends (the operator asked for it)
    assert main(["rules", "test", str(d), "--scenario", "region-outage", "--calls", "300", "--duration", "400",
                 "--json", "--deliver"]) == 0
    assert json.loads(capsys.readouterr().out)["delivered"] is True
    assert {r["path"] for r in receiver.requests} >= {"/hook", "/am/api/v2/alerts", "/pd/v2/enqueue"}
