"""`voxwatch store`: create or upgrade a store, show what it holds, run read-only SQL against it."""

from __future__ import annotations

import argparse
import json

from voxwatch.cli import CommandError


def register(sub) -> None:
    p = sub.add_parser("store", help="create, inspect and query the ClickHouse store")
    p.add_argument("--store", default=None, help="store URL (default $VOXWATCH_STORE or chdb://./var/voxwatch)")
    ssub = p.add_subparsers(dest="store_command", required=True, metavar="ACTION")
    i = ssub.add_parser("init", help="create the schema or migrate it to this release")
    i.set_defaults(func=_init)
    s = ssub.add_parser("info", help="schema version, engine and row counts per table")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_info)
    q = ssub.add_parser("sql", help="read-only SQL (writes and DDL are refused)")
    q.add_argument("sql")
    q.add_argument("--max-rows", type=int, default=1000)
    q.add_argument("--max-seconds", type=float, default=10.0)
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=_sql)
    for action in (i, s, q):
        # `voxwatch store sql --store URL ...` as well as `voxwatch store --store URL sql ...`: SUPPRESS keeps
        # the value given before the action when none is given after it
        action.add_argument("--store", default=argparse.SUPPRESS, help="store URL (here or before the action)")


def _open(args, migrate: bool = True):
    from telemetry.store import StoreError, open_store

    try:
        return open_store(args.store, migrate=migrate)
    except StoreError as exc:
        raise CommandError(str(exc)) from None


def _init(args) -> int:
    store = _open(args, migrate=False)
    try:
        before = store.migrate()
        print(f"store {store.url}: schema {before} -> {store.schema_version()} ({store.server_version()})")
    finally:
        store.close()
    return 0


def _info(args) -> int:
    from telemetry.store import TABLES, reads

    store = _open(args)
    try:
        counts = {t.name: reads.row_count(store, t.name) for t in TABLES}
        info = {"url": store.url, "engine": store.server_version(), "dialect": store.dialect.name,
                "schema_version": store.schema_version(), "rows": counts}
    finally:
        store.close()
    if args.json:
        print(json.dumps(info))
    else:
        print(f"{info['url']}  ClickHouse {info['engine']} ({info['dialect']} dialect), schema {info['schema_version']}")
        for name, n in counts.items():
            print(f"  {name:<22} {n:>12,}")
    return 0


def _sql(args) -> int:
    from telemetry.store import StoreError

    store = _open(args)
    try:
        df = store.readonly_query(args.sql, max_rows=args.max_rows, max_seconds=args.max_seconds)
    except StoreError as exc:
        raise CommandError(str(exc)) from None
    finally:
        store.close()
    if args.json:
        print(df.to_json(orient="records"))
    else:
        print(df.to_string(index=False))
    return 0
