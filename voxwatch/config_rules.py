"""From the operator's config file to the rule set the alert engine runs: rule files (globs, folders,
relative to the config file; default the shipped rules), the `alerting` section (routing tree,
receivers, inhibit rules; default the shipped routing.yaml), and the external URL.

`load_ruleset` is what `serve` and reload use (all or nothing: a ConfigError lists every problem);
`check_config` is `voxwatch config check`: every problem of the file, every rule file, every route
and receiver reference and every metric against the catalog, one line each.
"""

from __future__ import annotations

import glob
import os
import socket
from pathlib import Path

from alerts.ruleset import (
    DEFAULT_RULES_DIR,
    RuleFileError,
    RuleSet,
    load_rules,
    parse_rule_doc,
    parse_rule_file,
)
from voxwatch.config import ConfigError, Settings, load_settings

SHIPPED_ROUTING = "routing.yaml"


def rule_paths(settings: Settings) -> tuple[list[Path], list[str]]:
    """The rule files the settings name, and a problem line for each pattern that matches nothing."""
    if not settings.rule_files:
        shipped = sorted(DEFAULT_RULES_DIR.glob("*.yaml"))
        if settings.alerting is not None:  # the config brings its own routing
            shipped = [p for p in shipped if p.name != SHIPPED_ROUTING]
        return shipped, []
    files: list[Path] = []
    problems = []
    for i, pattern in enumerate(settings.rule_files):
        p = Path(pattern)
        if p.is_dir():
            found = sorted(list(p.glob("*.yaml")) + list(p.glob("*.yml")))
        else:
            found = sorted(Path(m) for m in glob.glob(pattern, recursive=True))
        if not found:
            problems.append(f"rule_files[{i}]: {pattern!r} matches no file")
        files.extend(f for f in found if f not in files)
    return files, problems


def _inline(settings: Settings, where: str):
    if settings.alerting is None:
        return None
    return (f"{where}: alerting", parse_rule_doc(f"{where}: alerting", settings.alerting))


def load_ruleset(settings: Settings, where: str = "config", env=None) -> RuleSet:
    """The rule set of these settings, or a ConfigError listing what is wrong."""
    files, problems = rule_paths(settings)
    if problems:
        problems = [f"{where}: {p}" for p in problems]
        raise ConfigError("; ".join(problems), problems)
    try:
        return load_rules(files, env=env, inline=_inline(settings, where))
    except RuleFileError as exc:
        lines = str(exc).splitlines()
        raise ConfigError("; ".join(lines), lines) from None


def external_url(settings: Settings, port: int | None = None) -> str:
    """The configured external URL, else http://<host>:<port> with a name people can reach (the
    machine's hostname when bound to every interface, never 0.0.0.0)."""
    if settings.external_url:
        return settings.external_url
    host = settings.host
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    return f"http://{host}:{port or settings.port}"


def check_config(path: str | Path, env=None) -> tuple[Settings | None, RuleSet | None, list[str]]:
    """Everything wrong with a config file and what it names; ([], settings, ruleset) when fine."""
    env = os.environ if env is None else env
    where = str(path)
    try:
        settings = load_settings(path, env=dict(env))
    except ConfigError as exc:
        return None, None, exc.problems
    problems: list[str] = []
    files, missing = rule_paths(settings)
    problems += [f"{where}: {p}" for p in missing]
    # each file alone first, so every broken file is named, not only the first
    for f in files:
        try:
            parse_rule_file(f, env=env)
        except RuleFileError as exc:
            problems += str(exc).splitlines()
    try:
        _inline(settings, where)
    except RuleFileError as exc:
        problems += str(exc).splitlines()
    if problems:
        return settings, None, problems
    try:
        ruleset = load_ruleset(settings, where, env=env)
    except ConfigError as exc:
        return settings, None, exc.problems
    from alerts.ruleset import check_against_catalog
    from telemetry.catalog import default_catalog

    problems += check_against_catalog(ruleset, default_catalog())
    problems += _receiver_problems(ruleset)
    return settings, ruleset, problems


def _receiver_problems(ruleset: RuleSet) -> list[str]:
    """Receivers that the routing tree never reaches are allowed (a spare); receivers that are
    switched off for lack of a URL or key are worth a line only when a route uses them."""
    used: set[str] = set()
    stack = [ruleset.route]
    while stack:
        r = stack.pop()
        used.add(r.receiver)
        stack.extend(r.routes)
    out = []
    for rc in ruleset.receivers:
        if rc.name in used and rc.type == "pagerduty" and rc.url and not rc.routing_key:
            out.append(f"receivers: {rc.name!r}: a pagerduty receiver with a url needs routing_key "
                       f"(or $PAGERDUTY_ROUTING_KEY)")
    return out
