"""Incident grouping against the ground truth of every shipped scenario: one incident per fault (faults
that overlap in time are one trouble, as october-3's slowdown and leak of the same pool), none on
`baseline`, each incident opened inside its fault's window, naming that fault, with a timeline in order.

Each scenario replays at a small scale (--calls 300) with the shipped rules, the anomaly service and
the pipeline's own degradation controller; incidents are written to a real store and read back."""

from __future__ import annotations

import pytest

from alerts import StoreWriter, load_rules
from alerts import tables as incident_store
from pipeline.simulation.scenario import scenario_names
from voxwatch.commands.rules import load_scenario_or_error, run_scenario

pytestmark = pytest.mark.slow

CALLS = 300


def fault_groups(truth: list[dict]) -> list[list[dict]]:
    """Faults whose windows overlap, merged: the incidents a person would expect."""
    groups: list[list[dict]] = []
    for f in sorted(truth, key=lambda f: f["start_ms"]):
        if groups and f["start_ms"] <= max(g["end_ms"] for g in groups[-1]):
            groups[-1].append(f)
        else:
            groups.append([f])
    return groups


def test_fault_groups_merge_only_overlapping_faults():
    a = {"start_ms": 0, "end_ms": 10}
    b = {"start_ms": 5, "end_ms": 20}
    c = {"start_ms": 30, "end_ms": 40}
    assert fault_groups([c, a, b]) == [[a, b], [c]]
    assert fault_groups([]) == []


@pytest.mark.parametrize("name", scenario_names())
def test_one_incident_per_fault_and_none_on_baseline(name, store):
    sc = load_scenario_or_error(name, calls=CALLS)
    run = run_scenario(load_rules(env={}), sc, engine_kwargs={"writer": StoreWriter(store), "store": store})
    tracker = run.engine.incidents
    incidents = sorted(tracker.incidents.values(), key=lambda i: i.opened_ms)
    groups = fault_groups(sc.ground_truth())
    assert len(incidents) == len(groups), [(i.incident_id, i.title, i.rules) for i in incidents]
    for inc, group in zip(incidents, groups, strict=True):
        start = min(f["start_ms"] for f in group)
        end = max(f["end_ms"] for f in group)
        assert start - 300_000 <= inc.opened_ms <= end, (inc.title, inc.opened_ms - start)
        assert inc.fault is not None and inc.fault["kind"] in {f["kind"] for f in group}
        timings = inc.timings()
        assert timings["detect"] is not None and timings["detect"] >= -300
        # the timeline: opened by an alert, every event in time order, read back the same from the store
        kinds = [e.kind for e in inc.ordered_timeline()]
        assert "opened" in kinds and "alert" in kinds
        stored = incident_store.load_incident(store, inc.incident_id)
        assert stored is not None and stored.state == inc.state
        assert [e.seq for e in stored.timeline] == [e.seq for e in inc.ordered_timeline()]
        assert [e.ts_ms for e in stored.timeline] == sorted(e.ts_ms for e in stored.timeline)
        if any(a["phase"] == "applied" for a in run.engine.actions.history):
            assert inc.actions, "the actions its rules asked for belong to the incident"
    if not groups:
        assert not incidents and not incident_store.list_incidents(store)
