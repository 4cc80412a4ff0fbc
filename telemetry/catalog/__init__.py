"""The metric catalog: every metric Voxwatch emits, declared once as data (the YAML files beside this module).

Each entry has a stable numeric id, a Prometheus-style name, a type, a unit, label names, the layer and
component it belongs to, a description, histogram buckets and, for saturation metrics, the capacity it
saturates against. Instruments, the snapshotter, docs, the CLI and dashboards all read this one catalog.

    >>> catalog = default_catalog()
    >>> catalog["voxwatch_pool_saturation_ratio"].id
    312
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

CATALOG_DIR = Path(__file__).resolve().parent

MetricType = Literal["counter", "gauge", "histogram"]
METRIC_TYPES: tuple[str, ...] = ("counter", "gauge", "histogram")
LAYERS: tuple[str, ...] = ("edge", "processing", "intelligence", "integration", "runtime", "business")

# unit -> the suffix the name must carry (before `_total` on counters); None: a plain count of things,
# whose noun is already in the name (connections, tokens, calls...).
UNITS: dict[str, str | None] = {
    "seconds": "_seconds",
    "bytes": "_bytes",
    "ratio": "_ratio",  # 0..1
    "factor": "_factor",  # a dimensionless multiplier that may exceed 1 (real-time factor, speedup)
    "dollars": "_dollars",
    "dbfs": "_dbfs",  # audio level, decibels relative to full scale
    "info": "_info",  # value 1, the labels carry the information
    "count": None,
    "bool": None,  # 0 or 1
    "level": None,  # an ordinal state (degradation level, circuit state)
    "score": None,  # a bounded quality score (e.g. MOS 1..5)
}
_UNIT_SUFFIXES = {s: u for u, s in UNITS.items() if s}

# Named bucket layouts, so the YAML says what a histogram measures rather than repeating numbers.
BUCKET_PRESETS: dict[str, tuple[float, ...]] = {
    # fine around the 300 ms voice budget so P95/P99 are read precisely
    "latency": (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.125, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0,
                1.5, 2.0, 3.0, 5.0, 10.0),
    "latency_fast": (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
    "latency_slow": (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 120.0),
    "duration_long": (5.0, 15.0, 30.0, 60.0, 120.0, 180.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0),
    "ratio": (0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0),
    "small_ratio": (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0),
    "factor": (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 4.0, 8.0),
    "count_small": (1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0, 34.0, 55.0, 89.0),
    "tokens": (16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0, 32768.0),
    "characters": (10.0, 25.0, 50.0, 100.0, 200.0, 400.0, 800.0, 1600.0),
    "bytes": (256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0),
    "dbfs": (-90.0, -70.0, -60.0, -50.0, -40.0, -30.0, -20.0, -10.0, 0.0),
    "score": (1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0),
    "dollars": (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0),
}
# when a histogram names no buckets, its unit picks them
_DEFAULT_BUCKETS = {
    "seconds": "latency", "ratio": "ratio", "factor": "factor", "bytes": "bytes", "count": "count_small",
    "dbfs": "dbfs", "score": "score", "dollars": "dollars",
}

_NAME_RE = re.compile(r"^voxwatch_[a-z][a-z0-9]*(_[a-z0-9]+)*$")
_LABEL_RE = re.compile(r"^[a-z][a-z0-9_]*$")
# Per-call identifiers have unbounded cardinality: they belong to the calls and spans tables.
FORBIDDEN_LABELS = frozenset({"call_id", "trace_id", "span_id", "session_id", "turn_id", "caller", "user_id",
                              "phone_number", "customer_id", "request_id"})
_RESERVED_LABELS = frozenset({"le", "quantile"})
_RESERVED_SUFFIXES = ("_bucket", "_sum", "_count", "_created")

DEFAULT_SERIES_LIMIT = 1000
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader parses the catalog ~10x faster


class CatalogError(ValueError):
    """A catalog file is malformed; the message names the file, the entry and the problem."""


def _bad(field: str, problem: str) -> ValueError:
    """An entry-level problem attributed to one field (pydantic reports those at the entry's level)."""
    return ValueError(f"{field}::{problem}")


class MetricSpec(BaseModel):
    """One declared metric."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: int = Field(ge=1, lt=2**32)
    name: str
    type: MetricType
    unit: str
    labels: tuple[str, ...] = ()
    layer: str
    component: str
    description: str = Field(min_length=10)
    buckets: tuple[float, ...] | None = None
    capacity: float | None = None  # the fixed value it saturates against (1.0 for a ratio)
    capacity_metric: str | None = None  # or the gauge holding the capacity, with a subset of its labels
    series_limit: int | None = Field(default=None, ge=1)  # overrides the Telemetry default
    # For an ordinal gauge (unit: level): the names of its values 0, 1, 2, ... lowest first. The one
    # place a ladder such as the degradation levels is written; the rooms that need it read it here.
    states: tuple[str, ...] | None = None

    @field_validator("name")
    @classmethod
    def _name_shape(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError(f"{v!r} is not a Prometheus name of the form voxwatch_snake_case")
        if v.endswith(_RESERVED_SUFFIXES):
            raise ValueError(f"{v!r} ends with a suffix Prometheus reserves for histogram/counter samples")
        return v

    @field_validator("unit")
    @classmethod
    def _unit_known(cls, v: str) -> str:
        if v not in UNITS:
            raise ValueError(f"unknown unit {v!r} (allowed: {', '.join(UNITS)})")
        return v

    @field_validator("layer")
    @classmethod
    def _layer_known(cls, v: str) -> str:
        if v not in LAYERS:
            raise ValueError(f"unknown layer {v!r} (allowed: {', '.join(LAYERS)})")
        return v

    @field_validator("component")
    @classmethod
    def _component_shape(cls, v: str) -> str:
        if not _LABEL_RE.match(v):
            raise ValueError(f"component {v!r} must be snake_case")
        return v

    @field_validator("labels")
    @classmethod
    def _labels_valid(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        seen = set()
        for label in v:
            if not _LABEL_RE.match(label):
                raise ValueError(f"label {label!r} is not a snake_case label name")
            if label in _RESERVED_LABELS:
                raise ValueError(f"label {label!r} is reserved by Prometheus")
            if label in FORBIDDEN_LABELS:
                raise ValueError(f"label {label!r} is a per-call identifier (unbounded cardinality); "
                                 "it belongs to the calls/spans tables, not to metric labels")
            if label in seen:
                raise ValueError(f"label {label!r} appears twice")
            seen.add(label)
        return v

    @field_validator("states")
    @classmethod
    def _states_valid(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("states, when given, name at least one value")
        for s in v:
            if not re.fullmatch(r"[A-Z][A-Z0-9_]*", s):
                raise ValueError(f"state {s!r} must be UPPER_SNAKE_CASE")
        if len(set(v)) != len(v):
            raise ValueError("states must be distinct")
        return v

    @field_validator("buckets", mode="before")
    @classmethod
    def _buckets_preset(cls, v):
        if isinstance(v, str):
            if v not in BUCKET_PRESETS:
                raise ValueError(f"unknown bucket preset {v!r} (known: {', '.join(BUCKET_PRESETS)})")
            return BUCKET_PRESETS[v]
        return v

    @model_validator(mode="after")
    def _consistent(self) -> MetricSpec:
        name = self.name
        if self.type == "counter":
            if not name.endswith("_total"):
                raise _bad("name", f"counter {name!r} must end with _total")
            base = name[: -len("_total")]
        else:
            if name.endswith("_total"):
                raise _bad("name", f"{self.type} {name!r} must not end with _total (only counters do)")
            base = name
        suffix = UNITS[self.unit]
        if suffix and not base.endswith(suffix):
            raise _bad("unit", f"unit {self.unit!r} needs the name to end with {suffix}"
                             f"{' (before _total)' if self.type == 'counter' else ''}")
        for s, unit in _UNIT_SUFFIXES.items():
            if base.endswith(s) and unit != self.unit:
                raise _bad("unit", f"name ends with {s} but unit is {self.unit!r} (expected {unit!r})")
        if self.type == "histogram":
            if self.buckets is None:
                preset = _DEFAULT_BUCKETS.get(self.unit)
                if preset is None:
                    raise _bad("buckets", f"histogram with unit {self.unit!r} needs explicit buckets")
                object.__setattr__(self, "buckets", BUCKET_PRESETS[preset])
            b = self.buckets
            if not b or any(not math.isfinite(x) for x in b) or any(x >= y for x, y in zip(b, b[1:], strict=False)):
                raise _bad("buckets", "buckets must be finite and strictly increasing")
        elif self.buckets is not None:
            raise _bad("buckets", f"buckets are only for histograms, not {self.type}")
        if self.capacity is not None and self.capacity_metric is not None:
            raise _bad("capacity", "give either capacity or capacity_metric, not both")
        if (self.capacity is not None or self.capacity_metric) and self.type == "counter":
            raise _bad("capacity", "a counter cannot saturate; capacity is for gauges and histograms")
        if self.capacity is not None and not (math.isfinite(self.capacity) and self.capacity > 0):
            raise _bad("capacity", "capacity must be a positive finite number")
        if "saturation" in name and self.capacity is None and self.capacity_metric is None:
            raise _bad("capacity", "a saturation metric must declare capacity or capacity_metric")
        if self.states is not None and (self.unit != "level" or self.type != "gauge"):
            raise _bad("states", "states name the values of a level gauge (type gauge, unit level)")
        return self

    # ---- derived facts
    @property
    def is_saturation(self) -> bool:
        return self.capacity is not None or self.capacity_metric is not None

    @property
    def prometheus_name(self) -> str:
        """The family name prometheus-client registers (counters drop `_total`, which it adds back)."""
        return self.name[: -len("_total")] if self.type == "counter" else self.name

    def sample_names(self) -> tuple[str, ...]:
        """The sample names this metric exposes (what /metrics and metric_series show)."""
        if self.type == "histogram":
            return (f"{self.name}_bucket", f"{self.name}_sum", f"{self.name}_count")
        return (self.name,)

    def to_dict(self) -> dict:
        d = self.model_dump()
        d["labels"] = list(self.labels)
        if self.buckets is not None:
            d["buckets"] = list(self.buckets)
        d["saturation"] = self.is_saturation
        if self.states is None:
            d.pop("states")
        else:
            d["states"] = list(self.states)
        return d


class Catalog:
    """The loaded catalog: look metrics up by name, id or either; iterate in id order."""

    def __init__(self, metrics: Iterable[MetricSpec], sources: Iterable[Path] = ()) -> None:
        self._metrics = tuple(sorted(metrics, key=lambda m: m.id))
        self._by_name = {m.name: m for m in self._metrics}
        self._by_id = {m.id: m for m in self._metrics}
        self._by_prom = {m.prometheus_name: m for m in self._metrics}
        self.sources = tuple(sources)

    def __len__(self) -> int:
        return len(self._metrics)

    def __iter__(self) -> Iterator[MetricSpec]:
        return iter(self._metrics)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __getitem__(self, name: str) -> MetricSpec:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(_unknown_metric_message(name, self._by_name)) from None

    def get(self, name: str) -> MetricSpec | None:
        return self._by_name.get(name)

    def by_id(self, metric_id: int) -> MetricSpec:
        try:
            return self._by_id[metric_id]
        except KeyError:
            raise KeyError(f"no metric with id {metric_id} in the catalog") from None

    def resolve(self, id_or_name: str | int) -> MetricSpec:
        """A metric by id (`312`, `"312"`, `"#312"`) or by name."""
        if isinstance(id_or_name, int):
            return self.by_id(id_or_name)
        text = id_or_name.strip().lstrip("#")
        if text.isdigit():
            return self.by_id(int(text))
        return self[text]

    def by_prometheus_name(self, family: str) -> MetricSpec | None:
        return self._by_prom.get(family)

    def states(self, name: str) -> tuple[str, ...]:
        """The named values of a level gauge, lowest first (e.g. the degradation ladder)."""
        states = self[name].states
        if states is None:
            raise KeyError(f"{name} declares no states in the catalog")
        return states

    @property
    def metrics(self) -> tuple[MetricSpec, ...]:
        return self._metrics

    def names(self) -> list[str]:
        return [m.name for m in self._metrics]

    def layer(self, layer: str) -> list[MetricSpec]:
        if layer not in LAYERS:
            raise KeyError(f"unknown layer {layer!r} (known: {', '.join(LAYERS)})")
        return [m for m in self._metrics if m.layer == layer]

    def components(self) -> list[str]:
        return sorted({m.component for m in self._metrics})

    def saturation_metrics(self) -> list[MetricSpec]:
        return [m for m in self._metrics if m.is_saturation]


def _unknown_metric_message(name: str, known: dict) -> str:
    import difflib

    close = difflib.get_close_matches(str(name), list(known), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return f"metric {name!r} is not declared in the catalog{hint}"


def _entry_error(path: Path, index: int, raw: object, exc: ValidationError) -> CatalogError:
    name = raw.get("name", "?") if isinstance(raw, dict) else "?"
    problems = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(entry)"
        msg = err["msg"].removeprefix("Value error, ")
        if "::" in msg:
            loc, msg = msg.split("::", 1)
        problems.append(f"field '{loc}': {msg}")
    return CatalogError(f"{path}: entry {index} ({name}): " + "; ".join(problems))


def _load_file(path: Path) -> list[MetricSpec]:
    """A catalog file holds `groups`, each with a `component`, a `layer` and its `metrics`."""
    try:
        doc = yaml.load(path.read_text(), Loader=_YAML_LOADER)
    except yaml.YAMLError as exc:
        raise CatalogError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("groups"), list):
        raise CatalogError(f"{path}: expected a mapping with a 'groups' list")
    specs: list[MetricSpec] = []
    index = 0
    for g, group in enumerate(doc["groups"]):
        if not isinstance(group, dict) or not isinstance(group.get("metrics"), list):
            raise CatalogError(f"{path}: group {g}: expected 'component', 'layer' and a 'metrics' list")
        defaults = {k: group[k] for k in ("component", "layer") if k in group}
        for raw in group["metrics"]:
            index += 1
            if not isinstance(raw, dict):
                raise CatalogError(f"{path}: entry {index}: expected a mapping, got {type(raw).__name__}")
            try:
                specs.append(MetricSpec.model_validate({**defaults, **raw}))
            except ValidationError as exc:
                raise _entry_error(path, index, raw, exc) from None
    return specs


def load_catalog(paths: Iterable[str | Path] | None = None) -> Catalog:
    """Load catalog files (default: every `*.yaml` beside this module) and check them as a whole."""
    files = sorted(CATALOG_DIR.glob("*.yaml")) if paths is None else [Path(p) for p in paths]
    if not files:
        raise CatalogError("no catalog files given")
    seen_name: dict[str, Path] = {}
    seen_id: dict[int, tuple[Path, str]] = {}
    specs: list[MetricSpec] = []
    for path in files:
        for spec in _load_file(path):
            if spec.name in seen_name:
                raise CatalogError(f"{path}: entry ({spec.name}): field 'name': duplicate name, "
                                   f"already declared in {seen_name[spec.name]}")
            if spec.id in seen_id:
                other_path, other = seen_id[spec.id]
                raise CatalogError(f"{path}: entry ({spec.name}): field 'id': duplicate id {spec.id}, "
                                   f"already used by {other} in {other_path}")
            seen_name[spec.name] = path
            seen_id[spec.id] = (path, spec.name)
            specs.append(spec)
    exposed: dict[str, str] = {}
    for spec in specs:
        # what prometheus-client registers: the family, its samples and `_created` for counters/histograms
        names = {spec.prometheus_name, *spec.sample_names()}
        if spec.type != "gauge":
            names.add(f"{spec.prometheus_name}_created")
        for n in names:
            other = exposed.setdefault(n, spec.name)
            if other != spec.name:
                raise CatalogError(f"{seen_name[spec.name]}: entry ({spec.name}): field 'name': exposes "
                                   f"{n!r}, which {other} also exposes")
    by_name = {s.name: s for s in specs}
    for spec in specs:
        if spec.capacity_metric is None:
            continue
        path = seen_name[spec.name]
        cap = by_name.get(spec.capacity_metric)
        if cap is None:
            raise CatalogError(f"{path}: entry ({spec.name}): field 'capacity_metric': "
                               f"{spec.capacity_metric!r} is not declared")
        if cap.type != "gauge" or not set(cap.labels) <= set(spec.labels):
            raise CatalogError(f"{path}: entry ({spec.name}): field 'capacity_metric': "
                               f"{cap.name} must be a gauge whose labels {list(cap.labels)} are a subset "
                               f"of {list(spec.labels)}")
    return Catalog(specs, files)


@functools.cache
def default_catalog() -> Catalog:
    """The catalog shipped with Voxwatch (loaded once per process)."""
    return load_catalog()


__all__ = [
    "BUCKET_PRESETS",
    "CATALOG_DIR",
    "Catalog",
    "CatalogError",
    "DEFAULT_SERIES_LIMIT",
    "FORBIDDEN_LABELS",
    "LAYERS",
    "METRIC_TYPES",
    "MetricSpec",
    "UNITS",
    "default_catalog",
    "load_catalog",
]
