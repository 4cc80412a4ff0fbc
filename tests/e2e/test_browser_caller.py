"""Headless Chromium places a WebRTC call from a page on another origin, with a fake microphone
playing a WAV file (`--use-file-for-fake-audio-capture`): refused while that origin is not in
`calls.cors_origins`, connected and transcribed once it is (the transcript and reply appear on the
page, read back through `GET /v1/calls/{id}/turns`)."""

from __future__ import annotations

import threading
import wave
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

pytestmark = [pytest.mark.browser, pytest.mark.media, pytest.mark.slow]

SAID = "where is my order"


def speech_wav(path: Path) -> Path:
    from pipeline.media.caller import synthesize_caller_speech

    pcm = synthesize_caller_speech(f"hello. {SAID}?", rate=48000)
    silence = b"\x00\x00" * 48000  # a second of quiet on each side: the edge sees a clear turn end
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes(silence + pcm + silence * 3)
    return path


def serve_page(html: str) -> tuple[ThreadingHTTPServer, str]:
    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            body = html.encode()
            self.send_response(200)
            self.send_header("content-type", "text/html; charset=utf-8")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), H)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def test_a_page_on_another_origin_calls_only_when_allowed(tmp_path):
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("Debian's chromium is not installed")
    from playwright.sync_api import sync_playwright

    from voxwatch.commands.serve import start_api
    from voxwatch.config import Settings
    from voxwatch.context import AppContext

    ctx = AppContext(settings=Settings())
    api = start_api(ctx)
    page_server, origin = serve_page(httpx.get(f"{api.url}/call", timeout=10).text)
    wav = speech_wav(tmp_path / "caller.wav")
    args = ["--no-sandbox", "--headless", "--disable-gpu", "--no-first-run", "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={wav}",
            "--autoplay-policy=no-user-gesture-required"]
    url = f"{origin}/call?api={api.url}&autocall=1"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=args)
            try:
                page = browser.new_page()
                page.goto(url)
                page.wait_for_selector("body[data-state=refused]", timeout=30_000)
                assert "refused" in page.inner_text("#status")

                ctx.settings = Settings(calls={"cors_origins": [origin]})  # what a reload does
                page = browser.new_page()
                page.goto(url)
                page.wait_for_selector("body[data-state=connected]", timeout=180_000)
                page.wait_for_function(
                    "() => [...document.querySelectorAll('#turns tr')].some(r => r.children[1] && "
                    f"r.children[1].textContent.toLowerCase().includes('{SAID}'))", timeout=180_000)
                rows = page.eval_on_selector_all("#turns tr", "rs => rs.map(r => [...r.children].map(c => c.textContent))")
                turn = next(r for r in rows if SAID in r[1].lower())
                assert turn[2] == "order_status" and turn[3]  # the classifier's intent and a spoken reply
            finally:
                browser.close()
    finally:
        page_server.shutdown()
        api.stop()
        voice = ctx.extras.get("voice")
        if voice is not None and voice.services is not None:
            voice.services.close()  # the local LLM and integration stand-ins the first call started
