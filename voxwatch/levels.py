"""The degradation level, carried to pipelines Voxwatch does not run.

Voxwatch's alerts ask the degradation controller of `voxwatch serve` for a level; a pipeline of
yours (Pipecat, LiveKit Agents, ...) learns it one of two ways, both fed from the controller's change
listener:

- push: `LevelWebhook` POSTs every change to a configured URL, signed like the pager webhooks
  (Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature`), retried with backoff,
  and each attempt is a row of `notifications` (integration `action`);
- pull: `LevelFeed` versions the level so `GET /v1/degradation/level` answers with an `ETag` and,
  given `If-None-Match` and `wait`, holds the request until the level changes (long-poll).

Configured from the environment like the pager receivers: `VOXWATCH_ACTION_URL` and
`VOXWATCH_ACTION_SECRET`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import threading
import time
import uuid

import httpx

from alerts.receivers.signing import sign

log = logging.getLogger(__name__)


class LevelFeed:
    """The controller's state with a version: an ETag for cheap polling, and waiters woken on a change."""

    def __init__(self, controller, telemetry=None) -> None:
        self.controller = controller
        self.version = 1
        self._lock = threading.Lock()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._listeners: list = []
        self._watchers = telemetry["voxwatch_degradation_level_watchers"] \
            if telemetry is not None and "voxwatch_degradation_level_watchers" in telemetry else None
        controller.subscribe(self._changed)

    def subscribe(self, listener) -> None:
        """`listener(version, state)` after every change (the webhook sender is one)."""
        self._listeners.append(listener)

    @property
    def etag(self) -> str:
        return f'"level-{self.version}"'

    def state(self) -> dict:
        return {**self.controller.state(), "version": self.version}

    def _changed(self, previous, policy) -> None:
        with self._lock:
            self.version += 1
            version, waiters = self.version, list(self._waiters)
        for loop, ev in waiters:
            loop.call_soon_threadsafe(ev.set)
        state = self.state()
        state["previous_level"] = previous.level.name
        for listener in self._listeners:
            try:
                listener(version, state)
            except Exception:  # the level is decided; a failing listener must not undo it
                log.exception("level listener failed")

    async def wait_change(self, seen_etag: str | None, timeout: float) -> bool:
        """Wait up to `timeout` s while the ETag is still `seen_etag`; True when it changed."""
        if seen_etag != self.etag or timeout <= 0:
            return seen_etag != self.etag
        ev = asyncio.Event()
        item = (asyncio.get_running_loop(), ev)
        with self._lock:
            self._waiters.add(item)
        if self._watchers is not None:
            self._watchers.inc()
        try:
            if seen_etag != self.etag:  # changed between the check and the registration
                return True
            try:
                await asyncio.wait_for(ev.wait(), timeout)
            except TimeoutError:
                pass
            return seen_etag != self.etag
        finally:
            with self._lock:
                self._waiters.discard(item)
            if self._watchers is not None:
                self._watchers.dec()


class LevelWebhook:
    """POSTs level changes to one URL, signed, in order, on a thread of its own, retried with backoff."""

    def __init__(self, url: str, secret: str = "", *, sink=None, telemetry=None, clock=None,
                 attempts: int = 5, timeout: float = 5.0, backoff: float = 0.5) -> None:
        self.url, self.secret = url, secret
        self.sink, self.clock = sink, clock
        self.attempts, self.timeout, self.backoff = attempts, timeout, backoff
        self._m = telemetry["voxwatch_degradation_level_deliveries_total"] \
            if telemetry is not None and "voxwatch_degradation_level_deliveries_total" in telemetry else None
        self._queue: queue.Queue = queue.Queue(maxsize=1000)
        self._thread = threading.Thread(target=self._run, name="voxwatch-level-webhook", daemon=True)
        self._thread.start()

    @classmethod
    def from_env(cls, feed: LevelFeed, **kw) -> LevelWebhook | None:
        url = os.environ.get("VOXWATCH_ACTION_URL", "")
        if not url:
            return None
        hook = cls(url, os.environ.get("VOXWATCH_ACTION_SECRET", ""), **kw)
        feed.subscribe(hook)
        return hook

    def __call__(self, version: int, state: dict) -> None:
        try:
            self._queue.put_nowait((version, state))
        except queue.Full:
            log.error("level webhook: queue full, level change %s not sent", version)

    def close(self, timeout: float = 5.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        with httpx.Client(timeout=self.timeout) as client:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                self._deliver(client, *item)

    def _deliver(self, client: httpx.Client, version: int, state: dict) -> None:
        body = json.dumps({"type": "degradation.level", "version": version, **state}, sort_keys=True).encode()
        msg_id = f"level-{version}-{uuid.uuid4().hex[:12]}"  # the same id on every retry: receivers deduplicate
        delay = self.backoff
        for attempt in range(1, self.attempts + 1):
            ts = int(time.time())
            headers = {"content-type": "application/json"}
            if self.secret:
                headers.update(sign(self.secret, msg_id, ts, body))
            else:
                headers.update({"webhook-id": msg_id, "webhook-timestamp": str(ts)})
            status, error = 0, ""
            try:
                r = client.post(self.url, content=body, headers=headers)
                status = r.status_code
                ok = 200 <= status < 300
                if not ok:
                    error = r.text[:200]
            except httpx.HTTPError as exc:
                ok, error = False, str(exc)[:200]
            last = ok or attempt == self.attempts or (400 <= status < 500 and status not in (408, 429))
            self._record(msg_id, attempt, "delivered" if ok else ("failed" if last else "retrying"), status, error, body)
            if last:
                if self._m is not None:
                    self._m.labels(result="delivered" if ok else "failed").inc()
                return
            time.sleep(delay)
            delay = min(delay * 2, 30.0)

    def _record(self, msg_id, attempt, result, status, error, body) -> None:
        if self.sink is None:
            return
        now = self.clock.now() if self.clock is not None else time.time()
        self.sink.write("notifications", [{
            "ts_ms": int(now * 1000), "notification_id": msg_id, "receiver": "pipeline-level",
            "integration": "action", "group_key": "degradation", "status": "firing", "attempt": attempt,
            "result": result, "http_status": status, "error": error, "alert_fingerprints": [],
            "payload": body.decode(),
        }])
