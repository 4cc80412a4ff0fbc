"""Embedded ClickHouse (chdb): the default store, data under a local folder, one process owns it."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
from collections.abc import Mapping

import pandas as pd

from telemetry.store.base import Store, StoreError
from telemetry.store.dialect import MODERN, literal, placeholders
from telemetry.store.pool import LanePool, PoolClosed
from telemetry.store.schema import ANALYST_VIEWS, TABLES, TABLES_BY_NAME, VIEWS
from telemetry.store.sql_guard import with_limits

# The engine cleans up replaced parts inside this process. With MergeTree's defaults (a cleanup pass
# every 30 s, backing off towards 300 s) the sink's inserts and their merges left ~900 replaced parts
# in memory after 4 minutes of `voxwatch bench soak`, which were then removed at once by a pool that
# started a thread per batch: 120 more threads, kept, and +20-36 MB resident at that moment. A pass
# every 1-5 s on one thread keeps the replaced parts under ~20 and the thread count flat.
PART_CLEANUP_SETTINGS = {
    "cleanup_delay_period": 1,
    "max_cleanup_delay_period": 5,
    "cleanup_delay_period_random_add": 1,
    "concurrent_part_removal_threshold": 1_000_000,
}
_PART_CLEANUP = ", ".join(f"{k} = {v}" for k, v in PART_CLEANUP_SETTINGS.items())

# chdb keeps one engine per process. The first store on a folder opens a session that owns it (the
# folder lock); stores of other databases in the same folder share that session. Queries run on
# connections of their own (telemetry/store/pool.py): chdb runs queries of different connections at
# once, one after another on one connection, and each connection keeps its own current database.
_SESSIONS: dict[str, tuple[object, int]] = {}
_SESSIONS_LOCK = threading.Lock()
# The session itself serves only the SQL guard's parse-only queries (and CREATE DATABASE): `USE db`
# + query on it must not interleave between threads.
_ENGINE_LOCK = threading.RLock()
_CURRENT_DATABASE: dict[int, str] = {}  # id(session) -> database last selected with USE
# Folders opened only so the SQL guard has ClickHouse's parser (a process whose store is a server):
# a real embedded store opened later in the process takes the engine over.
_GUARD_ONLY: set[str] = set()
_GUARD_SCHEMAS: set[tuple[int, str, bool]] = set()  # (id(session), database) holding the guard's empty schema


def escape_parameter(value: str) -> str:
    """chdb reads a String query parameter in the escaped (TSV) format: without this, a tab, newline
    or backslash in a call id is a BAD_QUERY_PARAMETER error, and a backslash sequence in it (a
    literal backslash then 0) is read as an escape and looked up as another value."""
    return (value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
            .replace("\r", "\\r").replace("\0", "\\0"))


def _native_params(sql: str, params: Mapping) -> dict:
    native = {}
    for name, ch_type in placeholders(sql):
        v = params[name]
        # chdb binds scalars natively; arrays must be given as their literal text.
        if ch_type.strip().startswith("Array("):
            native[name] = literal(v, ch_type)
        elif isinstance(v, str):
            native[name] = escape_parameter(v)
        else:
            native[name] = v
    return native


def _query_text(sess, sql: str, params: Mapping | None, database: str) -> str:
    """Run on a chdb session in `database` (under the engine lock) and return the TSV text."""
    with _ENGINE_LOCK:
        if _CURRENT_DATABASE.get(id(sess)) != database:
            sess.query(f"USE {database}")
            _CURRENT_DATABASE[id(sess)] = database
        res = sess.query(sql, "TSVRaw", params=_native_params(sql, params)) if params else sess.query(sql, "TSVRaw")
        return res.bytes().decode()


def embedded_guard_runner(database: str, dialect=MODERN):
    """A runner for the SQL guard on the embedded engine, with an empty copy of the schema in `database`
    (Memory tables, and the analysts' views in `dialect`'s form): the parser and analyser of a server
    store's analyst SQL."""
    from chdb import session as chdb_session

    with _SESSIONS_LOCK:
        if _SESSIONS:
            sess = next(iter(_SESSIONS.values()))[0]
        else:
            path = tempfile.mkdtemp(prefix="voxwatch-sql-guard-")
            atexit.register(shutil.rmtree, path, True)  # an empty schema only: nothing to keep
            sess = chdb_session.Session(path)
            _SESSIONS[path] = (sess, 0)
            _GUARD_ONLY.add(path)
    key = (id(sess), database, dialect.modern)
    if key not in _GUARD_SCHEMAS:
        with _ENGINE_LOCK:
            sess.query(f"CREATE DATABASE IF NOT EXISTS {database}")
            for name, columns in _guard_tables():
                cols = ", ".join(dialect.column_ddl(c) for c in columns)
                sess.query(f"CREATE TABLE IF NOT EXISTS {database}.{name} ({cols}) ENGINE = Memory")
            for pv in ANALYST_VIEWS:  # the analysts' views, over the empty tables, so the analyser can resolve them
                # The legacy form joins an unaliased subquery, which the 18.16 server allows and 26.x only with this setting.
                view_sql = pv.modern if dialect.modern else pv.legacy + " SETTINGS joined_subquery_requires_alias = 0"
                _query_text(sess, f"CREATE VIEW IF NOT EXISTS {database}.{pv.name} AS {view_sql}", None, database)
            _GUARD_SCHEMAS.add(key)

    def run(sql: str, params: Mapping | None) -> str:
        try:
            return _query_text(sess, sql, params, database)
        except Exception as exc:
            raise StoreError(f"chdb: {_first_line(exc)}") from exc

    return run


def _guard_tables():
    for t in TABLES:
        yield t.name, t.columns
    for v in VIEWS:
        yield v.name, TABLES_BY_NAME[v.target].columns


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
        try:
            os.makedirs(self.path, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot open embedded store at {self.path}: {exc.strerror or exc}") from None
        if not os.access(self.path, os.W_OK):
            raise StoreError(f"cannot open embedded store at {self.path}: the folder is not writable")
        with _SESSIONS_LOCK:
            sess, refs = _SESSIONS.get(self.path, (None, 0))
            for guard_path in [p for p in _SESSIONS if p in _GUARD_ONLY and p != self.path]:
                with _ENGINE_LOCK:  # the guard's engine gives way to a real store
                    guard_sess = _SESSIONS.pop(guard_path)[0]
                    _GUARD_ONLY.discard(guard_path)
                    _CURRENT_DATABASE.pop(id(guard_sess), None)
                    _GUARD_SCHEMAS.difference_update({k for k in _GUARD_SCHEMAS if k[0] == id(guard_sess)})
                    guard_sess.close()
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
            with _ENGINE_LOCK:
                sess.query(f"CREATE DATABASE IF NOT EXISTS {database}")
        except Exception as exc:
            self._release_session()
            raise StoreError(f"chdb: {_first_line(exc)}") from exc
        self._pool = LanePool(self._connect, lambda conn: conn.close(), lane_sizes)
        # The engine runs in this process: analysts' threads get the lowest OS priority (nice 19), so
        # the API's own Python (HTTP, DataFrames) runs before them, not beside them on a shared core.
        self._pool.settings["analyst"]["os_thread_priority"] = 19

    def _create_table(self, t) -> None:
        ddl = self.dialect.table_ddl(t, name=self._local_name(t.name))
        self._execute(ddl + (f"\nSETTINGS {_PART_CLEANUP}" if "MergeTree" in t.engine else ""))

    def migrate(self) -> int:
        before = super().migrate()
        for t in TABLES:  # tables created before these settings (a pass takes them up within ~40 s)
            if "MergeTree" in t.engine:
                self._execute(f"ALTER TABLE {t.name} MODIFY SETTING {_PART_CLEANUP}")
        return before

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
        native = _native_params(sql, params) if params else None
        res = self._run(sql + _settings_clause(settings), "DataFrame", native)
        return res if isinstance(res, pd.DataFrame) else pd.DataFrame()

    # -- analysts' SQL ---------------------------------------------------------------------------
    def _guard_run(self, sql: str, params: Mapping | None) -> str:
        if self._pool.closed:
            raise StoreError("store is closed")
        try:
            return _query_text(self._session, sql, params, self.database)
        except Exception as exc:
            raise StoreError(f"chdb: {_first_line(exc)}") from exc

    def _sql_guard(self):
        return self._guard_run, self.database

    def _readonly_df(self, statement, settings) -> pd.DataFrame:
        # chdb takes no settings beside the text: append them to the engine's canonical form,
        # proven by the engine to parse as this statement's SETTINGS (sql_guard.with_limits).
        text = with_limits(statement, settings, self._guard_run)
        res = self._run(text, "DataFrame")
        return res if isinstance(res, pd.DataFrame) else pd.DataFrame()

    def _insert_arrow(self, table: str, tbl, settings: Mapping[str, object] | None = None) -> None:
        cols = TABLES_BY_NAME[table].stored_columns()
        # `tbl` is read by chdb's Python() table function, by name, from this frame.
        names = ", ".join(f"`{c.name}`" for c in cols)
        self._run(f"INSERT INTO {table} ({names}) SELECT {names} FROM Python(tbl)" + _settings_clause(settings))

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
                _CURRENT_DATABASE.pop(id(sess), None)
                try:
                    sess.close()
                except Exception:  # noqa: BLE001 - closing twice is harmless
                    pass
            else:
                _SESSIONS[self.path] = (sess, refs - 1)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
