"""The store interface every room uses: migrate, insert columns, query with parameters, read-only SQL.

Backends differ only in how they move bytes (`_execute`, `_query_df`, `_insert_arrow`); schema,
migration, parameter checks, the read-only guard and cluster layout are shared here.
"""

from __future__ import annotations

import copy
import importlib.metadata
import itertools
import logging
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping

import numpy as np
import pandas as pd
import pyarrow as pa

from telemetry.store import schema as _schema
from telemetry.store.arrow import arrow_type
from telemetry.store.dialect import ANALYST_MAX_RESULT_BYTES, MODERN, RETENTION_COLUMN, Dialect, check_params
from telemetry.store.pool import LANES
from telemetry.store.schema import SCHEMA_VERSION, TABLES, TABLES_BY_NAME, VIEWS, Column, Table, View
from telemetry.store.sql_guard import SqlRefused, VettedStatement, vet

log = logging.getLogger(__name__)


class StoreError(RuntimeError):
    """A store operation failed; the message names the operation and the cause."""


class StoreUnavailable(StoreError):
    """The store cannot be reached (server down, connection refused): the sink spools and retries."""


class ReadOnlyViolation(StoreError):
    """Analysts' SQL tried to do something other than read."""




def allowed_tables() -> tuple[str, ...]:
    """What analysts' SQL may read: the store's own tables and views, nothing else."""
    return tuple(t.name for t in TABLES) + tuple(v.name for v in VIEWS) + tuple(v.name for v in _schema.ANALYST_VIEWS)


def _release() -> str:
    # The installed distribution's version; telemetry imports nothing of ours, not even voxwatch.
    try:
        return importlib.metadata.version("voxwatch")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _default_for(c: Column, n: int):
    t = c.type
    if t.startswith("Array("):
        return [[] for _ in range(n)]
    if t == "String":
        return np.full(n, "", dtype=object)
    if t.startswith("Float"):
        return np.zeros(n, dtype=np.float64)
    if t.startswith(("Int", "UInt")):
        return np.zeros(n, dtype=np.int64 if t.startswith("Int") else np.uint64)
    raise StoreError(f"column {c.name} ({t}) has no default: give it explicitly")


class Store(ABC):
    """One ClickHouse database, embedded or remote. Tables are named plainly in every query;
    in cluster mode the plain name is the Distributed table in front of `<name>_local` shards."""

    url: str
    dialect: Dialect
    cluster: str | None = None

    # -- backend primitives ----------------------------------------------------------------------
    @abstractmethod
    def _execute(self, sql: str, settings: Mapping[str, object] | None = None) -> None: ...

    @abstractmethod
    def _query_df(self, sql: str, params: Mapping | None, settings: Mapping[str, object] | None) -> pd.DataFrame: ...

    @abstractmethod
    def _insert_arrow(self, table: str, tbl: pa.Table, settings: Mapping[str, object] | None = None) -> None: ...

    @abstractmethod
    def server_version(self) -> str: ...

    def close(self) -> None:  # noqa: B027 - optional for backends
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- schema ----------------------------------------------------------------------------------
    def migrate(self) -> int:
        """Create missing tables, add missing columns, record the schema version. Idempotent.

        Returns the schema version the store was at before (0 for a new store)."""
        before = self.schema_version()
        for t in TABLES:
            self._create_table(t)
        self._add_missing_columns()
        for v in VIEWS:
            self._create_view(v)
        for pv in _schema.ANALYST_VIEWS:  # plain views over the tables' plain names (the Distributed ones on a cluster)
            self._execute(self.dialect.plain_view_ddl(pv))
        if before < SCHEMA_VERSION:
            self._record_schema_version()
            log.info("store %s migrated from schema %d to %d", self.url, before, SCHEMA_VERSION)
        return before

    def _record_schema_version(self) -> None:
        self.insert(
            "schema_version",
            {"version": [SCHEMA_VERSION], "applied_ms": [int(time.time() * 1000)], "release": [_release()]},
        )

    def schema_version(self) -> int:
        if not self._table_exists("schema_version"):
            return 0
        df = self._query_df("SELECT max(version) AS v FROM schema_version", None, None)
        return int(df["v"].iloc[0]) if len(df) else 0

    def _table_exists(self, name: str) -> bool:
        df = self._query_df(
            "SELECT count() AS n FROM system.tables WHERE database = currentDatabase() AND name = {t:String}",
            {"t": name},
            None,
        )
        return int(df["n"].iloc[0]) > 0

    def _local_name(self, t: str) -> str:
        return f"{t}_local" if self.cluster else t

    def _create_table(self, t: Table) -> None:
        self._execute(self.dialect.table_ddl(t, name=self._local_name(t.name)))

    def _create_view(self, v: View) -> None:
        # The view reads the local shard so every shard rolls up its own rows.
        sources = {t.name: self._local_name(t.name) for t in TABLES}
        self._execute(self.dialect.view_ddl(v, sources, self._local_name(v.target)))

    def _existing_columns(self, table_name: str) -> set[str]:
        df = self._query_df(
            "SELECT name FROM system.columns WHERE database = currentDatabase() AND table = {t:String}",
            {"t": table_name},
            None,
        )
        return set(df["name"])

    def _add_missing_columns(self) -> None:
        for t in TABLES:
            local = self._local_name(t.name)
            have = self._existing_columns(local)
            for c in t.columns:
                if c.name not in have:
                    self._execute(self.dialect.add_column_ddl(local, c))
            window = self.dialect.dedup_window_ddl(local)
            if window:
                self._execute(window)
            if self.dialect.modern and t.ttl_days and RETENTION_COLUMN not in have:
                # Stores from schema 3 had event-time TTLs: move retention to the storage time.
                for stmt in self.dialect.retention_ddl(local, t):
                    self._execute(stmt)

    # -- writing ---------------------------------------------------------------------------------
    def batch(self, table: str, data) -> pa.Table:
        """A schema-complete Arrow batch for `table` from a DataFrame, a dict of columns (lists or
        numpy arrays) or an Arrow table; missing columns take defaults, unknown ones are an error."""
        t = TABLES_BY_NAME.get(table)
        if t is None:
            raise StoreError(f"unknown table {table!r}")
        stored = t.stored_columns()
        if isinstance(data, pa.Table):
            names = set(data.column_names)
            n = data.num_rows
            get = data.column
        else:
            if isinstance(data, pd.DataFrame):
                names, n = set(data.columns), len(data)
            else:
                data = dict(data)
                names = set(data)
                lengths = {len(v) for v in data.values()}
                if len(lengths) > 1:
                    raise StoreError(f"table {table}: columns have different lengths {sorted(lengths)}")
                n = lengths.pop() if lengths else 0
            get = data.__getitem__
        unknown = names - {c.name for c in stored}
        if unknown:
            raise StoreError(f"table {table}: unknown column(s) {', '.join(sorted(unknown))}")
        arrays = []
        for c in stored:
            typ = arrow_type(c.type)
            if c.name in names:
                v = get(c.name)
                if isinstance(v, (pa.Array, pa.ChunkedArray)):
                    arrays.append(v if v.type == typ else v.cast(typ))
                    continue
                v = v.to_numpy() if hasattr(v, "to_numpy") else v
                if pa.types.is_list(typ):
                    arrays.append(_list_array(v, typ, table, c.name))
                    continue
            else:
                v = _default_for(c, n)
            try:
                # from_pandas would turn NaN into null, and null into 0 in a non-Nullable column:
                # a finding's "no forecast" (NaN) must stay NaN.
                arrays.append(pa.array(v, type=typ, from_pandas=not pa.types.is_floating(typ)))
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
                raise StoreError(f"table {table}, column {c.name}: {exc}") from exc
        return pa.Table.from_arrays(arrays, names=[c.name for c in stored])

    # True where the engine has no insert tokens but the store keeps a batch ledger instead (a single
    # 18.16 server: server_backend.py, "batch ledger").
    batch_ledger = False

    def insert(self, table: str, data, dedup_token: str | None = None, replay: bool = False) -> int:
        """Insert a DataFrame, a dict of columns or an Arrow table. Returns rows handed to the store.

        With `dedup_token` (a stable identity of this batch), repeating the insert stores it once: on
        the modern dialect by the engine's insert tokens (telemetry/store/dialect.py, insert_settings);
        on a single 18.16 server by the batch ledger, looked up when `replay` says this batch may
        have been stored before (it comes back from the spool)."""
        tbl = self.batch(table, data)
        if tbl.num_rows:
            settings = self.dialect.insert_settings(dedup_token)
            if settings:
                self._insert_arrow(table, tbl, settings)
            elif dedup_token and self.batch_ledger:
                self._insert_ledgered(table, tbl, dedup_token, replay)
            else:
                self._insert_arrow(table, tbl)
        return tbl.num_rows

    def _insert_ledgered(self, table: str, tbl: pa.Table, token: str, replay: bool) -> None:
        stored = self._ledger_rows(table, token) if replay else 0
        if stored < tbl.num_rows:
            # The driver sends a batch in blocks, in order, each stored with its ledger row:
            # what is there is a prefix, so the rest completes it.
            self._insert_arrow(table, tbl.slice(stored), batch_token=token)

    def _ledger_rows(self, table: str, token: str) -> int:
        raise NotImplementedError

    # -- reading ---------------------------------------------------------------------------------
    # Set by the composition root: a telemetry.Telemetry that counts and times queries, and the
    # `source` label (api, dashboard, anomaly, alerts) this store object's queries are counted under.
    telemetry = None
    source = "store"

    def query(self, sql: str, params: Mapping | None = None) -> pd.DataFrame:
        """Run a parameterised query (`{name:Type}` placeholders) and return a DataFrame."""
        check_params(sql, params)
        return self._timed(self._query_df, sql, params, None)

    def _timed(self, fn, *args):
        if self.telemetry is None:
            return fn(*args)
        t0 = time.perf_counter()
        try:
            return fn(*args)
        except Exception:
            self.telemetry["voxwatch_store_query_errors_total"].labels(source=self.source).inc()
            raise
        finally:
            self.telemetry["voxwatch_store_queries_total"].labels(source=self.source).inc()
            self.telemetry["voxwatch_store_query_seconds"].labels(source=self.source).observe(time.perf_counter() - t0)

    def query_rows(self, sql: str, params: Mapping | None = None) -> list[tuple]:
        df = self.query(sql, params)
        return list(df.itertuples(index=False, name=None))

    def scalar(self, sql: str, params: Mapping | None = None):
        df = self.query(sql, params)
        return df.iloc[0, 0] if len(df) else None

    def readonly_query(self, sql: str, max_rows: int = 10_000, max_seconds: float = 10.0) -> pd.DataFrame:
        """Analysts' SQL: one read of the store's own tables, bounded in rows, bytes, memory and time.

        ClickHouse's own parser and analyser decide what the statement is and what it reads
        (telemetry/store/sql_guard.py: an allow-list of the store's tables and views), and the
        limits reach the engine where the SQL text cannot change them (readonly=1 among them)."""
        run, database = self._sql_guard()
        settings = self.dialect.readonly_settings(max_rows, max_seconds)
        try:
            statement = vet(sql, run, database, allowed_tables(), limits=MODERN.readonly_settings(max_rows, max_seconds))
        except SqlRefused as exc:
            raise ReadOnlyViolation(f"read-only SQL: {exc}") from exc
        try:
            df = self._timed(self._readonly_df, statement, settings)
        except SqlRefused as exc:
            raise ReadOnlyViolation(f"read-only SQL: {exc}") from exc
        except StoreError as exc:
            msg = str(exc)
            if "READONLY" in msg or "readonly mode" in msg:
                raise ReadOnlyViolation(f"read-only SQL: the store refused a write ({msg.splitlines()[0]})") from exc
            raise
        df = df.head(max_rows)
        # The engine stops at the first block past max_result_bytes, but a block of one huge row
        # (`SELECT range(10000000)`) still arrives: refuse to hand it on.
        size = int(df.memory_usage(deep=True).sum())
        if size > ANALYST_MAX_RESULT_BYTES:
            raise ReadOnlyViolation(
                f"read-only SQL: the result is {size / 2**20:.0f} MiB, above the limit of "
                f"{ANALYST_MAX_RESULT_BYTES / 2**20:.0f} MiB; select fewer rows or columns"
            )
        return df

    def _sql_guard(self):
        """(runner, database) for the guard: the embedded engine's parser over an empty copy of the schema."""
        from telemetry.store.chdb_backend import embedded_guard_runner

        return embedded_guard_runner(self.database, self.dialect), self.database

    def _readonly_df(self, statement: VettedStatement, settings: Mapping[str, object]) -> pd.DataFrame:
        # Backends that pass settings out of band (the server) run the vetted canonical text as is.
        return self._query_df(statement.canonical, None, settings)

    # -- lanes: who is asking decides which connections serve it (telemetry/store/pool.py) --------
    lane = "dashboard"
    query_tag: str | None = None  # marks this view's queries so `cancel(tag)` can find them

    def with_lane(self, lane: str, query_tag: str | None = None) -> Store:
        """A view of this store whose queries use `lane`'s connections (monitor, dashboard, analyst,
        control). Views share the connections and the open/closed state: closing one closes the store."""
        if lane not in LANES:
            raise StoreError(f"unknown store lane {lane!r}; lanes: {', '.join(LANES)}")
        view = copy.copy(self)
        view.lane, view.query_tag = lane, query_tag
        return view

    def _tagged(self, sql: str) -> str:
        # A leading comment reaches system.processes verbatim: `cancel` finds the query by it.
        return f"/* voxwatch-query:{self.query_tag} */ {sql}" if self.query_tag else sql

    def cancel(self, query_tag: str) -> int:
        """Stop the running queries of the view tagged `query_tag` (KILL QUERY, on the control lane).
        Returns how many the engine was asked to stop."""
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", query_tag):
            raise StoreError(f"invalid query tag {query_tag!r}")
        control = self.with_lane("control")
        # The marker is bound as a parameter: on the server backend it is substituted into this
        # very query's text, which is why a query reading system.processes is never a match.
        running = control._query_df(
            "SELECT query_id FROM system.processes WHERE position(query, {m:String}) > 0 "
            "AND position(query, 'system.processes') = 0",
            {"m": f"voxwatch-query:{query_tag} */"}, None,
        )
        ids = [str(q) for q in running["query_id"]] if len(running) else []
        for qid in ids:
            if re.fullmatch(r"[A-Za-z0-9_.:-]{1,128}", qid):
                control._execute(f"KILL QUERY WHERE query_id = '{qid}' ASYNC")
        return len(ids)

    def lane_stats(self) -> dict[str, dict]:
        """Per lane: connections opened and busy, callers that waited and for how long in all."""
        pool = getattr(self, "_pool", None)
        if pool is None:
            return {}
        return {lane: dict(vars(st)) for lane, st in pool.stats.items()}

    # -- housekeeping ----------------------------------------------------------------------------
    def optimize(self, table: str) -> None:
        """Force merges (ReplacingMergeTree dedup, TTL) — for tests and maintenance."""
        self._execute(f"OPTIMIZE TABLE {self._local_name(table)} FINAL")

    def truncate(self, table: str) -> None:
        self._execute(f"TRUNCATE TABLE {self._local_name(table)}")


def _list_array(rows, typ: pa.ListType, table: str, column: str) -> pa.Array:
    """An Array(...) column from a sequence of lists, flattened once: offsets from the lengths and one
    flat values array (much cheaper than converting nested Python lists element by element)."""
    rows = list(rows)
    lengths = np.fromiter(map(len, rows), dtype=np.int32, count=len(rows))
    offsets = np.zeros(len(rows) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    try:
        values = pa.array(list(itertools.chain.from_iterable(rows)), type=typ.value_type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
        raise StoreError(f"table {table}, column {column}: {exc}") from exc
    return pa.ListArray.from_arrays(pa.array(offsets), values, type=typ)
