"""The human-readable reference of the catalog: docs/metrics.md and `voxwatch metrics show`.

Generated from the catalog only, so the reference cannot drift from what the code emits (a test
compares docs/metrics.md with `render_markdown(default_catalog())`).
"""

from __future__ import annotations

from collections import Counter

from telemetry.catalog import LAYERS, Catalog, MetricSpec

LAYER_BLURB = {
    "edge": "WebRTC termination at the points of presence and the first audio processing (VAD).",
    "processing": "Distributed STT, NLU and TTS, worker pools and autoscaling, regional failover, "
                  "the degradation controller, and the turn/stage latencies of the processing path.",
    "intelligence": "Decision routing, context management, response caching and LLM inference.",
    "integration": "Connection pools to downstream services, CRM and other connectors, circuit breakers, "
                   "the async action queue and the human handoff.",
    "runtime": "The processes themselves and Voxwatch's own machinery: sink, store, snapshots, traces, "
               "anomaly detection, alerting, the load simulator.",
    "business": "What the calls achieved: containment, handoff and abandonment, SLO budget, cost.",
}

GENERATED_BY = "voxwatch metrics docs --output docs/metrics.md"


def capacity_text(spec: MetricSpec) -> str:
    if spec.capacity is not None:
        return f"{spec.capacity:g}"
    if spec.capacity_metric:
        return spec.capacity_metric
    return ""


def promql_hint(spec: MetricSpec, catalog: Catalog | None = None) -> str:
    """The query an on-call engineer would type first for this metric."""
    by = f" by ({', '.join(spec.labels)})" if spec.labels else ""
    if spec.type == "counter":
        return f"sum{by} (rate({spec.name}[5m]))"
    if spec.type == "histogram":
        by_le = f" by ({', '.join((*spec.labels, 'le'))})"
        return f"histogram_quantile(0.95, sum{by_le} (rate({spec.name}_bucket[5m])))"
    if spec.capacity_metric:
        return f"{spec.name} / {spec.capacity_metric}"
    return spec.name


def sql_hint(spec: MetricSpec) -> str:
    """Where its samples are in ClickHouse (no JOIN, so the same text runs on chdb and on 18.16)."""
    return (f"SELECT fingerprint, ts_ms, value FROM metric_samples WHERE metric_id = {spec.id} "
            f"AND fingerprint IN (SELECT fingerprint FROM metric_series WHERE sample_name = "
            f"'{spec.sample_names()[0]}') ORDER BY fingerprint, ts_ms")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(catalog: Catalog) -> str:
    by_layer = Counter(m.layer for m in catalog)
    by_type = Counter(m.type for m in catalog)
    lines = [
        "# Metric reference",
        "",
        f"<!-- Generated from telemetry/catalog/*.yaml by `{GENERATED_BY}`. Do not edit by hand. -->",
        "",
        f"Voxwatch declares **{len(catalog)} metrics** ({by_type['counter']} counters, {by_type['gauge']} gauges, "
        f"{by_type['histogram']} histograms), each once, in the catalog. Every metric has a stable numeric id "
        "(the `metric_id` column of `metric_samples`), a Prometheus name with its unit as suffix, a layer of the "
        "architecture and the component that emits it. Saturation metrics name the capacity they saturate "
        "against: a number (1 for a ratio) or the gauge that holds it.",
        "",
        "Labels are bounded vocabularies (region, stage, pool, cache, language, reason, ...). Per-call "
        "identifiers (call, trace, session ids) are never labels: they live in the `calls` and `spans` "
        "tables. A label set beyond a metric's series limit is folded into the `__overflow__` series and "
        "counted in `voxwatch_instrument_series_overflow_total`.",
        "",
        "Look one up from the command line: `voxwatch metrics show 312` or "
        "`voxwatch metrics list --layer integration`.",
        "",
        "| Layer | Metrics | Components |",
        "|---|---:|---|",
    ]
    for layer in LAYERS:
        comps = sorted({m.component for m in catalog if m.layer == layer})
        lines.append(f"| [{layer}](#{layer}) | {by_layer[layer]} | {', '.join(comps)} |")
    for layer in LAYERS:
        metrics = [m for m in catalog if m.layer == layer]
        if not metrics:
            continue
        lines += ["", f"## {layer}", "", LAYER_BLURB.get(layer, "")]
        for comp in sorted({m.component for m in metrics}, key=lambda c: min(m.id for m in metrics if m.component == c)):
            lines += ["", f"### {layer} / {comp}", "",
                      "| ID | Name | Type | Unit | Labels | Saturates against | Description |",
                      "|---:|---|---|---|---|---|---|"]
            for m in metrics:
                if m.component != comp:
                    continue
                labels = ", ".join(f"`{label}`" for label in m.labels)
                lines.append(f"| {m.id} | `{m.name}` | {m.type} | {m.unit} | {labels} | "
                             f"{_cell(capacity_text(m))} | {_cell(m.description)} |")
    return "\n".join(lines) + "\n"


def render_text(spec: MetricSpec, catalog: Catalog) -> str:
    rows = [
        ("id", f"#{spec.id}"),
        ("name", spec.name),
        ("type", spec.type),
        ("unit", spec.unit),
        ("labels", ", ".join(spec.labels) or "(none)"),
        ("layer", spec.layer),
        ("component", spec.component),
        ("description", spec.description),
    ]
    if spec.buckets is not None:
        rows.append(("buckets", ", ".join(f"{b:g}" for b in spec.buckets)))
    if spec.is_saturation:
        rows.append(("saturates against", capacity_text(spec)))
    users = [m.name for m in catalog if m.capacity_metric == spec.name]
    if users:
        rows.append(("capacity of", ", ".join(users)))
    if spec.series_limit:
        rows.append(("series limit", str(spec.series_limit)))
    rows.append(("samples", ", ".join(spec.sample_names())))
    rows.append(("promql", promql_hint(spec, catalog)))
    rows.append(("sql", sql_hint(spec)))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.rjust(width)}  {v}" for k, v in rows)
