"""The ClickHouse store: one interface, two backends chosen by URL.

    chdb:///path/to/dir[?database=NAME]                      embedded (default ./var/voxwatch)
    clickhouse://user:password@host:port/database[?cluster=NAME]   a server over the native protocol
"""

from __future__ import annotations

import os
from urllib.parse import parse_qs, unquote, urlsplit

from telemetry.store.base import ReadOnlyViolation, Store, StoreError, StoreUnavailable
from telemetry.store.dialect import LEGACY, MODERN, Dialect, QueryParameterError
from telemetry.store.schema import SCHEMA_VERSION, TABLES, TABLES_BY_NAME, Column, Table

DEFAULT_STORE_URL = "chdb://./var/voxwatch"

__all__ = [
    "DEFAULT_STORE_URL", "LEGACY", "MODERN", "SCHEMA_VERSION", "TABLES", "TABLES_BY_NAME", "Column", "Dialect",
    "QueryParameterError", "ReadOnlyViolation", "Store", "StoreError", "StoreUnavailable", "Table",
    "InvalidStoreURL", "open_store", "store_url_from_env",
]


class InvalidStoreURL(StoreError, ValueError):
    """The store URL cannot be understood; the message says which part is wrong."""


def store_url_from_env(explicit: str | None = None) -> str:
    return explicit or os.environ.get("VOXWATCH_STORE") or DEFAULT_STORE_URL


def open_store(url: str | None = None, migrate: bool = True) -> Store:
    """Open (and by default create or upgrade) the store named by `url`."""
    url = store_url_from_env(url)
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    if parts.scheme == "chdb":
        path = unquote(url[len("chdb://") :].split("?", 1)[0])
        if not path:
            raise InvalidStoreURL(f"invalid store URL {url!r}: chdb:// needs a folder, e.g. chdb:///var/lib/voxwatch")
        unknown = set(query) - {"database"}
        if unknown:
            raise InvalidStoreURL(f"invalid store URL {url!r}: unknown option(s) {', '.join(sorted(unknown))}")
        from telemetry.store.chdb_backend import ChdbStore

        try:
            store: Store = ChdbStore(path, database=_identifier(query.get("database", "voxwatch"), url))
        except OSError as exc:  # a folder that cannot be one (a file, /proc, no permission): one line, no traceback
            why = "it is a file, not a folder" if os.path.isfile(path) else (exc.strerror or str(exc))
            raise InvalidStoreURL(f"invalid store URL {url!r}: the folder {path!r} cannot hold a store ({why})") from None
    elif parts.scheme in ("clickhouse", "clickhouse+native"):
        if not parts.hostname:
            raise InvalidStoreURL(f"invalid store URL {url!r}: clickhouse:// needs a host, e.g. clickhouse://default@127.0.0.1:9000/voxwatch")
        try:
            port = parts.port or 9000
        except ValueError:
            raise InvalidStoreURL(f"invalid store URL {url!r}: the port is not a number") from None
        unknown = set(query) - {"cluster", "connect_timeout"}
        if unknown:
            raise InvalidStoreURL(f"invalid store URL {url!r}: unknown option(s) {', '.join(sorted(unknown))}")
        from telemetry.store.server_backend import ServerStore

        store = ServerStore(
            host=parts.hostname,
            port=port,
            user=unquote(parts.username or "default"),
            password=unquote(parts.password or ""),
            database=_identifier(parts.path.lstrip("/") or "voxwatch", url),
            cluster=_identifier(query["cluster"], url) if query.get("cluster") else None,
            connect_timeout=float(query.get("connect_timeout", 3)),
        )
    else:
        raise InvalidStoreURL(
            f"invalid store URL {url!r}: the scheme must be chdb:// (embedded) or clickhouse:// (a server)"
        )
    if migrate:
        try:
            store.migrate()
        except Exception:
            store.close()
            raise
    return store


def _identifier(name: str, url: str) -> str:
    if not name.replace("_", "").isalnum() or name[0].isdigit():
        raise InvalidStoreURL(f"invalid store URL {url!r}: {name!r} is not a valid database or cluster name")
    return name
