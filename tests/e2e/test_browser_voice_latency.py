"""A real browser calls the voice agent: Debian's Chromium (Playwright) with its fake audio capture
device reading a WAV made with espeak-ng, dialling `POST /v1/calls` on a running voice pipeline
(real aiortc edge, Whisper, classifier, LLM and integration stand-ins, espeak-ng replies).

The browser measures on its own clock, from its side of the line: the level of the microphone track
it sends and of the reply track it receives, block by block (Web Audio). End of speech is where the
microphone's level falls for good in each loop of the WAV; first reply audio is where the received
level rises after it. The figures are printed (the benchmark's business is their size); the test
asserts that every spoken request got a spoken reply after its end of speech, understood.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.browser, pytest.mark.media, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
REQUEST = "i want to check the status of my order"
LEAD_S, TAIL_S = 4.5, 5.5  # silence before the request (the greeting plays) and after it (the reply)

CALLER_JS = """
async ({seconds}) => {
  const stream = await navigator.mediaDevices.getUserMedia({audio: true});
  const ctx = new AudioContext();
  const levels = {mic: [], reply: []};  // [ms since epoch, rms]
  function meter(source, into) {
    const proc = ctx.createScriptProcessor(256, 1, 1);
    proc.onaudioprocess = (e) => {
      const x = e.inputBuffer.getChannelData(0);
      let s = 0; for (let i = 0; i < x.length; i++) s += x[i] * x[i];
      into.push([performance.timeOrigin + performance.now(), Math.sqrt(s / x.length)]);
    };
    source.connect(proc); proc.connect(ctx.destination);
  }
  meter(ctx.createMediaStreamSource(stream), levels.mic);
  const pc = new RTCPeerConnection();
  stream.getTracks().forEach((t) => pc.addTrack(t, stream));
  pc.ontrack = (ev) => {
    const el = new Audio(); el.muted = true; el.srcObject = ev.streams[0] || new MediaStream([ev.track]);
    el.play().catch(() => {});  // Chromium only pulls remote audio into Web Audio when it is attached
    meter(ctx.createMediaStreamSource(el.srcObject), levels.reply);
  };
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((ok) => {
    if (pc.iceGatheringState === 'complete') return ok();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && ok();
    setTimeout(ok, 3000);
  });
  const resp = await fetch('/v1/calls', {method: 'POST', headers: {'Content-Type': 'application/json'},
    body: JSON.stringify({sdp: pc.localDescription.sdp, type: 'offer'})});
  const answer = await resp.json();
  await pc.setRemoteDescription({type: answer.type, sdp: answer.sdp});
  await new Promise((ok) => setTimeout(ok, seconds * 1000));
  pc.close();
  return {call_id: answer.call_id, levels, state: pc.connectionState};
}
"""


def _request_wav(path: Path) -> float:
    """The caller's WAV (16 kHz mono): silence, the request, silence. Returns its length in seconds."""
    speech = path.with_suffix(".speech.wav")
    subprocess.run(["espeak-ng", "-v", "en-us+m3", "-s", "150", "-w", str(speech), REQUEST], check=True)
    subprocess.run(["sox", str(speech), "-r", "16000", "-c", "1", "-b", "16", str(path), "pad", str(LEAD_S), str(TAIL_S)], check=True)
    out = subprocess.run(["soxi", "-D", str(path)], capture_output=True, text=True, check=True)
    return float(out.stdout)


def _edges(levels: list, threshold: float, hang_s: float = 0.6) -> list[tuple[float, float]]:
    """(start, end) seconds of stretches above threshold, merging gaps shorter than hang_s."""
    spans: list[list[float]] = []
    for t_ms, rms in levels:
        t = t_ms / 1000.0
        if rms < threshold:
            continue
        if spans and t - spans[-1][1] <= hang_s:
            spans[-1][1] = t
        else:
            spans.append([t, t])
    return [(a, b) for a, b in spans]


@pytest.fixture(scope="module")
def voice_url():
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed")
    from pipeline.real.voice import VoiceSettings
    from voxwatch.bench.voice import _Server

    with _Server(VoiceSettings()) as server:
        yield server.url, server


def test_browser_caller_hears_replies_and_measures_end_of_speech_to_first_reply_audio(voice_url, tmp_path):
    from playwright.sync_api import sync_playwright

    url, server = voice_url
    wav = tmp_path / "caller.wav"
    loop_s = _request_wav(wav)
    loops = 3
    args = ["--no-sandbox", "--headless", "--disable-gpu", "--no-first-run", "--autoplay-policy=no-user-gesture-required",
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={wav}"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=args)
        try:
            page = browser.new_page()
            page.goto(url + "/healthz")  # the API's origin: the page signals to /v1/calls same-origin
            result = page.evaluate(CALLER_JS, {"seconds": loop_s * loops + 1.0})
        finally:
            browser.close()

    mic = _edges(result["levels"]["mic"], 0.01, hang_s=0.6)
    reply = _edges(result["levels"]["reply"], 0.01, hang_s=0.6)
    assert len(mic) >= 2, f"the fake microphone spoke the request each loop: {mic}"
    assert reply, "the browser heard the agent"
    latencies = []
    for _, speech_end in mic:
        after = [a for a, _ in reply if a > speech_end]
        if after and after[0] - speech_end < 3.0:
            latencies.append((after[0] - speech_end) * 1000.0)
    print(json.dumps({"browser_end_of_speech_to_first_reply_audio_ms": [round(x) for x in latencies],
                      "p50": round(float(np.median(latencies))) if latencies else None}))
    assert len(latencies) >= len(mic) - 1, "a spoken reply followed (nearly) every request"

    agent = server.voice.agent
    for _ in range(100):
        if result["call_id"] in agent.records:
            break
        asyncio.run(asyncio.sleep(0.05))
    turns = [t for t in agent.timings if t.call_id == result["call_id"]]
    assert turns and all(t.intent == "order_status" for t in turns), [(t.transcript, t.intent) for t in turns]
