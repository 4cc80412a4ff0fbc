"""Admission control for analysts' SQL over real HTTP (uvicorn): a bounded queue answered with 429 and
Retry-After past it, a time limit that counts the wait, a per-token limit, and a query whose client
went away cancelled in the engine, not left running.

"While" and "before" are checked through the engine and the gate's own state, never by timing."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from urllib.parse import urlsplit

import httpx
import pytest

from tests.dashboards.conftest import ADMIN_TOKEN, READ_TOKEN, settings

# Passes the SQL guard (the store's own table) and runs for hours over 3,000 calls: it ends only by
# being cancelled.
ENDLESS = ("SELECT count() FROM calls AS a, calls AS b, calls AS c "
           "WHERE NOT ignore(sipHash64(a.call_id, b.call_id, c.call_id))")


@pytest.fixture
def service(store):
    from voxwatch.commands.serve import start_api
    from voxwatch.config import QueryLimits
    from voxwatch.context import AppContext

    s = settings()
    s.limits = QueryLimits(sql_max_concurrent=1, sql_max_per_token=1, sql_max_queue=1, sql_max_seconds=60)
    ids = [f"call-{i}" for i in range(3000)]
    store.insert("calls", {"call_id": ids, "started_ms": [1] * 3000, "ended_ms": [2] * 3000})
    ctx = AppContext(store=store, settings=s)
    running = start_api(ctx)
    yield running.url, ctx, store
    running.stop()


def _open_query(url: str, token: str, sql: str, max_seconds: float | None = None) -> socket.socket:
    """POST /api/v1/sql on a raw socket, left open: closing it is the client going away."""
    parts = urlsplit(url)
    body = json.dumps({"sql": sql, **({"max_seconds": max_seconds} if max_seconds else {})}).encode()
    sock = socket.create_connection((parts.hostname, parts.port))
    sock.sendall(b"POST /api/v1/sql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 + f"Authorization: Bearer {token}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    return sock


def _analyst_queries_running(store) -> int:
    return int(store.with_lane("control").scalar(
        "SELECT count() FROM system.processes WHERE position(query, 'voxwatch-query:') > 0 "
        "AND position(query, 'system.processes') = 0"))


def _wait_for(cond, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.05)


def _gate(ctx):
    return ctx.extras["analyst_runner"].gate


def test_a_full_queue_is_429_with_retry_after_and_a_vanished_client_is_cancelled(service):
    url, ctx, store = service
    first = _open_query(url, READ_TOKEN, ENDLESS)
    _wait_for(lambda: _analyst_queries_running(store) == 1, "the first query runs")
    waiting: dict = {}
    second = threading.Thread(target=lambda: waiting.update(r=httpx.post(
        url + "/api/v1/sql", json={"sql": "SELECT 41 + 1 AS answer"},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=60)))
    second.start()
    _wait_for(lambda: _gate(ctx).stats.queued == 1, "the second query waits in the queue")
    r = httpx.post(url + "/api/v1/sql", json={"sql": "SELECT 1"}, headers={"Authorization": f"Bearer {READ_TOKEN}"})
    assert r.status_code == 429 and "try again later" in r.json()["detail"]
    assert int(r.headers["Retry-After"]) >= 1
    # the dashboards' reads do not wait for the analyst lane
    assert httpx.get(url + "/api/v1/calls?limit=5", headers={"Authorization": f"Bearer {READ_TOKEN}"}).status_code == 200
    assert _analyst_queries_running(store) == 1
    first.close()  # the analyst gives up: the engine stops the query, the queued one gets its turn
    second.join(60)
    assert waiting["r"].status_code == 200 and waiting["r"].json()["rows"] == [[42]]
    _wait_for(lambda: _analyst_queries_running(store) == 0, "the abandoned query is cancelled")
    assert _gate(ctx).stats.running == {}


def test_the_time_limit_counts_the_wait_for_a_turn(service):
    url, ctx, store = service
    first = _open_query(url, READ_TOKEN, ENDLESS)
    try:
        _wait_for(lambda: _analyst_queries_running(store) == 1, "the first query runs")
        r = httpx.post(url + "/api/v1/sql", json={"sql": "SELECT 1", "max_seconds": 1},
                       headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=60)
        assert r.status_code == 429 and "whole time limit" in r.json()["detail"]
        assert int(r.headers["Retry-After"]) >= 1
        assert _gate(ctx).stats.refused_timeout == 1
    finally:
        first.close()
    _wait_for(lambda: _analyst_queries_running(store) == 0, "the abandoned query is cancelled")


def test_one_token_waits_for_its_own_turn_while_another_token_runs():
    from voxwatch.api.admission import AdmissionGate

    gate = AdmissionGate(max_total=2, max_per_token=1, max_queue=4)
    order = []

    async def run(token, name, hold=None):
        async with gate.turn(token, 30):
            order.append(f"{name} start")
            if hold is not None:
                await hold.wait()
        order.append(f"{name} end")

    async def scenario():
        release_a = asyncio.Event()
        a1 = asyncio.create_task(run("alice", "a1", release_a))
        await asyncio.sleep(0)
        a2 = asyncio.create_task(run("alice", "a2"))  # alice is at her limit: a2 queues
        await asyncio.sleep(0)
        await run("bob", "b1")  # there is room for bob: he passes alice's a2
        assert order == ["a1 start", "b1 start", "b1 end"] and gate.stats.running == {"alice": 1}
        release_a.set()
        await asyncio.gather(a1, a2)
        assert order.index("a2 start") > order.index("a1 end") and gate.stats.running == {}

    asyncio.run(scenario())
