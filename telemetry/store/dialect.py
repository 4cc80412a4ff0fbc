"""The one place where ClickHouse versions differ: rendering DDL and binding query parameters.

`ModernDialect` is chdb's ClickHouse 26.x (or any current server); `LegacyDialect` is what Debian's
clickhouse-server 18.16 accepts (no TTL, codecs, DateTime64, LowCardinality by default, or
`{name:Type}` server-side parameters).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from telemetry.store.schema import Column, Table, View

RETENTION_COLUMN = "stored_at"  # modern dialect only; filled by the engine, never sent by us
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*):([^{}]+)\}")


# One analyst query may hold at most this much memory, and return at most this many bytes: a
# `groupArray` over 300M rows or a 79 MB `range(10000000)` row is refused, not served.
ANALYST_MAX_MEMORY_BYTES = 1 << 30
ANALYST_MAX_RESULT_BYTES = 32 << 20
# Insert tokens a table remembers: a replayed sink batch is recognised among the last this many inserts.
DEDUP_WINDOW = 1000


class QueryParameterError(ValueError):
    """A query's placeholders and the parameters given to it do not match."""


def literal(value, ch_type: str) -> str:
    """Render a Python value as a ClickHouse literal of `ch_type`, escaping strings.

    Used where the server cannot bind parameters itself (18.16) and for Array values on chdb.
    """
    t = ch_type.strip()
    inner = t[len("Nullable(") : -1] if t.startswith("Nullable(") else t
    if value is None:
        return "NULL"
    if inner.startswith("Array("):
        item_type = inner[len("Array(") : -1]
        if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
            raise QueryParameterError(f"parameter of type {t} needs a list, got {type(value).__name__}")
        return "[" + ", ".join(literal(v, item_type) for v in value) + "]"
    if inner in ("String",) or inner.startswith("FixedString") or inner.startswith("LowCardinality"):
        s = str(value)
        return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if inner.startswith(("Int", "UInt")):
        if isinstance(value, bool):
            value = int(value)
        if isinstance(value, float):
            if not value.is_integer():
                raise QueryParameterError(f"parameter of type {t} needs an integer, got {value!r}")
            value = int(value)
        if not isinstance(value, int):
            try:
                value = int(value)
            except (TypeError, ValueError):
                raise QueryParameterError(f"parameter of type {t} needs an integer, got {value!r}") from None
        return str(int(value))
    if inner.startswith("Float"):
        f = float(value)
        if math.isnan(f):
            return "nan"
        if math.isinf(f):
            return "inf" if f > 0 else "-inf"
        return repr(f)
    raise QueryParameterError(f"unsupported parameter type {t}")


def placeholders(sql: str) -> list[tuple[str, str]]:
    return PLACEHOLDER.findall(sql)


def check_params(sql: str, params: dict | None) -> list[tuple[str, str]]:
    found = placeholders(sql)
    params = params or {}
    missing = sorted({n for n, _ in found} - set(params))
    if missing:
        raise QueryParameterError(f"query parameter(s) not given: {', '.join(missing)}")
    return found


def substitute(sql: str, params: dict | None) -> str:
    """Client-side binding: every `{name:Type}` becomes an escaped literal of that type."""
    check_params(sql, params)
    return PLACEHOLDER.sub(lambda m: literal(params[m.group(1)], m.group(2)), sql)


@dataclass(frozen=True)
class Dialect:
    name: str
    modern: bool

    # -- DDL -------------------------------------------------------------------------------------
    def column_type(self, c: Column) -> str:
        if not self.modern and c.legacy_type:
            return c.legacy_type
        if self.modern and c.low_cardinality:
            return f"LowCardinality({c.type})"
        return c.type

    def column_ddl(self, c: Column) -> str:
        ddl = f"`{c.name}` {self.column_type(c)}"
        if c.alias is not None:
            return ddl + f" ALIAS {c.alias if self.modern else (c.legacy_alias or c.alias)}"
        if self.modern and c.codec:
            ddl += f" CODEC({c.codec})"
        return ddl

    def table_ddl(self, t: Table, name: str | None = None, engine: str | None = None) -> str:
        cols = ",\n  ".join(self.column_ddl(c) for c in t.columns)
        retention = self.modern and t.ttl_days
        if retention:
            # Retention counts from when a row was stored, not from its event time: a replay of a
            # past incident (a scenario on a virtual clock) is kept as long as live data.
            kind = "SimpleAggregateFunction(max, DateTime)" if "Aggregating" in t.engine else "DateTime"
            cols += f",\n  `{RETENTION_COLUMN}` {kind} DEFAULT now()"
        parts = [f"CREATE TABLE IF NOT EXISTS {name or t.name} (\n  {cols}\n) ENGINE = {engine or t.engine}"]
        if engine is None or not engine.startswith("Distributed"):
            if t.partition_by:
                parts.append(f"PARTITION BY {t.partition_by}")
            parts.append(f"ORDER BY {t.order_by}")
            if retention:
                parts.append(f"TTL {RETENTION_COLUMN} + INTERVAL {t.ttl_days} DAY")
        return "\n".join(parts)

    def view_ddl(self, v: View, source_tables: dict[str, str], target: str) -> str:
        select = v.select.format(**source_tables)
        return f"CREATE MATERIALIZED VIEW IF NOT EXISTS {v.name} TO {target} AS {select}"

    def plain_view_ddl(self, v) -> str:
        """An analysts' view (schema.ANALYST_VIEWS), replaced so its query follows the release."""
        verb = "CREATE OR REPLACE VIEW" if self.modern else "CREATE VIEW IF NOT EXISTS"
        return f"{verb} {v.name} AS {v.modern if self.modern else v.legacy}"

    def retention_ddl(self, table_name: str, t: Table) -> list[str]:
        kind = "SimpleAggregateFunction(max, DateTime)" if "Aggregating" in t.engine else "DateTime"
        return [
            f"ALTER TABLE {table_name} ADD COLUMN IF NOT EXISTS `{RETENTION_COLUMN}` {kind} DEFAULT now()",
            f"ALTER TABLE {table_name} MODIFY TTL {RETENTION_COLUMN} + INTERVAL {t.ttl_days} DAY",
        ]

    def add_column_ddl(self, table_name: str, c: Column) -> str:
        return f"ALTER TABLE {table_name} ADD COLUMN {self.column_ddl(c)}"

    # -- exactly-once inserts ------------------------------------------------------------------------
    def dedup_window_ddl(self, table_name: str) -> str | None:
        """Keep the last DEDUP_WINDOW insert tokens per table (non-replicated MergeTree dedup, modern
        engines only: 18.16 has neither the window nor insert_deduplication_token)."""
        if not self.modern:
            return None
        return f"ALTER TABLE {table_name} MODIFY SETTING non_replicated_deduplication_window = {DEDUP_WINDOW}"

    def insert_settings(self, dedup_token: str | None) -> dict[str, object]:
        """An insert carrying `dedup_token` is stored once however often it is repeated within the
        window; the rollup views skip it too when the source table did."""
        if not self.modern or not dedup_token:
            return {}
        return {"insert_deduplication_token": dedup_token, "deduplicate_blocks_in_dependent_materialized_views": 1}

    # -- settings --------------------------------------------------------------------------------
    def readonly_settings(self, max_rows: int, max_seconds: float) -> dict[str, object]:
        # readonly=2 would allow changing settings; 1 forbids writes, DDL and SET.
        return {
            "readonly": 1,
            "max_result_rows": int(max_rows),
            "max_result_bytes": ANALYST_MAX_RESULT_BYTES,
            "result_overflow_mode": "break",
            "max_execution_time": max(1, int(math.ceil(max_seconds))),
            "max_memory_usage": ANALYST_MAX_MEMORY_BYTES,
        }


MODERN = Dialect("modern", modern=True)
LEGACY = Dialect("legacy", modern=False)


def dialect_for_version(version: str) -> Dialect:
    try:
        major = int(version.split(".")[0])
    except ValueError:
        return LEGACY
    # LowCardinality, codecs and TTL arrived in 19.x; DateTime64 in 20.1. Use modern from 21 on.
    return MODERN if major >= 21 else LEGACY
