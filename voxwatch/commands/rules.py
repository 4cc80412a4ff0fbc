"""`voxwatch rules check FILE...` validates rule files (and checks them against the metric catalog);
`voxwatch rules test FILE --scenario NAME [--json]` backtests them on a simulated scenario."""

from __future__ import annotations

import json
import sys

from voxwatch.cli import CommandError


def register(sub) -> None:
    p = sub.add_parser("rules", help="alert rules: validate, backtest")
    rsub = p.add_subparsers(dest="rules_command", required=True, metavar="ACTION")

    c = rsub.add_parser("check", help="validate rule files (YAML schema, templates, catalog metrics)")
    c.add_argument("files", nargs="*", help="rule files or folders (default: the shipped rule set)")
    c.add_argument("--no-catalog", action="store_true", help="skip the check against the metric catalog")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=_check)

    t = rsub.add_parser("test", help="replay a scenario and report, per rule, when it fired and how well")
    t.add_argument("files", nargs="*", help="rule files or folders (default: the shipped rule set)")
    t.add_argument("--scenario", required=True, help="scenario name or YAML path")
    t.add_argument("--duration", type=float, default=None, help="simulated seconds (default: the scenario's)")
    t.add_argument("--calls", type=int, default=None, help="concurrent calls (default: the scenario's)")
    t.add_argument("--seed", type=int, default=None)
    t.add_argument("--json", action="store_true")
    t.set_defaults(func=_test)


def _check(args) -> int:
    from alerts.ruleset import RuleFileError, check_against_catalog, load_rules

    try:
        rs = load_rules(args.files or None)
    except RuleFileError as exc:
        raise CommandError(str(exc).replace("\n", "\n  ")) from None
    problems: list[str] = []
    if not args.no_catalog:
        from telemetry.catalog import default_catalog

        problems = check_against_catalog(rs, default_catalog())
    if args.json:
        print(json.dumps({"ok": not problems, "files": rs.sources, "rules": len(rs.rules()), "problems": problems}))
    else:
        for p in problems:
            print(p, file=sys.stderr)
        if not problems:
            kinds: dict[str, int] = {}
            for r in rs.rules():
                kinds[r.type] = kinds.get(r.type, 0) + 1
            print(f"ok: {len(rs.rules())} rules ({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))}) "
                  f"in {len(rs.sources)} file(s); {len(rs.receivers)} receivers, {len(rs.inhibit_rules)} inhibit rules")
    if problems:
        raise CommandError(f"{len(problems)} problem(s) against the metric catalog")
    return 0


def _test(args) -> int:
    from alerts.ruleset import RuleFileError, load_rules

    try:
        rs = load_rules(args.files or None)
    except RuleFileError as exc:
        raise CommandError(str(exc).replace("\n", "\n  ")) from None
    from alerts.backtest import BacktestError, backtest, format_report

    try:
        report = backtest(rs, args.scenario, duration_s=args.duration, calls=args.calls, seed=args.seed)
    except BacktestError as exc:
        raise CommandError(str(exc)) from None
    if args.json:
        print(json.dumps(report, default=float))
    else:
        print(format_report(report))
    return 0
