"""No dead metrics: across the shipped scenarios (with an operator walking the degradation ladder),
every catalog metric of the pipeline's components is emitted at least once. Only what the real media
path alone measures (Whisper's model load, word error rate against a reference) is left to the
real-media tests. The failure message lists every metric that no code path emitted."""

from __future__ import annotations

import pytest

from pipeline.simulation.scenario import load_scenario, scenario_names
from pipeline.simulation.simulator import Simulation
from telemetry.clock import VirtualClock
from telemetry.instruments import Telemetry

PIPELINE_COMPONENTS = {
    "call", "edge", "vad", "stt", "nlu", "tts", "worker", "region", "degradation", "response", "context",
    "cache", "llm", "pool", "integration", "circuit", "action_queue", "handoff", "business", "simulator",
}
# measured only by the real engines (tests/pipeline/test_media*.py cover them)
REAL_MEDIA_ONLY = {"voxwatch_stt_model_load_seconds", "voxwatch_stt_word_error_rate_ratio"}
LADDER = {30: "CACHED_RESPONSES", 60: "INTEGRATIONS_QUEUED", 90: "REGION_FAILOVER", 120: "HUMAN_HANDOFF", 200: "NORMAL"}


def emitted(tel: Telemetry, metrics) -> set[str]:
    """Metrics with a recorded value: any labelled series, any non-zero sample, or an unlabelled gauge
    that was set at some point (its last value may well be 0)."""
    out = set()
    for family in tel.registry.collect():
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            labelled = any(k != "le" for k in sample.labels)
            if labelled or sample.value != 0:
                out.add(family.name)
                break
    names = {}
    for inst in tel:
        names[inst.spec.prometheus_name if hasattr(inst.spec, "prometheus_name") else inst.name] = inst.name
    touched = {name for name, labels in metrics._children}
    return {names.get(n, names.get(n.removesuffix("_total"), n)) for n in out} | touched


@pytest.fixture(scope="module")
def emitted_by_scenarios():
    seen: set[str] = set()
    missing: set[str] = set()
    for name in scenario_names():
        sc = load_scenario(name).scaled(calls=200, duration_s=360.0)
        clock = VirtualClock(sc.start)
        tel = Telemetry(clock=clock)
        sim = Simulation(sc, clock=clock, telemetry=tel, seed=1)
        if name == "baseline":
            def walk(now, sim=sim):  # an operator walking the degradation ladder and back
                level = LADDER.get(int(round(now - sim.t0)))
                if level:
                    sim.controller.request(level, "ladder walk")
            sim.on_tick(walk)
        sim.run()
        seen |= emitted(tel, sim.metrics)
        missing |= sim.metrics.missing
    return seen, missing


def test_pipeline_metrics_name_only_declared_metrics(emitted_by_scenarios):
    _, missing = emitted_by_scenarios
    assert not missing, f"emitted but not in the catalog: {sorted(missing)}"


def test_every_pipeline_metric_is_emitted_by_some_scenario(emitted_by_scenarios):
    seen, _ = emitted_by_scenarios
    catalog = Telemetry().catalog
    expected = {m.name for m in catalog if m.component in PIPELINE_COMPONENTS} - REAL_MEDIA_ONLY
    dead = sorted(expected - seen)
    assert not dead, f"{len(dead)} catalog metrics no code path emitted:\n  " + "\n  ".join(dead)
