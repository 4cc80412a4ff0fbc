"""`voxwatch init DIR` writes a starter config folder (service config with the shipped routing inline,
and a copy of the shipped rules to edit); `voxwatch config check FILE` checks a config file and all
it names, like `promtool check config` / `amtool check-config`: one line per problem, exit 1."""

from __future__ import annotations

import json
import secrets
import sys
from pathlib import Path

from voxwatch.cli import CommandError

STARTER = """\
# Voxwatch service configuration, written by `voxwatch init`.
#   check it:  voxwatch config check {name}
#   run it:    voxwatch serve --config {name}
#   reload:    kill -HUP <pid>, or POST /-/reload with an admin token (a bad file is refused whole)
# ${{VAR}} and ${{VAR:-default}} are read from the environment when the file is loaded; quote them
# ("${{VAR}}") and keep secrets there. A ${{VAR}} that is not set is an error.
store: chdb://./var/voxwatch          # or clickhouse://user:password@host:9000/voxwatch
host: 127.0.0.1
port: 8000
dashboard_port: 8501
# external_url: https://voxwatch.example.com   # where people reach this service (alert links)
tokens:
  - {{name: dashboard, token: "{read}", scopes: [read]}}
  - {{name: oncall, token: "{admin}", scopes: [admin]}}
limits: {{max_range_days: 31, sql_max_rows: 10000, sql_max_seconds: 10}}
calls:                                  # POST /v1/calls and the caller page /call
  cors_origins: []                      # e.g. [https://support.example.com]: pages there may place calls
  # token: "${{VOXWATCH_CALLER_TOKEN}}"  # callers then send Authorization: Bearer <token>

# Alert rules: files, folders or globs, relative to this file. Add your own file next to the
# copies of the shipped ones, or edit those.
rule_files:
  - rules/

# Routing, receivers and inhibition (Alertmanager's shape). Receivers: webhook (url, secret),
# alertmanager (url or urls, resend_delay, lease), pagerduty (routing_key), action.
alerting:
{routing}"""


def register(sub) -> None:
    i = sub.add_parser("init", help="write a starter config folder (service config, rules, routing) to edit")
    i.add_argument("dir", help="folder to create (or fill)")
    i.add_argument("--force", action="store_true", help="overwrite files that exist")
    i.set_defaults(func=_init)

    p = sub.add_parser("config", help="service configuration: check")
    csub = p.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    c = csub.add_parser("check", help="check a config file, its rule files, routes, receivers and metrics")
    c.add_argument("file", help="the service config (.yaml or .toml)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=_check)


def starter_files() -> dict[str, str]:
    """What `init` writes: relative path -> text."""
    from alerts.ruleset import DEFAULT_RULES_DIR

    routing = (DEFAULT_RULES_DIR / "routing.yaml").read_text()
    indented = "".join(f"  {line}" if line.strip() else line for line in routing.splitlines(keepends=True))
    files = {"voxwatch.yaml": STARTER.format(name="voxwatch.yaml", routing=indented,
                                             read="vxr_" + secrets.token_urlsafe(24),
                                             admin="vxa_" + secrets.token_urlsafe(24))}
    for f in sorted(DEFAULT_RULES_DIR.glob("*.yaml")):
        if f.name != "routing.yaml":
            files[f"rules/{f.name}"] = f.read_text()
    return files


def _init(args) -> int:
    root = Path(args.dir)
    files = starter_files()
    existing = [p for p in files if (root / p).exists()]
    if existing and not args.force:
        raise CommandError(f"{root}: {', '.join(existing)} already exist (use --force to overwrite)")
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / "voxwatch.yaml").chmod(0o600)  # it holds API tokens
    print(f"wrote {len(files)} files to {root}: voxwatch.yaml, rules/ ({len(files) - 1} rule files)")
    print(f"next: voxwatch config check {root / 'voxwatch.yaml'}")
    return 0


def _check(args) -> int:
    from voxwatch.config_rules import check_config

    settings, ruleset, problems = check_config(args.file)
    if args.json:
        print(json.dumps({"ok": not problems, "problems": problems,
                          "rule_files": ruleset.sources if ruleset else [],
                          "rules": len(ruleset.rules()) if ruleset else 0}))
        return 1 if problems else 0
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        return 1
    used = [f"{rc.name} ({rc.type}{'' if _on(rc) else ', off'})" for rc in ruleset.receivers]
    print(f"{args.file}: ok: {len(ruleset.rules())} rules in {len(ruleset.sources)} file(s); "
          f"receivers: {', '.join(used)}")
    return 0


def _on(rc) -> bool:
    if rc.type == "action":
        return True
    if rc.type == "pagerduty":
        return bool(rc.routing_key)
    return bool(rc.all_urls())
