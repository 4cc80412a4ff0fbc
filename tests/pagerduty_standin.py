"""A local stand-in for PagerDuty's Events API v2 (a PagerDuty account cannot exist here), speaking
the documented protocol: `POST /v2/enqueue` with a JSON event; 202 `{"status": "success", "message":
"Event processed", "dedup_key"}` when accepted; 400 `{"status": "invalid event", "message", "errors"}`
for an invalid event (not to be retried); 429 when a routing key sends more than `rate_limit` events
per minute (retry later). It keeps PagerDuty's view: one incident per (routing key, dedup_key),
triggered, then resolved.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SEVERITIES = {"critical", "error", "warning", "info"}
ACTIONS = {"trigger", "acknowledge", "resolve"}


def problems(ev) -> list[str]:
    """What PagerDuty would call invalid in an event (the documented required fields and limits)."""
    if not isinstance(ev, dict):
        return ["event must be a JSON object"]
    out = []
    key = ev.get("routing_key")
    if not isinstance(key, str) or len(key) != 32:
        out.append("'routing_key' must be a 32 character integration key")
    action = ev.get("event_action")
    if action not in ACTIONS:
        out.append("'event_action' must be one of trigger, acknowledge, resolve")
    dk = ev.get("dedup_key")
    if dk is not None and (not isinstance(dk, str) or not 0 < len(dk) <= 255):
        out.append("'dedup_key' must be a string of at most 255 characters")
    if action in ("acknowledge", "resolve") and not dk:
        out.append("'dedup_key' is required for acknowledge and resolve")
    if action == "trigger":
        p = ev.get("payload")
        if not isinstance(p, dict):
            out.append("'payload' is required for trigger")
        else:
            if not isinstance(p.get("summary"), str) or not 0 < len(p["summary"]) <= 1024:
                out.append("'payload.summary' is required (at most 1024 characters)")
            if not isinstance(p.get("source"), str) or not p["source"]:
                out.append("'payload.source' is required")
            if p.get("severity") not in SEVERITIES:
                out.append("'payload.severity' must be one of critical, error, warning, info")
    return out


class PagerDutyStandIn:
    def __init__(self, rate_limit: int = 120, now=time.monotonic) -> None:
        self.rate_limit = rate_limit
        self.now = now  # a test on a virtual clock passes its clock.now
        self.events: list[dict] = []  # every request: {"status", "body"}
        self.incidents: dict[tuple[str, str], dict] = {}  # (routing key, dedup_key) -> {"status", "events"}
        self.fail_next: list[int] = []  # statuses to answer before judging (e.g. [500, 503])
        self._sent: dict[str, list[float]] = {}
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None
        self.url = ""

    def answer(self, path: str, raw: bytes) -> tuple[int, dict]:
        if path != "/v2/enqueue":
            return 404, {"status": "not found"}
        try:
            ev = json.loads(raw)
        except ValueError:
            return 400, {"status": "invalid event", "message": "Event object is invalid", "errors": ["not JSON"]}
        with self.lock:
            if self.fail_next:
                return self.fail_next.pop(0), {"status": "error"}
            errors = problems(ev)
            if errors:
                return 400, {"status": "invalid event", "message": "Event object is invalid", "errors": errors}
            now = self.now()
            window = [t for t in self._sent.get(ev["routing_key"], []) if now - t < 60]
            if len(window) >= self.rate_limit:
                return 429, {"status": "throttle event", "message": "Requests for this service are arriving too quickly."}
            self._sent[ev["routing_key"]] = [*window, now]
            dk = ev.get("dedup_key") or f"auto-{len(self.incidents)}"
            inc = self.incidents.setdefault((ev["routing_key"], dk), {"status": "triggered", "events": []})
            inc["events"].append(ev)
            inc["status"] = {"trigger": "triggered", "acknowledge": "acknowledged", "resolve": "resolved"}[ev["event_action"]]
            return 202, {"status": "success", "message": "Event processed", "dedup_key": dk}

    def start(self) -> PagerDutyStandIn:
        standin = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                status, body = standin.answer(self.path, raw)
                with standin.lock:
                    standin.events.append({"status": status, "body": raw})
                out = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
