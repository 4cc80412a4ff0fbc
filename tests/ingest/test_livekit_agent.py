"""LiveKit Agents' own tracing, driven for real without a LiveKit server (AgentSession in text mode with
LiveKit's OpenAI plugin on the project's stand-in), exported to a running Voxwatch: its session, turns,
llm stages, time to first token and tokens are stored as docs/ingest.md maps them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("livekit.agents", reason="livekit-agents is not installed")

from tests.ingest.conftest import INGEST, ROOT, stored  # noqa: E402

pytestmark = pytest.mark.slow
INPUTS = ["I would like to order a pizza", "What are your opening hours?"]


def test_a_livekit_session_is_stored_as_its_tracing_reported_it(service, llm_stand_in, tmp_path):
    out = tmp_path / "lk.json"
    proc = subprocess.run([sys.executable, "-m", "tests.ingest.livekit_agent", "--llm-url", llm_stand_in,
                           "--voxwatch-url", service.url, "--token", INGEST, "--out", str(out), *INPUTS],
                          cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ran = json.loads(out.read_text())["spans"]
    names = [s["name"] for s in ran]
    assert names.count("agent_session") == 1 and names.count("agent_turn") == len(INPUTS)
    (trace_id,) = {s["trace_id"] for s in ran if s["name"] == "agent_session"}

    rows = stored(service, f"SELECT span_id, name FROM spans WHERE trace_id = '{trace_id}'")
    mine = sorted((s["span_id"], s["name"]) for s in ran if s["trace_id"] == trace_id)
    assert sorted(rows) == mine

    (call,) = stored(service, f"SELECT turns, region, scenario, channel FROM calls WHERE call_id = '{trace_id}'")
    assert call == (len(INPUTS), "eu-west", "lk-agent", "otlp")

    reg = service.telemetry.registry
    nodes = [s for s in ran if s["name"] == "llm_node"]
    assert reg.get_sample_value("voxwatch_stage_latency_seconds_count", {"stage": "llm", "region": "eu-west"}) == len(nodes)
    ttft = {(s["attributes"]["gen_ai.provider.name"], s["attributes"]["gen_ai.request.model"]) for s in nodes}
    ((provider, model),) = ttft
    assert reg.get_sample_value("voxwatch_llm_time_to_first_token_seconds_sum", {"provider": provider, "model": model}) == \
        pytest.approx(sum(s["attributes"]["lk.response.ttft"] for s in nodes), rel=1e-6)
    requests = [s for s in ran if "gen_ai.usage.input_tokens" in s["attributes"]]
    assert reg.get_sample_value("voxwatch_llm_input_tokens_total", {"provider": provider, "model": model}) == \
        sum(s["attributes"]["gen_ai.usage.input_tokens"] for s in requests) > 0
    assert reg.get_sample_value("voxwatch_turns_total", {"region": "eu-west"}) == len(INPUTS)
