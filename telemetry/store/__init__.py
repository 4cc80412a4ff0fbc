"""The ClickHouse store: one interface, two backends chosen by URL.

    chdb:///path/to/dir[?database=NAME]                      embedded (default ./var/voxwatch)
    clickhouse://user:password@host:port/database[?cluster=NAME]   a server over the native protocol
"""

from __future__ import annotations

import os
import re
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

from telemetry.store.base import ReadOnlyViolation, Store, StoreError, StoreUnavailable
from telemetry.store.dialect import LEGACY, MODERN, Dialect, QueryParameterError
from telemetry.store.schema import SCHEMA_VERSION, TABLES, TABLES_BY_NAME, Column, Table

DEFAULT_STORE_URL = "chdb://./var/voxwatch"

__all__ = [
    "DEFAULT_STORE_URL", "LEGACY", "MODERN", "SCHEMA_VERSION", "TABLES", "TABLES_BY_NAME", "Column", "Dialect",
    "QueryParameterError", "ReadOnlyViolation", "Store", "StoreError", "StoreUnavailable", "Table",
    "InvalidStoreURL", "open_store", "redact_url", "store_url_from_env",
]


class InvalidStoreURL(StoreError, ValueError):
    """The store URL cannot be understood; the message says which part is wrong."""


def redact_url(url: str) -> str:
    """The store URL with its password replaced by ***: safe for logs, errors and start-up lines."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return re.sub(r"(//[^:/@]*:)[^@]*@", r"\1***@", url)


def store_url_from_env(explicit: str | None = None) -> str:
    return explicit or os.environ.get("VOXWATCH_STORE") or DEFAULT_STORE_URL


def open_store(url: str | None = None, migrate: bool = True) -> Store:
    """Open (and by default create or upgrade) the store named by `url`."""
    url = store_url_from_env(url)
    shown = redact_url(url)
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise InvalidStoreURL(f"invalid store URL {shown!r}: {exc}") from None
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    if parts.scheme == "chdb":
        path = unquote(url[len("chdb://") :].split("?", 1)[0])
        if not path:
            raise InvalidStoreURL(f"invalid store URL {shown!r}: chdb:// needs a folder, e.g. chdb:///var/lib/voxwatch")
        unknown = set(query) - {"database"}
        if unknown:
            raise InvalidStoreURL(f"invalid store URL {shown!r}: unknown option(s) {', '.join(sorted(unknown))}")
        from telemetry.store.chdb_backend import ChdbStore

        store: Store = ChdbStore(path, database=_identifier(query.get("database", "voxwatch"), shown))
    elif parts.scheme in ("clickhouse", "clickhouse+native"):
        if not parts.hostname:
            raise InvalidStoreURL(f"invalid store URL {shown!r}: clickhouse:// needs a host, e.g. clickhouse://default@127.0.0.1:9000/voxwatch")
        try:
            port = parts.port or 9000
        except ValueError:
            raise InvalidStoreURL(f"invalid store URL {shown!r}: the port is not a number") from None
        unknown = set(query) - {"cluster", "connect_timeout"}
        if unknown:
            raise InvalidStoreURL(f"invalid store URL {shown!r}: unknown option(s) {', '.join(sorted(unknown))}")
        from telemetry.store.server_backend import ServerStore

        store = ServerStore(
            host=parts.hostname,
            port=port,
            user=unquote(parts.username or "default"),
            password=unquote(parts.password or ""),
            database=_identifier(parts.path.lstrip("/") or "voxwatch", shown),
            cluster=_identifier(query["cluster"], shown) if query.get("cluster") else None,
            connect_timeout=float(query.get("connect_timeout", 3)),
        )
    else:
        raise InvalidStoreURL(
            f"invalid store URL {shown!r}: the scheme must be chdb:// (embedded) or clickhouse:// (a server)"
        )
    if migrate:
        try:
            store.migrate()
        except Exception:
            store.close()
            raise
    return store


def _identifier(name: str, shown: str) -> str:
    if not name.replace("_", "").isalnum() or name[0].isdigit():
        raise InvalidStoreURL(f"invalid store URL {shown!r}: {name!r} is not a valid database or cluster name")
    return name
