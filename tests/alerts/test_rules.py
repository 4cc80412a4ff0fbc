"""Rule files: the shipped set is valid, and every kind of mistake is refused with a message that
names the file, the rule and the field."""

from __future__ import annotations

import pytest

from alerts.ruleset import RuleFileError, check_against_catalog, load_rules, parse_duration
from telemetry.catalog import default_catalog
from voxwatch.cli import main


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


RULE = """
groups:
  - name: g
    rules:
      - alert: {name}
        type: threshold
        expr: {{metric: voxwatch_pool_saturation_ratio}}
        window: {window}
        threshold: 0.9
        annotations: {{summary: "{summary}"}}
"""


def test_shipped_rule_set_loads_and_matches_the_catalog():
    rs = load_rules()
    kinds = {r.type for r in rs.rules()}
    assert kinds == {"threshold", "anomaly", "predictive", "slo"}
    assert check_against_catalog(rs, default_catalog()) == []
    levels = {r.action.level for r in rs.rules() if r.action}
    assert {"REGION_FAILOVER", "CACHED_RESPONSES", "INTEGRATIONS_QUEUED", "HUMAN_HANDOFF"} <= levels


def test_slo_rules_default_to_the_sre_workbook_burn_windows():
    rule = load_rules().rule("TurnLatencySLOBurn")
    got = [(w.long, w.short, w.factor, w.severity) for w in rule.burn_windows]
    assert got == [(3600, 300, 14.4, "page"), (21600, 1800, 6, "page"), (86400, 7200, 3, "ticket"), (259200, 21600, 1, "ticket")]


def test_bad_duration_names_file_rule_and_field(tmp_path):
    p = write(tmp_path, "r.yaml", RULE.format(name="A", window="5 parsecs", summary="x"))
    with pytest.raises(RuleFileError) as e:
        load_rules([p])
    msg = str(e.value)
    assert str(p) in msg and "rule 'A'" in msg and "field window" in msg and "not a duration" in msg


def test_unknown_template_function_is_refused(tmp_path):
    p = write(tmp_path, "r.yaml", RULE.format(name="A", window="1m", summary="{{ $value | shout }}"))
    with pytest.raises(RuleFileError, match=r"rule 'A', field annotations: .*unknown template function 'shout'"):
        load_rules([p])


def test_unknown_field_is_refused(tmp_path):
    text = RULE.format(name="A", window="1m", summary="x") + "        treshold: 3\n"
    with pytest.raises(RuleFileError, match=r"rule 'A', field treshold: Extra inputs are not permitted"):
        load_rules([write(tmp_path, "r.yaml", text)])


def test_quantile_needs_its_q(tmp_path):
    text = RULE.format(name="A", window="1m", summary="x").replace("window:", "aggregation: quantile\n        window:")
    with pytest.raises(RuleFileError, match="needs a 'quantile' field"):
        load_rules([write(tmp_path, "r.yaml", text)])


def test_duplicate_alert_names_across_files_are_refused(tmp_path):
    a = write(tmp_path, "a.yaml", RULE.format(name="Same", window="1m", summary="x"))
    b = write(tmp_path, "b.yaml", RULE.format(name="Same", window="1m", summary="x"))
    with pytest.raises(RuleFileError, match="duplicate alert name"):
        load_rules([a, b])


def test_route_to_an_undefined_receiver_is_refused(tmp_path):
    text = RULE.format(name="A", window="1m", summary="x") + "route: {receiver: nowhere}\n"
    with pytest.raises(RuleFileError, match="receiver 'nowhere' is not defined"):
        load_rules([write(tmp_path, "r.yaml", text)])


def test_not_yaml_is_refused_with_its_line(tmp_path):
    with pytest.raises(RuleFileError, match=r"line \d+ not valid YAML"):
        load_rules([write(tmp_path, "r.yaml", "groups: [\n  - {name: g\n")])


def test_catalog_check_finds_unknown_metrics_and_labels(tmp_path):
    text = """
groups:
  - name: g
    rules:
      - alert: Typo
        type: threshold
        expr: {metric: voxwatch_pool_saturation_ration}
        threshold: 1
      - alert: WrongLabel
        type: threshold
        expr: {metric: voxwatch_pool_saturation_ratio}
        by: [region]
        threshold: 1
      - alert: RateOfGauge
        type: threshold
        expr: {metric: voxwatch_pool_saturation_ratio}
        aggregation: rate
        threshold: 1
"""
    rs = load_rules([write(tmp_path, "r.yaml", text)])
    problems = check_against_catalog(rs, default_catalog())
    assert any("rule 'Typo'" in p and "not in the catalog" in p for p in problems)
    assert any("rule 'WrongLabel'" in p and "no label(s) region" in p for p in problems)
    assert any("rule 'RateOfGauge'" in p and "needs a counter" in p for p in problems)


def test_durations_parse_like_prometheus():
    assert parse_duration("500ms") == 0.5
    assert parse_duration("5m") == 300
    assert parse_duration("3d") == 259200
    assert parse_duration(7) == 7.0
    with pytest.raises(ValueError):
        parse_duration("-1s")


def test_rules_check_command(tmp_path, capsys):
    assert main(["rules", "check"]) == 0
    assert capsys.readouterr().out.startswith("ok: ")
    bad = write(tmp_path, "bad.yaml", RULE.format(name="A", window="soon", summary="x"))
    assert main(["rules", "check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "rule 'A'" in err and "field window" in err


def test_catalog_check_knows_the_degradation_ladder(tmp_path):
    text = RULE.format(name="A", window="1m", summary="x") + "        action: {level: PANIC}\n"
    rs = load_rules([write(tmp_path, "r.yaml", text)])
    (problem,) = check_against_catalog(rs, default_catalog())
    assert "rule 'A', field action.level: unknown degradation level 'PANIC'" in problem


@pytest.mark.slow
def test_rules_test_command_reports_per_rule_timing_and_scores(capsys):
    # region-outage compressed to 10 minutes at 300 calls: us-east is down from 200 s to 350 s
    assert main(["rules", "test", "--scenario", "region-outage", "--calls", "300", "--duration", "600", "--json"]) == 0
    import json

    report = json.loads(capsys.readouterr().out)
    assert report["scenario"] == "region-outage" and report["ground_truth"][0]["kind"] == "region_outage"
    rd = report["rules"]["RegionDown"]
    assert rd["episodes"] == 1 and rd["precision"] == 1.0 and rd["recall"] == 1.0
    assert 0 <= rd["detection_delay_s"][0] <= 3
    assert rd["fired"][0]["labels"]["region"] == "us-east"
    assert any(a["phase"] == "applied" and a["level"] == "REGION_FAILOVER" for a in report["actions"])
    assert report["pages"]["recall"] == 1.0


def test_rules_test_command_refuses_an_unknown_scenario(capsys):
    assert main(["rules", "test", "--scenario", "no-such-day"]) == 2
    assert "unknown scenario 'no-such-day'" in capsys.readouterr().err
