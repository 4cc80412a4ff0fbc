"""The degradation level for pipelines Voxwatch does not run: the pull endpoint (ETag, long-poll) and
the push receiver (signed POST to a configured URL), both fed by the controller the alert actions drive."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import pytest
from fastapi import FastAPI, Request, Response

from alerts.receivers.signing import verify
from tests.ingest.conftest import ADMIN, INGEST, READ, auth, served_app, stored

SECRET = "whsec_" + "c2VjcmV0LWZvci10aGUtbGV2ZWwtd2ViaG9vaw=="


def test_pull_answers_an_etag_and_304_while_unchanged(service):
    url = f"{service.url}/v1/degradation/level"
    r = httpx.get(url, headers=auth(INGEST))
    assert r.status_code == 200 and r.json()["level"] == "NORMAL"
    etag = r.headers["etag"]
    r2 = httpx.get(url, headers={**auth(INGEST), "If-None-Match": etag})
    assert r2.status_code == 304 and r2.headers["etag"] == etag
    assert httpx.get(url, headers=auth(READ)).status_code == 200  # an operator's read token may look too
    assert httpx.get(url).status_code == 401


def test_long_poll_returns_when_the_level_changes(service):
    url = f"{service.url}/v1/degradation/level"
    etag = httpx.get(url, headers=auth(INGEST)).headers["etag"]
    result = {}

    def poll():
        t0 = time.monotonic()
        r = httpx.get(url, params={"wait": 30}, headers={**auth(INGEST), "If-None-Match": etag}, timeout=40)
        result.update(status=r.status_code, body=r.json(), etag=r.headers["etag"], waited=time.monotonic() - t0)

    t = threading.Thread(target=poll)
    t.start()
    deadline = time.monotonic() + 10
    while service.telemetry.registry.get_sample_value("voxwatch_degradation_level_watchers", {}) != 1:
        assert time.monotonic() < deadline, "the poll never started waiting"
        time.sleep(0.02)
    r = httpx.put(f"{service.url}/v1/degradation", json={"level": "HUMAN_HANDOFF", "reason": "test"}, headers=auth(ADMIN))
    assert r.json()["phase"] == "applied"
    t.join(20)
    assert result["status"] == 200 and result["body"]["level"] == "HUMAN_HANDOFF" and result["etag"] != etag
    assert result["waited"] < 25  # answered by the change, not by the wait running out


def test_a_long_poll_with_no_change_ends_in_304(service):
    url = f"{service.url}/v1/degradation/level"
    etag = httpx.get(url, headers=auth(INGEST)).headers["etag"]
    r = httpx.get(url, params={"wait": 0.3}, headers={**auth(INGEST), "If-None-Match": etag})
    assert r.status_code == 304


@pytest.fixture
def receiver():
    """A pipeline's own webhook endpoint over real HTTP: verifies the signature, answers 500 once."""
    app = FastAPI()
    app.state.got, app.state.calls = [], 0

    @app.post("/voxwatch/level")
    async def level(request: Request):
        body = await request.body()
        app.state.calls += 1
        if app.state.calls == 1:
            return Response(status_code=500)  # fails once: the sender must retry
        msg_id = verify(SECRET, request.headers, body, now=time.time())
        app.state.got.append((msg_id, json.loads(body)))
        return {"ok": True}

    with served_app(app, "/voxwatch/level") as url:
        app.state.url = url
        yield app


@pytest.fixture
def pushing_service(receiver, monkeypatch, request):
    monkeypatch.setenv("VOXWATCH_ACTION_URL", receiver.state.url)
    monkeypatch.setenv("VOXWATCH_ACTION_SECRET", SECRET)
    return request.getfixturevalue("service")


def test_level_changes_are_pushed_signed_retried_and_recorded(pushing_service, receiver):
    service = pushing_service
    hook = service.extras["level_webhook"]
    hook.backoff = 0.05
    for level in ("CACHED_RESPONSES", "NORMAL"):
        assert httpx.put(f"{service.url}/v1/degradation", json={"level": level, "reason": "r", "rule": "LlmSlow"},
                         headers=auth(ADMIN)).status_code == 200
    deadline = time.monotonic() + 20
    while len(receiver.state.got) < 2:
        assert time.monotonic() < deadline, receiver.state.got
        time.sleep(0.05)
    (id1, first), (id2, second) = receiver.state.got
    assert first["type"] == "degradation.level" and first["level"] == "CACHED_RESPONSES"
    assert first["previous_level"] == "NORMAL" and first["rule"] == "LlmSlow"
    assert second["level"] == "NORMAL" and second["version"] > first["version"] and id1 != id2
    rows = stored(service, "SELECT notification_id, attempt, result, http_status FROM notifications "
                           "WHERE integration = 'action' ORDER BY ts_ms, attempt")
    assert [(r[1], r[2], r[3]) for r in rows if r[0] == id1] == [(1, "retrying", 500), (2, "delivered", 200)]
    assert [(r[1], r[2]) for r in rows if r[0] == id2] == [(1, "delivered")]
    assert service.telemetry.registry.get_sample_value("voxwatch_degradation_level_deliveries_total", {"result": "delivered"}) == 2


def test_feed_wait_change_sees_a_change_made_from_another_thread():
    """The feed wakes waiters of any event loop when the controller changes from any thread."""
    from pipeline.degradation import DegradationController
    from telemetry.clock import WallClock
    from voxwatch.levels import LevelFeed

    ctl = DegradationController(WallClock())
    feed = LevelFeed(ctl)

    async def go():
        etag = feed.etag
        threading.Timer(0.1, lambda: ctl.request("CACHED_RESPONSES", "t")).start()
        return await feed.wait_change(etag, 10.0)

    assert asyncio.run(go()) is True and feed.state()["level"] == "CACHED_RESPONSES"
