"""A real Pipecat bot (Whisper tiny.en STT, Pipecat's OpenAI LLM service against the project's
OpenAI-compatible stand-in, espeak-ng TTS, audio from a WAV) with its own tracing exported to a
running Voxwatch through `voxwatch.integrations.pipecat`: the calls, turns, spans and stage latencies
Voxwatch stores are the ones the bot's tracing produced; then Voxwatch's degradation level reaches
the bot and changes what it does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Request

from telemetry.quantiles import percentile

pytest.importorskip("pipecat", reason="the pipecat-ai test extra (voxwatch[ingest-test]) is not installed")

from tests.ingest.conftest import INGEST, auth, served_app, stored  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.media]
ROOT = Path(__file__).resolve().parents[2]
SENTENCES = ("I would like to order a pizza.", "What are your opening hours?")


@pytest.fixture(scope="module")
def call_wav(tmp_path_factory):
    from pipeline.media.caller import synthesize_caller_speech
    from tests.ingest.pipecat_bot import write_wav

    path = tmp_path_factory.mktemp("audio") / "caller.wav"
    write_wav(path, [synthesize_caller_speech(s, rate=16_000) for s in SENTENCES])
    return path


def run_bot(service, llm_url, wav, tmp_path, conversation_id) -> dict:
    out = tmp_path / f"{conversation_id}.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OTEL_BSP_SCHEDULE_DELAY="500")
    cmd = [sys.executable, "-m", "tests.ingest.pipecat_bot", "--wav", str(wav), "--llm-url", llm_url,
           "--voxwatch-url", service.url, "--token", INGEST, "--conversation-id", conversation_id, "--out", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text())


def sample(service, name, **labels):
    return service.telemetry.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
def pager():
    """A pager's webhook endpoint over real HTTP: keeps every page it is sent."""
    app = FastAPI()
    app.state.pages = []

    @app.post("/pager")
    async def page(request: Request):
        app.state.pages.append(await request.json())
        return {"ok": True}

    with served_app(app, "/pager") as url:
        app.state.url = url
        yield app


@pytest.fixture
def monitored(pager, monkeypatch, request):
    """The service with its live loop (snapshots, anomaly service, shipped rules and actions), paging `pager`."""
    from voxwatch.commands.serve import start_monitoring

    monkeypatch.setenv("VOXWATCH_PAGER_URL", pager.state.url)
    service = request.getfixturevalue("service")
    stop = start_monitoring(service, external_url=service.url)
    yield service
    stop()


def test_a_pipecat_call_is_stored_as_it_ran_and_the_level_reaches_the_bot(monitored, pager, slow_llm_stand_in, call_wav,
                                                                          tmp_path):
    service = monitored
    # the bot's LLM provider is slow today (about 900 ms to the first token)
    ran = run_bot(service, slow_llm_stand_in, call_wav, tmp_path, "call-slow")
    assert ran["turns"] == len(SENTENCES) and ran["level"] == "NORMAL"
    spans = ran["spans"]
    (trace_id,) = {s["trace_id"] for s in spans}
    by_name = {}
    for s in spans:
        by_name.setdefault(s["name"], []).append(s)
    assert len(by_name["turn"]) == len(SENTENCES) and len(by_name["conversation"]) == 1
    assert {"stt", "llm", "tts"} <= set(by_name)

    # every span the bot's tracing produced is stored, with its timing, under the call's trace
    rows = stored(service, f"SELECT span_id, name, duration_ms, call_id FROM spans WHERE trace_id = '{trace_id}'")
    assert sorted((r[0], r[1]) for r in rows) == sorted((s["span_id"], s["name"]) for s in spans)
    durations = {r[0]: r[2] for r in rows}
    for s in spans:
        assert durations[s["span_id"]] == pytest.approx(s["duration_ms"], abs=1e-3)

    # the call: its turns and the turn latencies Pipecat measured (end of user speech -> bot speaking)
    turn_latencies = sorted(t["attributes"]["turn.user_bot_latency_seconds"] for t in by_name["turn"])
    (call,) = stored(service, f"SELECT turns, latency_max_ms, latency_p50_ms, channel, scenario, transcript "
                              f"FROM calls WHERE call_id = '{trace_id}'")
    turns, lat_max, lat_p50, channel, scenario, transcript = call
    assert turns == len(SENTENCES) and channel == "otlp" and scenario == "pizza-bot"
    assert lat_max == pytest.approx(turn_latencies[-1] * 1000, rel=1e-9)
    # the project's one percentile rule (nearest rank, telemetry.quantiles.percentile)
    assert lat_p50 == pytest.approx(percentile(sorted(t * 1000 for t in turn_latencies), 0.5), rel=1e-9)
    for t in by_name["stt"]:
        assert f"caller: {t['attributes']['transcript']}" in transcript
    assert "pizza" in transcript.lower()

    # stage latencies, LLM time to first token, TTS time to first byte and tokens, in the catalog's instruments
    region = "pizza-bot"
    for stage in ("stt", "llm", "tts"):
        assert sample(service, "voxwatch_stage_latency_seconds_count", stage=stage, region=region) == len(by_name[stage])
        assert sample(service, "voxwatch_stage_latency_seconds_sum", stage=stage, region=region) == \
            pytest.approx(sum(s["duration_ms"] for s in by_name[stage]) / 1000, rel=1e-6)
    llm = by_name["llm"]
    provider, model = llm[0]["attributes"]["gen_ai.provider.name"], llm[0]["attributes"]["gen_ai.request.model"]
    assert sample(service, "voxwatch_llm_time_to_first_token_seconds_sum", provider=provider, model=model) == \
        pytest.approx(sum(s["attributes"]["metrics.ttfb"] for s in llm), rel=1e-6)
    assert sample(service, "voxwatch_llm_output_tokens_total", provider=provider, model=model) == \
        sum(s["attributes"]["gen_ai.usage.output_tokens"] for s in llm) > 0
    assert sample(service, "voxwatch_tts_time_to_first_byte_seconds_count", language="") == \
        sum(1 for s in by_name["tts"] if "metrics.ttfb" in s["attributes"])
    assert sample(service, "voxwatch_turn_latency_seconds_sum", region=region) == pytest.approx(sum(turn_latencies), rel=1e-6)
    assert sample(service, "voxwatch_turn_barge_ins_total", region=region) == 0  # the last turn closed by hang-up is no barge-in

    # the shipped LLMLatencySpike rule (P95 time to first token over 1 m > 500 ms for 20 s) fires on the
    # bot's own measurements: a page goes out and the action asks for CACHED_RESPONSES
    assert min(s["attributes"]["metrics.ttfb"] for s in llm) > 0.5
    deadline = time.monotonic() + 120
    while httpx.get(f"{service.url}/v1/degradation/level", headers=auth(INGEST)).json()["level"] != "CACHED_RESPONSES":
        assert time.monotonic() < deadline, "the LLM latency rule never degraded the pipeline"
        time.sleep(1)
    state = httpx.get(f"{service.url}/v1/degradation/level", headers=auth(INGEST)).json()
    assert state["rule"] == "LLMLatencySpike"
    while not any(a["labels"]["alertname"] == "LLMLatencySpike" for p in pager.state.pages for a in p.get("alerts", [])):
        assert time.monotonic() < deadline, f"no page for LLMLatencySpike: {pager.state.pages}"
        time.sleep(0.5)
    degraded = run_bot(service, slow_llm_stand_in, call_wav, tmp_path, "call-degraded")
    assert degraded["level"] == "CACHED_RESPONSES" and degraded["applied"] == {"CACHED_RESPONSES": len(SENTENCES)}
    replies = [m["content"] for m in degraded["messages"] if m["role"] == "assistant"]
    assert replies == ["Our menu is on the website."] * len(SENTENCES)
    names = [s["name"] for s in degraded["spans"]]
    assert "llm" not in names and names.count("turn") == len(SENTENCES)  # no LLM call at all
    (trace2,) = {s["trace_id"] for s in degraded["spans"]}
    assert stored(service, f"SELECT count() FROM spans WHERE trace_id = '{trace2}' AND name = 'llm'") == [(0,)]
    assert stored(service, f"SELECT turns FROM calls WHERE call_id = '{trace2}'") == [(len(SENTENCES),)]
