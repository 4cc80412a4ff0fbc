"""Store lanes on both engines: the monitoring and dashboard lanes answer while an analyst's query is
still running, and a tagged query is cancelled by its tag.

No timing is asserted: "while" is checked by the engine itself (the analyst query is listed in
system.processes before and after the other lanes' queries return)."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from telemetry.store import StoreError

# Runs for minutes on any machine here: it ends only by being cancelled.
ENDLESS = "SELECT count() FROM system.numbers WHERE NOT ignore(sipHash64(number))"


@pytest.fixture(params=["chdb", pytest.param("server", marks=pytest.mark.server)])
def backend_store(request):
    return request.getfixturevalue({"chdb": "store", "server": "server_store"}[request.param])


def _running(store, tag: str) -> bool:
    df = store.with_lane("control").query(
        "SELECT count() AS n FROM system.processes WHERE position(query, {m:String}) > 0 "
        "AND position(query, 'system.processes') = 0", {"m": f"voxwatch-query:{tag} */"})
    return int(df["n"].iloc[0]) > 0


def _start_endless(store, tag: str):
    outcome: dict = {}

    def run():
        try:
            store.with_lane("analyst", query_tag=tag).query(ENDLESS)
            outcome["result"] = "finished"
        except StoreError as exc:
            outcome["error"] = str(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    deadline = time.monotonic() + 30
    while not _running(store, tag):
        assert t.is_alive(), outcome
        assert time.monotonic() < deadline, "the analyst query never started"
        time.sleep(0.05)
    return t, outcome


def test_other_lanes_answer_while_an_analyst_query_runs_and_cancel_stops_it(backend_store):
    store = backend_store
    store.insert("calls", {"call_id": ["c1", "c2"], "started_ms": [1, 2], "ended_ms": [3, 4]})
    tag = uuid.uuid4().hex
    thread, outcome = _start_endless(store, tag)
    # the sink's lane writes and the dashboard's lane reads, the analyst query still running
    store.with_lane("monitor").insert("calls", {"call_id": ["c3"], "started_ms": [5], "ended_ms": [6]})
    assert int(store.with_lane("dashboard").scalar("SELECT count() FROM calls")) == 3
    assert _running(store, tag) and thread.is_alive()
    assert store.cancel(tag) == 1
    thread.join(30)
    assert not thread.is_alive()
    assert "result" not in outcome and "cancel" in outcome["error"].lower()
    deadline = time.monotonic() + 30  # the server lists a killed query until its threads have stopped
    while _running(store, tag) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(store, tag)


def test_cancel_of_an_unknown_tag_stops_nothing(backend_store):
    assert backend_store.cancel(uuid.uuid4().hex) == 0
    with pytest.raises(StoreError, match="invalid query tag"):
        backend_store.cancel("x'; DROP TABLE calls")


def test_lanes_use_connections_of_their_own(backend_store):
    store = backend_store
    store.with_lane("monitor").scalar("SELECT 1")
    store.with_lane("dashboard").scalar("SELECT 1")
    stats = store.lane_stats()
    assert stats["monitor"]["created"] >= 1 and stats["dashboard"]["created"] >= 1
    with pytest.raises(StoreError, match="unknown store lane"):
        store.with_lane("vip")
