"""A real ClickHouse server over the native protocol (clickhouse-driver), single node or a cluster.

Parameters are bound client-side (escaped literals), as clickhouse-driver itself does, because the
18.16 server has no server-side `{name:Type}` parameters. In cluster mode every shard gets
`<table>_local` tables and every node a Distributed table with the plain name, created over direct
connections to each shard so no ZooKeeper (ON CLUSTER DDL) is needed.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Mapping

import numpy as np
import pandas as pd

from telemetry.store.base import Store, StoreError, StoreUnavailable
from telemetry.store.dialect import dialect_for_version, substitute
from telemetry.store.pool import LanePool, PoolClosed
from telemetry.store.schema import SCHEMA_VERSION, TABLES, TABLES_BY_NAME, VIEWS

# The store reports an unreachable server itself, in one line; the driver's own warning carries a
# traceback per attempt, which buries that line.
logging.getLogger("clickhouse_driver.connection").setLevel(logging.ERROR)

_NETWORK_ERRORS: tuple[type[BaseException], ...] = (ConnectionError, EOFError, OSError, TimeoutError)


# 18.16 has no `os_thread_priority`: `priority` is its only way to hold an analyst's query back, and
# the engine checks it once per block read (ProcessList's progress update). With the default 65,536-row
# blocks a heavy query (an ARRAY JOIN, a wide hash) ran ~0.1 s between checks, so every dashboard query
# waited out the analyst's current block; 1,024-row blocks make the pause prompt (measured in the README,
# "Store concurrency"). Analysts' queries pay a little throughput for it; they are the lowest lane.
LEGACY_ANALYST_SETTINGS = {"max_block_size": 1024}


def _driver_errors():
    from clickhouse_driver import errors

    return errors


class ServerStore(Store):
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 9000,
        user: str = "default",
        password: str = "",
        database: str = "voxwatch",
        cluster: str | None = None,
        connect_timeout: float = 3.0,
        send_receive_timeout: float = 30.0,
        lane_sizes: Mapping[str, int] | None = None,
    ) -> None:
        self.host, self.port, self.user, self.password = host, port, user, password
        self.database = database
        self.cluster = cluster
        self.connect_timeout = connect_timeout
        self.send_receive_timeout = send_receive_timeout
        auth = f"{user}@" if user else ""
        self.url = f"clickhouse://{auth}{host}:{port}/{database}" + (f"?cluster={cluster}" if cluster else "")
        # clickhouse-driver's Client is not thread-safe: one per connection of a lane (pool.py).
        self._pool = LanePool(lambda lane: self._connect(host, port, settings=self._pool.settings[lane]),
                              lambda client: client.disconnect(), lane_sizes)
        self._nodes: list[ServerStore] = []  # a store per shard, for the cluster's batch ledger
        self._nodes_lock = threading.Lock()
        self.dialect = dialect_for_version(self.server_version())
        if not self.dialect.modern:
            self._pool.settings["analyst"].update(LEGACY_ANALYST_SETTINGS)

    # -- connections -----------------------------------------------------------------------------
    def _connect(self, host: str, port: int, database: str | None = None, settings: Mapping | None = None):
        from clickhouse_driver import Client

        bootstrap = Client(
            host=host, port=port, user=self.user, password=self.password,
            connect_timeout=self.connect_timeout, send_receive_timeout=self.send_receive_timeout,
        )
        self._guard(lambda: bootstrap.execute(f"CREATE DATABASE IF NOT EXISTS {self.database}"), host, port)
        bootstrap.disconnect()
        return Client(
            host=host, port=port, user=self.user, password=self.password, database=database or self.database,
            connect_timeout=self.connect_timeout, send_receive_timeout=self.send_receive_timeout,
            settings=dict(settings or {}),
        )

    def _client_run(self, fn):
        """`fn(client)` on a client of this view's lane; a client whose connection broke is dropped."""
        try:
            with self._pool.connection(self.lane) as client:
                try:
                    return self._guard(lambda: fn(client))
                except StoreUnavailable as exc:
                    exc.discard_connection = True
                    raise
        except PoolClosed:
            raise StoreError("store is closed") from None

    def _guard(self, fn, host: str | None = None, port: int | None = None):
        errors = _driver_errors()
        where = f"{host or self.host}:{port or self.port}"
        try:
            return fn()
        except (errors.NetworkError, errors.SocketTimeoutError, *_NETWORK_ERRORS) as exc:
            raise StoreUnavailable(f"ClickHouse server {where} unreachable: {_first_line(exc)}") from exc
        except errors.ServerException as exc:
            raise StoreError(f"ClickHouse server {where}: {_first_line(exc)}") from exc
        except errors.Error as exc:
            raise StoreError(f"ClickHouse client ({where}): {_first_line(exc)}") from exc

    # -- primitives ------------------------------------------------------------------------------
    def _execute(self, sql: str, settings: Mapping[str, object] | None = None) -> None:
        sql = self._tagged(sql)
        self._client_run(lambda c: c.execute(sql, settings=dict(settings or {})))

    def _query_df(self, sql, params, settings) -> pd.DataFrame:
        text = self._tagged(substitute(sql, params) if params else sql)
        rows, cols = self._client_run(lambda c: c.execute(text, settings=dict(settings or {}), with_column_types=True))
        names = [c[0] for c in cols]
        return pd.DataFrame.from_records(rows, columns=names) if rows else pd.DataFrame(columns=names)

    def _insert_arrow(self, table: str, tbl, settings: Mapping[str, object] | None = None,
                      batch_token: str | None = None) -> None:
        cols = TABLES_BY_NAME[table].stored_columns()
        columns = []
        for c in cols:
            col = tbl.column(c.name)
            if c.type.startswith(("Float", "Int", "UInt")):
                columns.append(col.to_numpy().tolist())  # numpy's tolist is far faster than Arrow's
            else:
                columns.append(col.to_pylist())
        names = ", ".join(f"`{c.name}`" for c in cols)
        if batch_token is not None:  # through the batch ledger: the rows and their batch's row, at once
            columns.append([batch_token] * tbl.num_rows)
            names += ", `batch_token`"
            table = _batched(table)
        # Distributed inserts are asynchronous by default; sync makes "accepted" mean "on the shard".
        settings = {**(settings or {}), **({"insert_distributed_sync": 1} if self.cluster else {})}
        self._client_run(
            lambda c: c.execute(f"INSERT INTO {table} ({names}) VALUES", columns, columnar=True, settings=settings)
        )

    # -- batch ledger (exactly-once on a single 18.16 server) -------------------------------------
    # 18.16 has no insert tokens and no dedup window for plain MergeTree, so a batch carries its id in
    # the insert instead: the sink inserts into `<table>_batched` (engine Null, the table's columns
    # plus `batch_token`), whose two materialized views write the rows to `<table>` and one row
    # (table, token, rows) to `sink_batches`, in that order (18.16 runs a table's views sorted by
    # name: `_batched_rows` before `_batched_tokens`) and as part of the same INSERT of the same block.
    # A replayed batch (from the spool) first asks the ledger how many of its rows are stored.
    #
    # On a cluster a Distributed insert reaches the shards apart, so the ledger is kept per shard: the
    # sink's batch is split by the table's shard key as the Distributed table would split it, and each
    # shard's part goes over a connection of its own into that shard's `<table>_batched` entry, whose
    # views write the rows into `<table>_local` and the part's row into the shard's own ledger. A
    # replayed batch asks each shard's ledger about that shard's part (a prefix of it, as above).
    @property
    def batch_ledger(self) -> bool:
        return not self.dialect.modern

    def _insert_ledgered(self, table: str, tbl, token: str, replay: bool) -> None:
        if not self.cluster:
            return super()._insert_ledgered(table, tbl, token, replay)
        nodes = self._shard_nodes()
        shard = self._shard_of_rows(table, tbl, token, nodes)
        for i, node in enumerate(nodes):
            part = tbl.take(np.flatnonzero(shard == i))
            if part.num_rows:
                node.with_lane(self.lane)._insert_ledgered_here(table, part, token, replay)

    def _insert_ledgered_here(self, table: str, part, token: str, replay: bool) -> None:
        super()._insert_ledgered(table, part, token, replay)

    def _shard_nodes(self) -> list[ServerStore]:
        """A store on each shard (its local tables; connections of its own), in the cluster's order."""
        with self._nodes_lock:
            if not self._nodes:
                for r in self._cluster_layout().itertuples():
                    node = self._node(str(r.host_address), int(r.port))
                    node.weight = int(r.shard_weight)
                    self._nodes.append(node)
            return list(self._nodes)

    def _node(self, host: str, port: int) -> ServerStore:
        node = ServerStore.__new__(ServerStore)
        node.__dict__.update(self.__dict__)
        node.host, node.port, node._nodes = host, port, []
        node._pool = LanePool(lambda lane, h=host, p=port: self._connect(h, p, settings=self._pool.settings[lane]),
                              lambda c: c.disconnect(), {lane: 1 for lane in self._pool.sizes})
        return node

    def _shard_of_rows(self, table: str, tbl, token: str, nodes: list[ServerStore]) -> np.ndarray:
        """Each row's shard (an index into `nodes`), as the Distributed table picks it: the shard key
        modulo the total weight, over slots given to the shards in order, `weight` slots each."""
        slots = np.repeat(np.arange(len(nodes)), [n.weight for n in nodes])
        key_expr = TABLES_BY_NAME[table].shard_key
        column = next((c.name for c in TABLES_BY_NAME[table].columns if re.search(rf"\b{c.name}\b", key_expr)), None)
        if column is None:  # rand(): any shard; the batch's own hash keeps a replay on the same one
            key = np.full(tbl.num_rows, int(hashlib.sha1(token.encode()).hexdigest()[:15], 16), dtype=np.uint64)
        elif key_expr == column:
            key = tbl.column(column).to_numpy().astype(np.uint64)
        else:  # the server computes the key (cityHash64 of an id) for the batch's values
            values = tbl.column(column).to_pylist()
            ctype = next(c.type for c in TABLES_BY_NAME[table].columns if c.name == column)
            rows = self._client_run(lambda c: c.execute(
                f"SELECT {key_expr} FROM _batch",
                external_tables=[{"name": "_batch", "structure": [(column, ctype)], "data": [{column: v} for v in values]}]))
            key = np.array([r[0] for r in rows], dtype=np.uint64)
        return slots[(key % np.uint64(len(slots))).astype(np.int64)]

    def _ledger_rows(self, table: str, token: str) -> int:
        df = self._query_df(f"SELECT sum(rows) AS n FROM {LEDGER} WHERE `table` = {{t:String}} AND token = {{k:String}}",
                            {"t": table, "k": token}, None)
        return int(df["n"].iloc[0]) if len(df) else 0

    def _create_batch_ledger(self) -> None:
        self._execute(
            f"CREATE TABLE IF NOT EXISTS {LEDGER} (`table` String, `token` String, `rows` UInt64, "
            "`stored_at` DateTime DEFAULT now()) ENGINE = MergeTree PARTITION BY toYYYYMM(stored_at) "
            "ORDER BY (`table`, token)"
        )
        have = set(self._query_df("SELECT name FROM system.tables WHERE database = currentDatabase()", None, None)["name"])
        for t in TABLES:
            entry = _batched(t.name)
            if entry in have and f"{entry}_tokens" in have:
                continue
            # A new entry (its name carries its definition): an older one is left as it is, never
            # dropped under a process that may still insert into it.
            cols = t.stored_columns()
            ddl = ", ".join(self.dialect.column_ddl(c) for c in cols)
            names = ", ".join(f"`{c.name}`" for c in cols)
            self._execute(f"CREATE TABLE IF NOT EXISTS {entry} ({ddl}, `batch_token` String) ENGINE = Null")
            # 18.16's views fill no defaults: each names every column of its target.
            self._execute(f"CREATE MATERIALIZED VIEW IF NOT EXISTS {entry}_rows TO {self._local_name(t.name)} "
                          f"AS SELECT {names} FROM {entry}")
            self._execute(
                f"CREATE MATERIALIZED VIEW IF NOT EXISTS {entry}_tokens TO {LEDGER} AS SELECT '{t.name}' AS `table`, "
                f"batch_token AS token, count() AS rows, now() AS stored_at FROM {entry} GROUP BY batch_token"
            )

    def server_version(self) -> str:
        rows = self.with_lane("control")._client_run(lambda c: c.execute("SELECT version()"))
        return str(rows[0][0])

    def close(self) -> None:
        self._pool.close()
        for node in self._nodes:
            node.close()

    # -- cluster layout --------------------------------------------------------------------------
    def shards(self) -> list[tuple[int, str, int]]:
        """(shard_num, host, port) of the first replica of each shard of the cluster."""
        return [(int(r.shard_num), str(r.host_address), int(r.port)) for r in self._cluster_layout().itertuples()]

    def _cluster_layout(self) -> pd.DataFrame:
        df = self._query_df(
            "SELECT shard_num, shard_weight, host_address, port FROM system.clusters "
            "WHERE cluster = {c:String} AND replica_num = 1 ORDER BY shard_num",
            {"c": self.cluster},
            None,
        )
        if df.empty:
            raise StoreError(f"cluster {self.cluster!r} is not defined in the server's remote_servers")
        return df

    def migrate(self) -> int:
        if not self.cluster:
            before = super().migrate()
            if self.batch_ledger:
                self._create_batch_ledger()
            return before
        before = self.schema_version() if self._table_exists("schema_version") else 0
        nodes = [self._node(host, port) for _, host, port in self.shards()]
        try:
            for node in nodes:
                # Each shard: local tables and views (super().migrate() logic, minus the version row).
                for t in TABLES:
                    node._create_table(t)
                node._add_missing_columns()
                for v in VIEWS:
                    node._create_view(v)
                if self.batch_ledger:  # each shard keeps the ledger of the batch parts it stored
                    node._create_batch_ledger()
                for t in TABLES:
                    node._execute(
                        node.dialect.table_ddl(
                            t, name=t.name,
                            engine=f"Distributed({self.cluster}, {self.database}, {t.name}_local, {t.shard_key})",
                        )
                    )
        finally:
            for node in nodes:
                node.close()
        if before < SCHEMA_VERSION:
            self._record_schema_version()
        return before

    def optimize(self, table: str) -> None:
        if not self.cluster:
            return super().optimize(table)
        for _, host, port in self.shards():
            c = self._connect(host, port)
            self._guard(lambda c=c: c.execute(f"OPTIMIZE TABLE {table}_local FINAL"), host, port)
            c.disconnect()


LEDGER = "sink_batches"


def _batched(table: str) -> str:
    """The entry a ledgered batch of `table` is inserted into; named after its columns, so a schema
    with new columns gets a new entry (and views naming them) beside the old one."""
    cols = ",".join(f"{c.name}:{c.type}" for c in TABLES_BY_NAME[table].stored_columns())
    return f"{table}_batched_{hashlib.sha1(cols.encode()).hexdigest()[:8]}"


def _first_line(exc: BaseException) -> str:
    """The server's own words, without the stack trace clickhouse-driver appends."""
    text = getattr(exc, "message", None) or str(exc)
    text = text.split("Stack trace", 1)[0].strip()
    code = getattr(exc, "code", None)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("Code:")]
    msg = lines[0] if lines else (text or type(exc).__name__)
    return f"Code {code}: {msg}" if code else msg
