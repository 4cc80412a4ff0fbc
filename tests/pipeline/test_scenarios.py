"""Scenario files: the shipped ones load and state their ground truth; bad files fail with the file,
the field and the problem."""

from __future__ import annotations

import pytest

from pipeline.simulation.scenario import ScenarioError, load_scenario, scenario_names

SHIPPED = {"baseline", "october-3", "llm-latency-spike", "integration-outage", "region-outage", "complete-outage"}


def test_every_required_scenario_ships():
    assert SHIPPED <= set(scenario_names())


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_scenario_states_its_ground_truth(name):
    sc = load_scenario(name)
    truth = sc.ground_truth()
    assert len(truth) == len(sc.faults)
    for g in truth:
        assert 0 <= g["start_s"] < g["end_s"] <= sc.duration_s
        assert g["end_ms"] - g["start_ms"] == pytest.approx((g["end_s"] - g["start_s"]) * 1000, abs=1)
    if name == "baseline":
        assert truth == []
    else:
        assert truth, f"{name} has no fault"


def test_october_3_saturation_creeps_for_at_least_twenty_minutes():
    sc = load_scenario("october-3")
    ramp = sc.traffic.ramp_end_s - sc.traffic.ramp_start_s
    assert ramp >= 20 * 60
    assert any(f.kind == "pool_leak" and f.pool == "orders" for f in sc.faults)


def _write(tmp_path, text):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    return p


def test_unknown_field_names_file_and_field(tmp_path):
    p = _write(tmp_path, "name: x\ntraffic: {shape: steady, concurent_calls: 10}\n")
    with pytest.raises(ScenarioError) as e:
        load_scenario(p)
    msg = str(e.value)
    assert str(p) in msg and "traffic.concurent_calls" in msg


def test_wrong_type_names_the_field(tmp_path):
    p = _write(tmp_path, "name: x\nduration_s: soon\n")
    with pytest.raises(ScenarioError, match=r"bad.yaml: duration_s: .*number"):
        load_scenario(p)


def test_fault_pointing_at_unknown_region_is_refused(tmp_path):
    p = _write(tmp_path, "name: x\nfaults:\n  - {kind: region_outage, region: mars-1, start_s: 10, end_s: 20}\n")
    with pytest.raises(ScenarioError, match=r"faults\[0\]\.region: unknown region 'mars-1'"):
        load_scenario(p)


def test_fault_that_ends_before_it_starts_is_refused(tmp_path):
    p = _write(tmp_path, "name: x\nfaults:\n  - {kind: llm_latency, factor: 3, start_s: 100, end_s: 50}\n")
    with pytest.raises(ScenarioError, match=r"faults\.0.*end_s must be after start_s"):
        load_scenario(p)


def test_unknown_fault_kind_is_refused(tmp_path):
    p = _write(tmp_path, "name: x\nfaults:\n  - {kind: meteor, start_s: 1}\n")
    with pytest.raises(ScenarioError, match=r"bad.yaml: faults\.0"):
        load_scenario(p)


def test_not_yaml_is_refused(tmp_path):
    p = _write(tmp_path, "name: [unclosed\n")
    with pytest.raises(ScenarioError, match="not valid YAML"):
        load_scenario(p)


def test_unknown_scenario_name_lists_the_shipped_ones():
    with pytest.raises(ScenarioError, match="october-3"):
        load_scenario("october-4")


def test_scaling_keeps_the_story():
    sc = load_scenario("october-3")
    small = sc.scaled(calls=1500, duration_s=sc.duration_s / 2)
    assert small.traffic.concurrent_calls == 1500
    assert small.pools["orders"].size == round(sc.pools["orders"].size / 10)
    assert small.traffic.ramp_start_s == sc.traffic.ramp_start_s / 2
    assert small.faults[1].start_s == sc.faults[1].start_s / 2
