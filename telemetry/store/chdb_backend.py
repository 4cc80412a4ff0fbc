"""Embedded ClickHouse (chdb): the default store, data under a local folder, one process owns it."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping

import pandas as pd

from telemetry.store.base import Store, StoreError
from telemetry.store.dialect import MODERN, literal, placeholders
from telemetry.store.pool import LanePool, PoolClosed
from telemetry.store.schema import TABLES_BY_NAME

# chdb keeps one engine per process. The first store on a folder opens a session that owns it (the
# folder lock); stores of other databases in the same folder share that session. Queries run on
# connections of their own (telemetry/store/pool.py): chdb runs queries of different connections at
# once, one after another on one connection, and each connection keeps its own current database.
_SESSIONS: dict[str, tuple[object, int]] = {}
_SESSIONS_LOCK = threading.Lock()


def _settings_clause(settings: Mapping[str, object] | None) -> str:
    if not settings:
        return ""
    parts = []
    for k, v in settings.items():
        parts.append(f"{k} = {literal(v, 'String') if isinstance(v, str) else v}")
    return " SETTINGS " + ", ".join(parts)


class ChdbStore(Store):
    """chdb session on `path`; `database` lets tests keep separate databases inside one path."""

    dialect = MODERN

    def __init__(self, path: str, database: str = "voxwatch", lane_sizes: Mapping[str, int] | None = None) -> None:
        from chdb import session as chdb_session

        self.path = os.path.abspath(path)
        self.database = database
        self.url = f"chdb://{self.path}" + (f"?database={database}" if database != "voxwatch" else "")
        os.makedirs(self.path, exist_ok=True)
        with _SESSIONS_LOCK:
            sess, refs = _SESSIONS.get(self.path, (None, 0))
            if sess is None and _SESSIONS:
                other = next(iter(_SESSIONS))
                raise StoreError(
                    f"cannot open embedded store at {self.path}: this process already has {other} open, and "
                    "chdb allows one data folder per process (use separate databases in one folder: "
                    "chdb://FOLDER?database=NAME; in tests, the `store` fixture of tests/conftest.py)"
                )
            if sess is None:
                try:
                    sess = chdb_session.Session(self.path)
                except Exception as exc:  # chdb surfaces a lock held by another process as BAD_ARGUMENTS
                    raise StoreError(
                        f"cannot open embedded store at {self.path}: {_first_line(exc)} "
                        "(another process may own it: use its query API, or a clickhouse:// store)"
                    ) from exc
            _SESSIONS[self.path] = (sess, refs + 1)
        self._session = sess
        try:
            sess.query(f"CREATE DATABASE IF NOT EXISTS {database}")
        except Exception as exc:
            self._release_session()
            raise StoreError(f"chdb: {_first_line(exc)}") from exc
        self._pool = LanePool(self._connect, lambda conn: conn.close(), lane_sizes)

    def _connect(self, lane: str):
        import chdb

        conn = chdb.connect(self.path)
        try:
            conn.query(f"USE {self.database}")
            for k, v in self._pool.settings[lane].items():
                conn.query(f"SET {k} = {literal(v, 'String') if isinstance(v, str) else v}")
        except Exception:
            conn.close()
            raise
        return conn

    def _run(self, sql: str, fmt: str = "CSV", params: Mapping | None = None):
        try:
            with self._pool.connection(self.lane) as conn:
                sql = self._tagged(sql)
                return conn.query(sql, fmt, params=params) if params else conn.query(sql, fmt)
        except PoolClosed:
            raise StoreError("store is closed") from None
        except Exception as exc:
            raise StoreError(f"chdb: {_first_line(exc)}") from exc

    def _execute(self, sql: str, settings: Mapping[str, object] | None = None) -> None:
        self._run(sql + _settings_clause(settings))

    def _query_df(self, sql, params, settings) -> pd.DataFrame:
        native = None
        if params:
            native = {}
            for name, ch_type in placeholders(sql):
                v = params[name]
                # chdb binds scalars natively; arrays must be given as their literal text.
                native[name] = literal(v, ch_type) if ch_type.strip().startswith("Array(") else v
        res = self._run(sql + _settings_clause(settings), "DataFrame", native)
        return res if isinstance(res, pd.DataFrame) else pd.DataFrame()

    def _insert_arrow(self, table: str, tbl) -> None:
        cols = TABLES_BY_NAME[table].stored_columns()
        # `tbl` is read by chdb's Python() table function, by name, from this frame.
        names = ", ".join(f"`{c.name}`" for c in cols)
        self._run(f"INSERT INTO {table} ({names}) SELECT {names} FROM Python(tbl)")

    def server_version(self) -> str:
        return str(self.with_lane("control")._run("SELECT version()", "DataFrame").iloc[0, 0])

    def drop_database(self) -> None:
        self._run(f"DROP DATABASE IF EXISTS {self.database}")

    def close(self) -> None:
        if self._pool.closed:
            return
        self._pool.close()
        self._release_session()

    def _release_session(self) -> None:
        with _SESSIONS_LOCK:
            sess, refs = _SESSIONS.get(self.path, (None, 0))
            if sess is None:
                return
            if refs <= 1:
                _SESSIONS.pop(self.path, None)
                try:
                    sess.close()
                except Exception:  # noqa: BLE001 - closing twice is harmless
                    pass
            else:
                _SESSIONS[self.path] = (sess, refs - 1)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
