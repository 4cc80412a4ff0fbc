"""The Calls page's waterfall of a real call, in a real browser: `voxwatch serve --dashboard` on an empty
embedded store, a call placed through the real media path (an aiortc caller speaking espeak-ng audio to
`POST /v1/calls`: Opus, the edge's VAD, Whisper, the classifier, the LLM and integration stand-ins over
HTTP, espeak-ng replies), then Debian's Chromium opens the Calls page for that call.

Checked: every stage span the store holds for the call is a bar on the page whose length is the span's
stored duration, both in the figure's data and in the drawn pixels, placed at the span's offset from
its turn's start; and the turn that looked the order up shows STT, response, integrations and TTS as
work that took time (not the near-zero spans of a stage timed after its work had already run). The
screenshot is kept under test-output/screenshots/calls-real-call.png.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time

import httpx
import pytest
import yaml

from tests.e2e.conftest import CHROMIUM_ARGS
from tests.e2e.test_browser_dashboard import (
    ROOT,
    VOXWATCH,
    open_page,
    settle,
    shoot,
    wait_for_dashboard,
)

pytestmark = [pytest.mark.browser, pytest.mark.media, pytest.mark.slow]

READ_TOKEN = "waterfall-read-token-0123456789"
SAID = ("where is my order", "what is your return policy")

# The waterfall as drawn: each bar trace's data and its rendered rectangle (plot-area pixels).
BARS_JS = """
() => {
  const gd = [...document.querySelectorAll('.js-plotly-plot')].pop();
  const xa = gd._fullLayout.xaxis;
  const groups = gd.querySelectorAll('.barlayer .trace');
  const bars = gd.data.map((t, i) => {
    const path = groups[i] ? groups[i].querySelector('path') : null;
    const box = path ? path.getBBox() : null;
    return {name: t.name, y: t.y[0], x: t.x[0], base: t.base[0],
            left_px: box ? box.x : null, width_px: box ? box.width : 0};
  });
  return {bars, traces: groups.length, px_per_ms: xa._length / (xa.range[1] - xa.range[0]),
          zero_px: xa.l2p(0), title: gd._fullLayout.title.text};
}
"""


def _serve(work):
    from voxwatch.commands.serve import free_port

    api_port, dash_port = free_port(), free_port()
    config = work / "voxwatch.yaml"
    config.write_text(yaml.safe_dump({
        "store": f"chdb://{work / 'store'}", "host": "127.0.0.1", "port": api_port, "dashboard_port": dash_port,
        "tokens": [{"name": "dashboard", "token": READ_TOKEN, "scopes": ["read"]}],
    }))
    log = open(work / "serve.log", "w")  # noqa: SIM115 - closed by the caller
    proc = subprocess.Popen([*VOXWATCH, "serve", "--config", str(config), "--dashboard"], cwd=work, stdout=log,
                            stderr=subprocess.STDOUT, env=dict(os.environ, VOXWATCH_REFRESH_S="3600"))
    dash = f"http://127.0.0.1:{dash_port}"
    wait_for_dashboard(proc, dash, log, work / "serve.log")
    return proc, log, f"http://127.0.0.1:{api_port}", dash


async def _call(api: str) -> str:
    from pipeline.media.caller import ScriptedCaller, synthesize_caller_speech

    caller = ScriptedCaller(api)
    await caller.dial(timeout_s=120.0)  # the first offer loads Whisper and starts the stand-ins
    await caller.wait_for_reply(after=0.0, timeout_s=60.0)  # the greeting
    for text in SAID:
        line = await caller.say(synthesize_caller_speech(text), text)
        assert await caller.wait_for_reply(after=line.speech_end_at, timeout_s=20.0) is not None, f"no reply to {text!r}"
    await caller.hang_up()
    return caller.call_id


def _stored_call(api: str, call_id: str) -> dict:
    """The call as the store holds it (what the page is drawn from), once its spans are written."""
    headers = {"Authorization": f"Bearer {READ_TOKEN}"}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        r = httpx.get(f"{api}/api/v1/calls/{call_id}", headers=headers, timeout=10)
        if r.status_code == 200 and len(r.json()["turns"]) >= len(SAID):
            return r.json()
        time.sleep(0.5)
    raise AssertionError(f"call {call_id} was not stored with its turns: {r.status_code} {r.text[:300]}")


def test_calls_page_waterfall_of_a_real_call_draws_each_stage_at_its_stored_duration(tmp_path):
    if not os.path.exists("/usr/bin/chromium"):
        pytest.skip("Debian's chromium is not installed")
    from playwright.sync_api import sync_playwright

    proc, log, api, dash = _serve(tmp_path)
    try:
        call_id = asyncio.run(_call(api))
        detail = _stored_call(api, call_id)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            try:
                page = open_page(browser, dash + "/calls")
                page.wait_for_selector("text=Turn-by-turn waterfall", timeout=120_000)
                settle(page)
                assert f"Call {call_id}" in page.inner_text("body")  # the only call: the one selected
                drawn = page.evaluate(BARS_JS)
                shoot(page, "calls-real-call")
            finally:
                browser.close()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()

    assert drawn["traces"] == len(drawn["bars"]), "every trace of the figure is drawn"
    bars = {b["y"]: b for b in drawn["bars"]}
    px = drawn["px_per_ms"]
    for turn in detail["turns"]:
        row = f"turn {turn['turn']}"
        assert bars[row]["x"] == pytest.approx(turn["duration_ms"], abs=1e-6) and bars[row]["base"] == 0.0
        for stage in turn["stages"]:
            bar = bars[f"{row} · {stage['name']}"]
            offset_ms = (stage["start_us"] - turn["start_us"]) / 1000.0
            # the figure's numbers are the stored span's
            assert bar["x"] == pytest.approx(stage["duration_ms"], abs=1e-6), (row, stage["name"])
            assert bar["base"] == pytest.approx(offset_ms, abs=1e-3), (row, stage["name"])
            # and the drawn rectangle is that long, where the span began (a pixel of anti-aliasing)
            if stage["duration_ms"] * px >= 2:
                assert bar["width_px"] == pytest.approx(stage["duration_ms"] * px, abs=1.5), (row, stage["name"], bar)
                assert bar["left_px"] == pytest.approx(drawn["zero_px"] + offset_ms * px, abs=1.5), (row, stage["name"], bar)

    # the order lookup turn: each stage's span covers work that ran, inside the turn
    order_turn = detail["turns"][0]
    took, attrs = {}, {}
    for s in order_turn["stages"]:
        took[s["name"]] = took.get(s["name"], 0.0) + s["duration_ms"]
        attrs.setdefault(s["name"], s["attributes"])
        assert s["start_us"] >= order_turn["start_us"] - 2000
        assert s["start_us"] + s["duration_ms"] * 1000 <= order_turn["start_us"] + order_turn["duration_ms"] * 1000 + 2000
    assert {"stt", "nlu", "response", "integrations", "tts", "endpoint"} <= set(took), took
    decode_ms = float(attrs["stt"]["decode_s"]) * 1000  # Whisper's own timing of the decode
    assert decode_ms > 0 and took["stt"] >= decode_ms - 2.0, (took, attrs["stt"])
    lookups = [s for s in order_turn["stages"] if s["name"] == "integrations"]
    assert any(s["attributes"].get("system") == "orders" and s["duration_ms"] > 0 for s in lookups), lookups
    assert int(float(attrs["tts"]["chars"])) > 0 and took["tts"] > 0 and took["response"] > 0, (took, attrs)
    assert (ROOT / "test-output" / "screenshots" / "calls-real-call.png").stat().st_size > 20_000
