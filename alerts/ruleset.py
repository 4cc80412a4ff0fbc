"""Alert rule files: YAML validated with pydantic, errors that name the file, the rule and the field.

A rule file holds `groups` of rules (threshold, anomaly, predictive, slo) and, optionally, the
notification routing (`route`, `receivers`, `inhibit_rules`). `load_rules(paths)` merges several
files into one `RuleSet`; an invalid file raises `RuleFileError` and nothing is half-loaded.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from alerts.model import DEFAULT_LADDER
from alerts.templates import TemplateError, check_template

DEFAULT_RULES_DIR = Path(__file__).parent / "rules"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, None: 1.0}


def parse_duration(value: Any) -> float:
    """'30s', '5m', '1h', '3d', 0.5 -> seconds (float). Bare numbers are seconds."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"duration must not be negative: {value!r}")
        return float(value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return float(m.group(1)) * _UNIT_S[m.group(2)]
    raise ValueError(f"not a duration: {value!r} (use e.g. 500ms, 30s, 5m, 1h, 3d)")


def format_duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


Duration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Selector(_Model):
    """Which series of a catalog metric: exact matches and regex matches on labels."""

    metric: str
    match: dict[str, str] = Field(default_factory=dict)
    match_re: dict[str, str] = Field(default_factory=dict)

    @field_validator("match_re")
    @classmethod
    def _regexes_compile(cls, v: dict[str, str]) -> dict[str, str]:
        for name, pattern in v.items():
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"match_re.{name}: bad regex {pattern!r}: {exc}") from None
        return v


class ReleaseCondition(_Model):
    """Low-water mark: the action is kept until `metric` (the series with the alert's values of
    `same_labels`), averaged over the last `for`, is below `below`."""

    metric: str
    same_labels: list[str] = Field(default_factory=list)
    below: float
    for_: Duration = Field(120.0, alias="for")


class ActionSpec(_Model):
    """A degradation action the rule asks for while it fires."""

    level: str  # the pipeline's degradation level name, e.g. REGION_FAILOVER
    region_label: str | None = None  # take the region from this alert label
    region: str | None = None  # or a fixed region
    effect_metric: str | None = None  # the metric that should recover once applied
    effect_match: dict[str, str] = Field(default_factory=dict)
    effect_quantile: float | None = Field(None, gt=0, lt=1)  # histogram effect metrics: which quantile
    effect_window: Duration = 60.0
    min_hold: Duration = 120.0  # never revert sooner than this after applying
    revert_after: Duration = 60.0  # the alert must stay resolved this long before the revert
    release: ReleaseCondition | None = None  # and, if given, the cause must be gone this long


class RuleBase(_Model):
    name: str = Field(alias="alert")
    severity: Literal["page", "ticket", "critical", "warning", "info"] = "warning"
    for_: Duration = Field(0.0, alias="for")
    keep_firing_for: Duration = 0.0
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    action: ActionSpec | None = None

    @field_validator("name")
    @classmethod
    def _name_is_identifier(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", v):
            raise ValueError(f"alert name {v!r} must be an identifier (letters, digits, _)")
        return v

    @field_validator("annotations")
    @classmethod
    def _templates_parse(cls, v: dict[str, str]) -> dict[str, str]:
        for key, text in v.items():
            try:
                check_template(text)
            except TemplateError as exc:
                raise ValueError(f"annotations.{key}: {exc}") from None
        return v


Aggregation = Literal["avg", "min", "max", "last", "sum", "rate", "increase", "quantile", "mean_from_histogram"]
Op = Literal[">", ">=", "<", "<=", "==", "!="]


class ThresholdRule(RuleBase):
    """agg_over_window(series) op threshold, per `by` label set (other labels aggregated away)."""

    type: Literal["threshold"]
    expr: Selector
    aggregation: Aggregation = "avg"
    quantile: float | None = Field(None, gt=0, lt=1)
    window: Duration = 60.0
    by: list[str] = Field(default_factory=list)
    ratio_to: Selector | None = None  # value = agg(expr) / agg(ratio_to), e.g. error ratios
    op: Op = ">"
    threshold: float
    min_denominator: float = 0.0  # ratios with a smaller denominator are not evaluated

    @model_validator(mode="after")
    def _quantile_needs_q(self):
        if self.aggregation == "quantile" and self.quantile is None:
            raise ValueError("aggregation 'quantile' needs a 'quantile' field (e.g. 0.99)")
        if self.aggregation != "quantile" and self.quantile is not None:
            raise ValueError("'quantile' is only used with aggregation: quantile")
        if self.window <= 0:
            raise ValueError("window must be positive")
        return self


class AnomalyRule(RuleBase):
    """Holds while a matching anomaly finding was seen within `window`."""

    type: Literal["anomaly"]
    kinds: list[Literal["saturation_trend", "level_shift", "spike", "multivariate"]] = Field(min_length=1)
    metric: str | None = None  # exact metric name, or a glob (*) over names
    match: dict[str, str] = Field(default_factory=dict)  # on the finding's labels
    match_re: dict[str, str] = Field(default_factory=dict)
    detector: str | None = None
    min_score: float = Field(0.0, ge=0, le=1)
    min_confidence: float = Field(0.0, ge=0, le=1)
    window: Duration = 120.0
    by: list[str] | None = None  # label names from the finding; None = all of the finding's labels


class PredictiveRule(RuleBase):
    """Holds while the forecast time to exhaustion is below `horizon`.

    `source: findings` uses saturation_trend findings (the anomaly room's forecast); `source: series`
    fits a least-squares line over `window` of the metric and projects when it reaches `capacity`
    (Prometheus' predict_linear), so a rule works even without the detector.
    """

    type: Literal["predictive"]
    source: Literal["findings", "series"] = "findings"
    metric: str | None = None
    match: dict[str, str] = Field(default_factory=dict)  # source: findings: on the finding's labels
    match_re: dict[str, str] = Field(default_factory=dict)
    expr: Selector | None = None  # for source: series
    capacity: float = 1.0
    min_value: float | None = None  # source: series: only project series at least this high now
    horizon: Duration
    min_confidence: float = Field(0.0, ge=0, le=1)
    window: Duration = 300.0
    by: list[str] | None = None

    @model_validator(mode="after")
    def _series_needs_expr(self):
        if self.source == "series" and self.expr is None:
            raise ValueError("source: series needs 'expr' (the metric to project)")
        return self


class BurnWindow(_Model):
    long: Duration
    short: Duration
    factor: float = Field(gt=0)
    severity: Literal["page", "ticket"]

    @model_validator(mode="after")
    def _short_below_long(self):
        if self.short >= self.long:
            raise ValueError(f"short window ({format_duration(self.short)}) must be shorter than long")
        return self


# Google SRE workbook, 30-day SLO (FACTS.md).
DEFAULT_BURN_WINDOWS = [
    {"long": "1h", "short": "5m", "factor": 14.4, "severity": "page"},
    {"long": "6h", "short": "30m", "factor": 6, "severity": "page"},
    {"long": "1d", "short": "2h", "factor": 3, "severity": "ticket"},
    {"long": "3d", "short": "6h", "factor": 1, "severity": "ticket"},
]


class LatencySLI(_Model):
    """Good events: histogram observations at or below `threshold` seconds."""

    kind: Literal["latency"]
    metric: str  # a histogram in the catalog
    threshold: float = Field(gt=0)
    match: dict[str, str] = Field(default_factory=dict)


class ErrorSLI(_Model):
    """Bad events over total events, both counters."""

    kind: Literal["errors"]
    bad: Selector
    total: Selector


class SloRule(RuleBase):
    """Multi-window, multi-burn-rate alert on an objective; one alert instance per burn window pair."""

    type: Literal["slo"]
    objective: float = Field(gt=0, lt=1)
    sli: Annotated[LatencySLI | ErrorSLI, Field(discriminator="kind")]
    burn_windows: list[BurnWindow] = Field(default_factory=lambda: [BurnWindow(**w) for w in DEFAULT_BURN_WINDOWS])
    min_events: float = 0.0  # a window with fewer events is not evaluated (quiet night)


Rule = Annotated[ThresholdRule | AnomalyRule | PredictiveRule | SloRule, Field(discriminator="type")]


class RuleGroup(_Model):
    name: str
    interval: Duration = 1.0
    rules: list[Rule] = Field(default_factory=list)


class Route(_Model):
    """Alertmanager-style routing tree: the first matching child wins unless `continue`."""

    receiver: str
    match: dict[str, str] = Field(default_factory=dict)
    match_re: dict[str, str] = Field(default_factory=dict)
    group_by: list[str] = Field(default_factory=lambda: ["alertname"])
    group_wait: Duration = 30.0
    group_interval: Duration = 300.0
    repeat_interval: Duration = 14400.0
    continue_: bool = Field(False, alias="continue")
    routes: list[Route] = Field(default_factory=list)


class RetryPolicy(_Model):
    initial: Duration = 1.0
    max_backoff: Duration = 60.0
    multiplier: float = Field(2.0, ge=1)
    jitter: float = Field(0.2, ge=0, le=1)
    max_elapsed: Duration = 3600.0  # give up (result failed) after this much time
    timeout: Duration = 10.0  # per attempt, wall-clock (real I/O)


PAGERDUTY_ROUTING_KEY_ENV = "PAGERDUTY_ROUTING_KEY"


class ReceiverConfig(_Model):
    name: str
    type: Literal["webhook", "pagerduty", "alertmanager", "action"]
    url: str | None = None  # ${ENV} and ${ENV:-default} are expanded at load
    urls: list[str] = Field(default_factory=list)  # alertmanager: every instance of an HA cluster
    secret: str | None = None  # Standard Webhooks signing secret (whsec_<base64> or raw text)
    routing_key: str | None = None  # PagerDuty (else $PAGERDUTY_ROUTING_KEY; without one the receiver is off)
    send_resolved: bool = True
    max_alerts: int = Field(0, ge=0)  # 0 = no limit; the rest is counted in truncatedAlerts
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    # alertmanager: every firing alert is pushed again after resend_delay (Prometheus: 1m) with
    # endsAt = now + lease, so Alertmanager never resolves it by itself while it fires here
    resend_delay: Duration = 60.0
    lease: Duration | None = None  # default 4 x resend_delay (Prometheus: 4 x max(eval interval, resend_delay))

    @model_validator(mode="after")
    def _needs(self):
        if self.urls and self.type != "alertmanager":
            raise ValueError("'urls' is for alertmanager receivers (others take one 'url')")
        if self.type == "alertmanager":
            if self.resend_delay <= 0:
                raise ValueError("resend_delay must be above 0")
            if self.lease is not None and self.lease < 2 * self.resend_delay:
                raise ValueError(f"lease ({format_duration(self.lease)}) must be at least twice resend_delay "
                                 f"({format_duration(self.resend_delay)}), or one lost push resolves the alert")
        for u in self.all_urls():
            if not u.startswith(("http://", "https://")):
                raise ValueError(f"url {u!r} must start with http:// or https://")
        return self

    def all_urls(self) -> list[str]:
        """The receiver's URLs (an empty `url` means the receiver is off)."""
        return [u for u in [self.url or "", *self.urls] if u]

    def lease_s(self, eval_interval: float = 0.0) -> float:
        return self.lease if self.lease is not None else 4.0 * max(self.resend_delay, eval_interval)

    def effective_routing_key(self, env=None) -> str:
        env = os.environ if env is None else env
        return self.routing_key or env.get(PAGERDUTY_ROUTING_KEY_ENV, "")


class InhibitRule(_Model):
    source_match: dict[str, str] = Field(default_factory=dict)
    target_match: dict[str, str] = Field(default_factory=dict)
    equal: list[str] = Field(default_factory=list)


class RuleFile(_Model):
    groups: list[RuleGroup] = Field(default_factory=list)
    route: Route | None = None
    receivers: list[ReceiverConfig] = Field(default_factory=list)
    inhibit_rules: list[InhibitRule] = Field(default_factory=list)


class RuleFileError(ValueError):
    """A rule file that cannot be loaded; the message names the file, the rule and the field."""


class RuleSet(_Model):
    """Every rule and the routing of all loaded files."""

    groups: list[RuleGroup]
    route: Route
    receivers: list[ReceiverConfig]
    inhibit_rules: list[InhibitRule]
    sources: list[str] = Field(default_factory=list)
    rule_sources: dict[str, str] = Field(default_factory=dict)  # alert name -> file:group

    def rules(self) -> list[Any]:
        return [r for g in self.groups for r in g.rules]

    def rule(self, name: str):
        for r in self.rules():
            if r.name == name:
                return r
        raise KeyError(name)

    def receiver(self, name: str) -> ReceiverConfig:
        for r in self.receivers:
            if r.name == name:
                return r
        raise KeyError(name)


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand_env(text: str, env: dict[str, str]) -> str:
    return _ENV.sub(lambda m: env.get(m.group(1), m.group(2) or ""), text)


def _locate(path: str, doc: Any, loc: tuple) -> str:
    """Turn a pydantic error location into 'group G, rule R, field F'."""
    parts: list[str] = []
    node = doc
    i = 0
    while i < len(loc):
        key = loc[i]
        if key == "groups" and i + 1 < len(loc) and isinstance(node, dict):
            gi = loc[i + 1]
            try:
                group = node["groups"][gi]
            except (KeyError, IndexError, TypeError):
                parts.append(f"groups[{gi}]")
                i += 2
                continue
            gname = group.get("name", f"#{gi}") if isinstance(group, dict) else f"#{gi}"
            parts.append(f"group {gname!r}")
            if i + 3 < len(loc) and loc[i + 2] == "rules":
                ri = loc[i + 3]
                try:
                    rule = group["rules"][ri]
                    rname = rule.get("alert", f"#{ri}") if isinstance(rule, dict) else f"#{ri}"
                except (KeyError, IndexError, TypeError):
                    rname = f"#{ri}"
                parts.append(f"rule {rname!r}")
                rest = [str(x) for x in loc[i + 4 :]]
                # pydantic puts the union's tag (the rule type, the SLI kind) into the path: drop it
                if rest and rest[0] in ("threshold", "anomaly", "predictive", "slo"):
                    rest = rest[1:]
                if len(rest) > 1 and rest[0] == "sli" and rest[1] in ("latency", "errors"):
                    rest = [rest[0]] + rest[2:]
                if rest:
                    parts.append("field " + ".".join("for" if p == "for_" else p for p in rest))
                return f"{path}: " + ", ".join(parts)
            i += 2
            continue
        if key in ("receivers", "inhibit_rules") and i + 1 < len(loc) and isinstance(loc[i + 1], int) and isinstance(node, dict):
            try:
                item = node[key][loc[i + 1]]
            except (KeyError, IndexError, TypeError):
                item = None
            name = item.get("name") if isinstance(item, dict) and key == "receivers" else None
            parts.append(f"receiver {name!r}" if name else f"{key}[{loc[i + 1]}]")
            rest = [str(x) for x in loc[i + 2 :]]
            if rest:
                parts.append("field " + ".".join(rest))
            return f"{path}: " + ", ".join(parts)
        parts.append(str(key))
        i += 1
    return f"{path}: " + (", ".join(parts) if parts else "(top level)")


def parse_rule_file(path: str | Path, text: str | None = None, env: dict[str, str] | None = None) -> RuleFile:
    path = str(path)
    if text is None:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise RuleFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    text = _expand_env(text, dict(os.environ) if env is None else env)
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise RuleFileError(f"{path}:{where} not valid YAML: {getattr(exc, 'problem', exc)}") from None
    return parse_rule_doc(path, doc)


def parse_rule_doc(path: str, doc: Any) -> RuleFile:
    """Validate an already parsed rule file (or a config file's `alerting` section); `path` is what
    error lines start with."""
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise RuleFileError(f"{path}: expected a mapping with 'groups' at the top, got {type(doc).__name__}")
    try:
        return RuleFile.model_validate(doc)
    except ValidationError as exc:
        lines = []
        for err in exc.errors()[:5]:
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"{_locate(path, doc, tuple(err['loc']))}: {msg}")
        more = len(exc.errors()) - 5
        if more > 0:
            lines.append(f"{path}: ... and {more} more errors")
        raise RuleFileError("\n".join(lines)) from None


DEFAULT_ROUTE = Route(receiver="null", group_by=["alertname"])


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            out.extend(sorted(list(p.glob("*.yaml")) + list(p.glob("*.yml"))))
        else:
            out.append(p)
    return out


def load_rules(paths: Iterable[str | Path] | None = None, env: dict[str, str] | None = None,
               inline: tuple[str, RuleFile] | None = None) -> RuleSet:
    """Load and merge rule files (directories are globbed for *.yaml), plus `inline` routing (a
    config file's `alerting` section, as (where, parsed)). Raises RuleFileError."""
    files = expand_paths([DEFAULT_RULES_DIR] if paths is None else paths)
    if not files and inline is None:
        raise RuleFileError("no rule files given")
    groups: list[RuleGroup] = []
    route: Route | None = None
    receivers: dict[str, ReceiverConfig] = {}
    inhibit: list[InhibitRule] = []
    route_from = None
    seen_rules: dict[str, str] = {}
    parsed = [(f, parse_rule_file(f, env=env)) for f in files]
    if inline is not None:
        parsed.append(inline)
    for f, rf in parsed:
        for g in rf.groups:
            for r in g.rules:
                if r.name in seen_rules:
                    raise RuleFileError(
                        f"{f}: group {g.name!r}, rule {r.name!r}: duplicate alert name (also in {seen_rules[r.name]})"
                    )
                seen_rules[r.name] = f"{f}: group {g.name!r}"
        groups.extend(rf.groups)
        if rf.route is not None:
            if route is not None:
                raise RuleFileError(f"{f}: route: a second routing tree (only one file may define 'route')")
            route, route_from = rf.route, f
        for rc in rf.receivers:
            if rc.name in receivers:
                raise RuleFileError(f"{f}: receivers: duplicate receiver {rc.name!r}")
            if rc.type == "pagerduty" and not rc.routing_key:
                # the documented variable: a PagerDuty receiver without a key in the file takes it
                rc = rc.model_copy(update={"routing_key": rc.effective_routing_key(env)})
            receivers[rc.name] = rc
        inhibit.extend(rf.inhibit_rules)
    if route is None:
        route, route_from = DEFAULT_ROUTE, None
    _check_route_receivers(route, receivers, [route_from] if route_from is not None else [f for f, _ in parsed])
    return RuleSet(
        groups=groups,
        route=route,
        receivers=list(receivers.values()),
        inhibit_rules=inhibit,
        sources=[str(f) for f, _ in parsed],
        rule_sources={name: where for name, where in seen_rules.items()},
    )


def _check_route_receivers(route: Route, receivers: dict[str, ReceiverConfig], files) -> None:
    stack = [route]
    while stack:
        r = stack.pop()
        if r.receiver != "null" and r.receiver not in receivers:
            raise RuleFileError(
                f"{', '.join(map(str, files))}: route: receiver {r.receiver!r} is not defined in 'receivers'"
            )
        stack.extend(r.routes)


def check_against_catalog(ruleset: RuleSet, catalog) -> list[str]:
    """Problems a rule file cannot show by itself: metrics that are not in the catalog, the wrong
    metric type for an aggregation, labels the metric does not have, SLO thresholds off the buckets."""
    problems: list[str] = []

    def where(rule, fld: str) -> str:
        return f"{ruleset.rule_sources.get(rule.name, '?')}, rule {rule.name!r}, field {fld}"

    def spec_of(rule, fld: str, metric: str, types: tuple[str, ...] | None = None):
        spec = catalog.get(metric)
        if spec is None:
            problems.append(f"{where(rule, fld)}: metric {metric!r} is not in the catalog")
            return None
        if types and spec.type not in types:
            problems.append(f"{where(rule, fld)}: {metric} is a {spec.type}; this needs a {' or '.join(types)}")
        return spec

    def labels_ok(rule, fld: str, spec, names) -> None:
        if spec is None:
            return
        extra = [n for n in names if n not in spec.labels and n != "le"]
        if extra:
            problems.append(f"{where(rule, fld)}: {spec.name} has no label(s) {', '.join(extra)} (it has: {', '.join(spec.labels) or 'none'})")

    agg_types = {"rate": ("counter",), "increase": ("counter",), "quantile": ("histogram",), "mean_from_histogram": ("histogram",)}
    for rule in ruleset.rules():
        if rule.type == "threshold":
            for fld, sel in (("expr", rule.expr), ("ratio_to", rule.ratio_to)):
                if sel is None:
                    continue
                spec = spec_of(rule, f"{fld}.metric", sel.metric, agg_types.get(rule.aggregation))
                labels_ok(rule, f"{fld}.match", spec, list(sel.match) + list(sel.match_re))
                labels_ok(rule, "by", spec, rule.by)
        elif rule.type == "predictive":
            if rule.source == "series":
                spec = spec_of(rule, "expr.metric", rule.expr.metric, ("gauge",))
                labels_ok(rule, "by", spec, rule.by or [])
            elif rule.metric and "*" not in rule.metric:
                spec = spec_of(rule, "metric", rule.metric)
                if spec is not None and not spec.is_saturation:
                    problems.append(f"{where(rule, 'metric')}: {spec.name} declares no capacity, so no saturation forecast exists for it")
        elif rule.type == "anomaly":
            if rule.metric and "*" not in rule.metric:
                spec_of(rule, "metric", rule.metric)
        elif rule.type == "slo":
            if rule.sli.kind == "latency":
                spec = spec_of(rule, "sli.metric", rule.sli.metric, ("histogram",))
                if spec is not None and spec.buckets and not any(abs(b - rule.sli.threshold) < 1e-12 for b in spec.buckets):
                    problems.append(f"{where(rule, 'sli.threshold')}: {rule.sli.threshold} is not a bucket bound of {spec.name} ({', '.join(f'{b:g}' for b in spec.buckets)})")
                labels_ok(rule, "sli.match", spec, list(rule.sli.match))
            else:
                for fld, sel in (("sli.bad", rule.sli.bad), ("sli.total", rule.sli.total)):
                    spec = spec_of(rule, f"{fld}.metric", sel.metric, ("counter",))
                    labels_ok(rule, f"{fld}.match", spec, list(sel.match) + list(sel.match_re))
        if rule.action is not None:
            if rule.action.level not in DEFAULT_LADDER:
                problems.append(f"{where(rule, 'action.level')}: unknown degradation level {rule.action.level!r} "
                                f"(the pipeline's ladder: {', '.join(DEFAULT_LADDER)})")
        if rule.action is not None and rule.action.release is not None:
            spec = spec_of(rule, "action.release.metric", rule.action.release.metric, ("gauge",))
            labels_ok(rule, "action.release.same_labels", spec, rule.action.release.same_labels)
        if rule.action is not None and rule.action.effect_metric:
            spec = spec_of(rule, "action.effect_metric", rule.action.effect_metric)
            if spec is not None and rule.action.effect_quantile and spec.type != "histogram":
                problems.append(f"{where(rule, 'action.effect_quantile')}: {spec.name} is not a histogram")
    return problems
