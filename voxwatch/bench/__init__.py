"""Benchmarks: one module per `voxwatch bench NAME`."""

from __future__ import annotations

import os
import tempfile
from urllib.parse import urlsplit, urlunsplit


def bench_store_url(given: str | None, bench: str) -> tuple[str, str | None]:
    """The store URL a bench writes to, and the temporary chdb folder to remove afterwards (None otherwise).

    On a server (`clickhouse://...`) the bench gets a database of its own, dropped afterwards, so it
    never touches real data; a given `chdb://` folder is used as it is; none gives a temporary folder."""
    if given and given.startswith("clickhouse"):
        parts = urlsplit(given)
        return urlunsplit(parts._replace(path=f"/voxwatch_bench_{bench}_{os.getpid()}")), None
    if given:
        return given, None
    folder = tempfile.mkdtemp(prefix=f"voxwatch-bench-{bench}-")
    return f"chdb://{folder}", folder


def drop_bench_database(store, url: str) -> None:
    """Drop the database `bench_store_url` made on a server (a chdb folder is removed by its caller)."""
    if url.startswith("clickhouse"):
        store._execute(f"DROP DATABASE IF EXISTS {store.database}")
