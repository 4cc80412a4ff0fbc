"""Fixtures for the alerts room: a local HTTP receiver on 127.0.0.1 that verifies Standard Webhooks
signatures and answers as a test scripts it, and a virtual clock that knows who sleeps on it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from alerts.receivers.signing import SignatureError, verify
from telemetry.clock import VirtualClock

SECRET = "whsec_" + "dGVzdC1zZWNyZXQtZm9yLXZveHdhdGNoLWFsZXJ0cw=="


class SleepCountingClock(VirtualClock):
    """A VirtualClock that counts coroutines waiting on it, so a test can tell when every delivery
    in flight is either done or parked on a (virtual) retry wait."""

    def __init__(self, start: float = 1_696_323_600.0) -> None:
        super().__init__(start)
        self.sleeping = 0

    async def sleep(self, seconds: float) -> None:
        self.sleeping += 1
        try:
            await super().sleep(seconds)
        finally:
            self.sleeping -= 1


class Receiver:
    """What the local server saw. `respond(request) -> (status, headers, body)` scripts its answers."""

    def __init__(self, clock) -> None:
        self.clock = clock
        self.requests: list[dict] = []  # every request, verified or not
        self.accepted: list[dict] = []  # requests answered 2xx with a valid signature
        self.rejected_signatures = 0
        self.secret = SECRET
        self.verify_signatures = True
        self.respond: Callable[[dict], tuple[int, dict, bytes]] = lambda req: (200, {}, b"ok")
        self.lock = threading.Lock()
        self.url = ""

    def ids(self) -> list[str]:
        return [r["headers"].get("webhook-id", "") for r in self.accepted]

    def bodies(self, path: str | None = None) -> list:
        return [r["json"] for r in self.accepted if path is None or r["path"] == path]


def _handler(rec: Receiver):
    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def _handle(self):
            n = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(n)
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                parsed = json.loads(body) if body else None
            except ValueError:
                parsed = None
            req = {"path": self.path, "method": self.command, "headers": headers, "body": body, "json": parsed,
                   "at": rec.clock.now()}
            signed_ok = True
            if rec.verify_signatures and "webhook-signature" in headers:
                try:
                    verify(rec.secret, headers, body, now=rec.clock.now())
                except SignatureError as exc:
                    signed_ok = False
                    req["signature_error"] = str(exc)
            status, extra_headers, out = (401, {}, b"bad signature") if not signed_ok else rec.respond(req)
            req["status"] = status
            with rec.lock:
                rec.requests.append(req)
                if not signed_ok:
                    rec.rejected_signatures += 1
                elif 200 <= status < 300:
                    rec.accepted.append(req)
            if status == 0:  # script asks for a hang: never answer (the client times out)
                threading.Event().wait(5)
                return
            self.send_response(status)
            for k, v in extra_headers.items():
                self.send_header(k, v)
            self.send_header("content-length", str(len(out)))
            self.end_headers()
            try:
                self.wfile.write(out)
            except (BrokenPipeError, ConnectionResetError):
                pass

        do_POST = _handle
        do_PUT = _handle
        do_GET = _handle

    return H


@pytest.fixture
def clock():
    # Start near today: the store's TTLs (alert_events 400 days) drop rows stamped in 2023 on merge.
    return SleepCountingClock(start=float(int(time.time())))


@pytest.fixture
def receiver(clock):
    rec = Receiver(clock)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(rec))
    server.daemon_threads = True
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    rec.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield rec
    server.shutdown()
    server.server_close()


async def run_for(engine, clock, seconds: float, feed=None, step: float = 1.0) -> None:
    """Advance the virtual clock second by second: feed metrics, tick the engine, let deliveries settle."""
    n = int(round(seconds / step))
    for _ in range(n):
        clock.advance(step)
        if feed is not None:
            feed(clock.now())
        await engine.tick()
        await engine.settle()
