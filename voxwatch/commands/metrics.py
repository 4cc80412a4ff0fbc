"""`voxwatch metrics`: browse the metric catalog (list, show) and regenerate docs/metrics.md."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from voxwatch.cli import CommandError


def register(sub) -> None:
    p = sub.add_parser("metrics", help="the metric catalog: list, show, reference docs")
    msub = p.add_subparsers(dest="metrics_command", required=True, metavar="ACTION")

    ls = msub.add_parser("list", help="every declared metric (id, name, type, unit, labels, layer)")
    ls.add_argument("--layer", help="only this layer (edge, processing, intelligence, integration, runtime, business)")
    ls.add_argument("--component", help="only this component (pool, llm, stt, ...)")
    ls.add_argument("--type", choices=("counter", "gauge", "histogram"), help="only this metric type")
    ls.add_argument("--json", action="store_true", help="print a JSON list")
    ls.set_defaults(func=_list)

    show = msub.add_parser("show", help="one metric in full, by id (312) or name")
    show.add_argument("metric", metavar="ID_OR_NAME")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=_show)

    docs = msub.add_parser("docs", help="render the Markdown reference (docs/metrics.md)")
    docs.add_argument("--output", "-o", help="write to this file instead of stdout")
    docs.add_argument("--check", action="store_true", help="exit 1 if --output differs from the catalog")
    docs.set_defaults(func=_docs)


def _catalog():
    from telemetry.catalog import CatalogError, default_catalog

    try:
        return default_catalog()
    except CatalogError as exc:
        raise CommandError(str(exc)) from None


def _list(args) -> int:
    from telemetry.catalog import LAYERS

    catalog = _catalog()
    metrics = list(catalog)
    if args.layer:
        if args.layer not in LAYERS:
            raise CommandError(f"unknown layer {args.layer!r}; choose one of {', '.join(LAYERS)}")
        metrics = [m for m in metrics if m.layer == args.layer]
    if args.component:
        if args.component not in catalog.components():
            raise CommandError(f"unknown component {args.component!r}; known: {', '.join(catalog.components())}")
        metrics = [m for m in metrics if m.component == args.component]
    if args.type:
        metrics = [m for m in metrics if m.type == args.type]
    if args.json:
        print(json.dumps([m.to_dict() for m in metrics]))
        return 0
    if not metrics:
        return 0
    w = max(len(m.name) for m in metrics)
    print(f"{'ID':>4}  {'NAME':<{w}}  {'TYPE':<9}  {'UNIT':<7}  {'LAYER':<12}  LABELS")
    for m in metrics:
        print(f"{m.id:>4}  {m.name:<{w}}  {m.type:<9}  {m.unit:<7}  {m.layer:<12}  {','.join(m.labels)}")
    print(f"{len(metrics)} metric(s)", file=sys.stderr)
    return 0


def _show(args) -> int:
    from telemetry.catalog.reference import promql_hint, render_text, sql_hint

    catalog = _catalog()
    try:
        spec = catalog.resolve(args.metric)
    except KeyError as exc:
        raise CommandError(exc.args[0]) from None
    if args.json:
        print(json.dumps({**spec.to_dict(), "samples": list(spec.sample_names()),
                          "promql": promql_hint(spec, catalog), "sql": sql_hint(spec)}))
    else:
        print(render_text(spec, catalog))
    return 0


def _docs(args) -> int:
    from telemetry.catalog.reference import render_markdown

    text = render_markdown(_catalog())
    if args.check:
        if not args.output:
            raise CommandError("--check needs --output FILE to compare with")
        current = Path(args.output).read_text() if Path(args.output).exists() else ""
        if current != text:
            print(f"{args.output} is out of date; run: voxwatch metrics docs --output {args.output}", file=sys.stderr)
            return 1
        return 0
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0
