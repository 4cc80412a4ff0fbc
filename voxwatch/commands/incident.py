"""`voxwatch incident`: list incidents and print one's post-incident report (Markdown) from a store.

    voxwatch incident list --store URL [--state open] [--json]
    voxwatch incident report ID --store URL [-o FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from voxwatch.cli import CommandError


def register(sub) -> None:
    p = sub.add_parser("incident", help="incidents: list them, print a post-incident report")
    store_help = "store URL (default $VOXWATCH_STORE or chdb://./var/voxwatch)"
    p.add_argument("--store", default=None, help=store_help)
    isub = p.add_subparsers(dest="incident_command", required=True, metavar="ACTION")
    ls = isub.add_parser("list", help="incidents, newest first")
    ls.add_argument("--store", default=argparse.SUPPRESS, help=store_help)  # after the action too
    ls.add_argument("--state", choices=("open", "acknowledged", "resolved"))
    ls.add_argument("--limit", type=int, default=50)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=_list)
    r = isub.add_parser("report", help="the post-incident report of one incident, as Markdown")
    r.add_argument("incident_id")
    r.add_argument("--store", default=argparse.SUPPRESS, help=store_help)
    r.add_argument("-o", "--output", help="write the report to this file instead of standard output")
    r.set_defaults(func=_report)


def _open(args):
    from telemetry.store import StoreError, open_store

    try:
        return open_store(args.store, migrate=False)
    except (StoreError, ValueError, OSError) as exc:
        raise CommandError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None


def _store_error(exc) -> CommandError:
    text = str(exc)
    if "UNKNOWN_TABLE" in text or "doesn't exist" in text:
        return CommandError("this store has no incidents table (its schema is older than this release): "
                            "run `voxwatch store init --store URL` to upgrade it")
    return CommandError(text.splitlines()[0] if text else type(exc).__name__)


def _list(args) -> int:
    from alerts import tables as incident_store
    from telemetry.store import StoreError

    store = _open(args)
    try:
        items = incident_store.list_incidents(store, state=args.state, limit=args.limit)
    except StoreError as exc:
        raise _store_error(exc) from None
    finally:
        store.close()
    if args.json:
        print(json.dumps([i.to_json(timeline=False) for i in items], default=str))
        return 0
    if not items:
        print("no incidents")
    for i in items:
        opened = datetime.fromtimestamp(i.opened_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
        print(f"{i.incident_id}  {i.state:<12} {i.severity:<7} {opened} UTC  {i.title}  [{', '.join(i.scope)}]")
    return 0


def _report(args) -> int:
    from alerts import tables as incident_store
    from alerts.incidents.charts import data_uri, incident_charts
    from alerts.incidents.report import markdown
    from telemetry.store import StoreError

    store = _open(args)
    try:
        inc = incident_store.load_incident(store, args.incident_id)
        charts = incident_charts(store, inc) if inc is not None else []
    except StoreError as exc:
        raise _store_error(exc) from None
    finally:
        store.close()
    if inc is None:
        raise CommandError(f"no incident with id {args.incident_id!r} in this store (see `voxwatch incident list`)")
    if args.output:
        out = Path(args.output)
        try:
            # the charts as SVG files beside the report, linked by name (any Markdown viewer shows them)
            links = []
            for n, (title, svg) in enumerate(charts, 1):
                image = out.with_name(f"{out.stem}-chart{n}.svg")
                image.write_text(svg)
                links.append((title, image.name))
            out.write_text(markdown(inc, charts=links))
        except OSError as exc:
            raise CommandError(f"cannot write {args.output}: {exc.strerror or exc}") from None
        print(f"wrote {args.output}" + (f" and {len(links)} chart(s) beside it" if links else ""), file=sys.stderr)
        return 0
    text = markdown(inc, charts=[(title, data_uri(svg)) for title, svg in charts])
    sys.stdout.write(text)
    return 0
