"""Exactly-once through a crash: the writing process is SIGKILLed after the store accepted a spooled
batch and before its spool file was deleted; a fresh process replays the spool. With insert tokens
(the batch's id) every call is stored once; the control run without tokens shows the crash really
landed between the insert and the deletion (that batch arrives twice). The same on a single 18.16
server, where the batch ledger stands in for insert tokens."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CALLS = 1000


def _child(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tests.telemetry.sink_crash_child", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def _replayed_after_sigkill(url: str, spool: Path, dedup: bool):
    extra = [] if dedup else ["--no-dedup"]
    crash = _child("crash", url, str(spool), str(CALLS), *extra)
    assert crash.returncode == -signal.SIGKILL, crash.stdout + crash.stderr
    assert len(list(spool.glob("*.arrow"))) == CALLS // 100  # the stored batch's file is still there
    recover = _child("recover", url, str(spool), str(CALLS), *extra)
    assert recover.returncode == 0, recover.stderr
    got = json.loads(recover.stdout.strip().splitlines()[-1])
    assert got["spooled_left"] == 0 and got["ids"] == CALLS
    if dedup:
        assert got["rows"] == CALLS and got["checksum"] == got["want_checksum"]
    else:
        assert got["rows"] == CALLS + 100  # the first batch, stored before the kill, came again


@pytest.mark.parametrize("dedup", [True, False], ids=["with-tokens", "control-without-tokens"])
def test_a_batch_replayed_after_sigkill_is_stored_once(tmp_path, dedup):
    _replayed_after_sigkill(f"chdb://{tmp_path / 'store'}", tmp_path / "spool", dedup)


@pytest.mark.server
@pytest.mark.parametrize("dedup", [True, False], ids=["with-batch-ledger", "control-without-ledger"])
def test_on_the_18_16_server_a_replayed_batch_is_stored_once(clickhouse_server, tmp_path, dedup):
    """18.16 has no insert tokens: the batch ledger (server_backend.py) recognises the stored batch."""
    from clickhouse_driver import Client

    db = f"exactly_once_{uuid.uuid4().hex[:12]}"
    try:
        _replayed_after_sigkill(f"clickhouse://default@127.0.0.1:{clickhouse_server.tcp_port}/{db}",
                                tmp_path / "spool", dedup)
    finally:
        Client("127.0.0.1", port=clickhouse_server.tcp_port).execute(f"DROP DATABASE IF EXISTS {db}")


@pytest.mark.server
@pytest.mark.parametrize("dedup", [True, False], ids=["with-shard-ledgers", "control-without-ledger"])
def test_on_an_18_16_cluster_a_replayed_batch_is_stored_once(clickhouse_cluster, tmp_path, dedup):
    """On the two-shard cluster each shard keeps the ledger of the batch parts it stored; the parts are
    split as the Distributed table splits rows (by the shard key), so a call's rows stay on its shard."""
    from clickhouse_driver import Client

    db = f"exactly_once_{uuid.uuid4().hex[:12]}"
    nodes = [Client("127.0.0.1", port=node.tcp_port) for node in clickhouse_cluster]
    try:
        _replayed_after_sigkill(f"clickhouse://default@127.0.0.1:{clickhouse_cluster[0].tcp_port}/{db}"
                                "?cluster=voxwatch_two_shards", tmp_path / "spool", dedup)
        if dedup:
            # The Distributed table's own placement of new ids (the shard key modulo the two shards'
            # weights) is where the ledgered parts went too.
            nodes[0].execute(f"INSERT INTO {db}.calls (call_id, started_ms, ended_ms) VALUES",
                             [(f"direct-{i}", 1, 2) for i in range(200)], settings={"insert_distributed_sync": 1})
            for i, node in enumerate(nodes):
                on_shard = node.execute(f"SELECT countIf(call_id LIKE 'call-%'), countIf(call_id LIKE 'direct-%'), "
                                        f"countIf(cityHash64(call_id) % 2 != {i}) FROM {db}.calls_local")[0]
                assert on_shard[0] > 0 and on_shard[1] > 0 and on_shard[2] == 0, (i, on_shard)
    finally:
        for node in nodes:
            node.execute(f"DROP DATABASE IF EXISTS {db}")


@pytest.mark.server
def test_on_the_cluster_a_batch_stored_on_one_shard_only_is_completed_on_the_other(cluster_store):
    """A writer that died after one shard stored its part of a batch and before the other got its own:
    the replayed batch adds only the missing shard's rows; replayed again, it adds nothing."""
    import numpy as np

    ids = [f"part-{i}" for i in range(200)]
    data = {"call_id": ids, "started_ms": [1] * len(ids), "ended_ms": [2] * len(ids)}
    tbl = cluster_store.batch("calls", data)
    nodes = cluster_store._shard_nodes()
    shard = cluster_store._shard_of_rows("calls", tbl, "batch-1", nodes)
    first = tbl.take(np.flatnonzero(shard == 0))
    assert 0 < first.num_rows < len(ids)
    nodes[0]._insert_ledgered_here("calls", first, "batch-1", replay=False)
    for _ in range(2):
        cluster_store.insert("calls", data, dedup_token="batch-1", replay=True)
        assert cluster_store.query_rows("SELECT count(), uniqExact(call_id) FROM calls")[0] == (len(ids), len(ids))
