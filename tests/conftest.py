"""Shared fixtures: stores on both backends, and the ClickHouse server processes the tests start.

chdb allows ONE data folder per process, so every chdb store in a test run lives in one folder
(`chdb_root`) and each test gets its own database inside it (the `store` fixture).
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.clickhouse_server import ClickHouseServer, free_port, server_binary

_db_counter = itertools.count()
OUTPUT_DIR = Path(__file__).resolve().parent.parent / "test-output"


def _unique_db(prefix: str) -> str:
    return f"{prefix}_{os.getpid()}_{next(_db_counter)}"


@pytest.fixture(scope="session")
def chdb_root():
    path = Path(tempfile.mkdtemp(prefix="voxwatch-chdb-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def store_url(chdb_root) -> str:
    """A URL for a fresh embedded database (for code that opens the store itself)."""
    return f"chdb://{chdb_root}?database={_unique_db('t')}"


@pytest.fixture
def store(store_url):
    """A fresh, migrated embedded store (its own database in the process's chdb folder)."""
    from telemetry.store import open_store

    s = open_store(store_url)
    yield s
    try:
        s.drop_database()
    finally:
        s.close()


@pytest.fixture
def output_dir(request) -> Path:
    """A folder kept after the run (test-output/<test name>) for screenshots and reports."""
    d = OUTPUT_DIR / request.node.name.replace("/", "_").replace("[", "_").replace("]", "")
    d.mkdir(parents=True, exist_ok=True)
    return d


def _need_server():
    if server_binary() is None:
        pytest.fail(
            "clickhouse-server is not installed: run `make test` (it installs it) or "
            "`scripts/bootstrap.sh clickhouse-server clickhouse-client`"
        )


@pytest.fixture(scope="session")
def clickhouse_server(tmp_path_factory):
    """Debian's clickhouse-server (18.16) as a user process with its own config, ports and folder."""
    _need_server()
    server = ClickHouseServer(tmp_path_factory.mktemp("clickhouse-single"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def clickhouse_cluster(tmp_path_factory):
    """Two server processes forming the two-shard cluster `voxwatch_two_shards` (remote_servers)."""
    _need_server()
    ports = [free_port(), free_port()]
    clusters = {"voxwatch_two_shards": ports}
    servers = [
        ClickHouseServer(tmp_path_factory.mktemp(f"clickhouse-shard{i + 1}"), clusters=clusters, tcp_port=p)
        for i, p in enumerate(ports)
    ]
    for s in servers:
        s.start()
    yield servers
    for s in servers:
        s.stop()


@pytest.fixture
def server_store(clickhouse_server):
    from telemetry.store import open_store

    url = f"clickhouse://default@127.0.0.1:{clickhouse_server.tcp_port}/{_unique_db('t')}"
    s = open_store(url)
    yield s
    s._execute(f"DROP DATABASE IF EXISTS {s.database}")
    s.close()


@pytest.fixture
def cluster_store(clickhouse_cluster):
    from telemetry.store import open_store

    db = _unique_db("c")
    entry = clickhouse_cluster[0]
    s = open_store(f"clickhouse://default@127.0.0.1:{entry.tcp_port}/{db}?cluster=voxwatch_two_shards")
    yield s
    for node in clickhouse_cluster:
        from clickhouse_driver import Client

        Client("127.0.0.1", port=node.tcp_port).execute(f"DROP DATABASE IF EXISTS {db}")
    s.close()


@pytest.fixture(params=["chdb", "server", "cluster"])
def any_store(request):
    """The same store suite on every backend: embedded, a single server, a two-shard cluster."""
    return request.getfixturevalue({"chdb": "store", "server": "server_store", "cluster": "cluster_store"}[request.param])
