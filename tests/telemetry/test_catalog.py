"""The metric catalog: what ships, and how a malformed catalog file is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from telemetry.catalog import FORBIDDEN_LABELS, LAYERS, CatalogError, default_catalog, load_catalog

# names other rooms use; their shape is a contract
EXPECTED = {
    "voxwatch_turn_latency_seconds": ("histogram", ("region",)),
    "voxwatch_stage_latency_seconds": ("histogram", ("stage", "region")),
    "voxwatch_pool_connections_in_use": ("gauge", ("pool",)),
    "voxwatch_pool_capacity_connections": ("gauge", ("pool",)),
    "voxwatch_pool_saturation_ratio": ("gauge", ("pool",)),
    "voxwatch_pool_wait_seconds": ("histogram", ("pool",)),
    "voxwatch_pool_acquire_timeouts_total": ("counter", ("pool",)),
    "voxwatch_calls_active": ("gauge", ("region",)),
    "voxwatch_calls_started_total": ("counter", ("region",)),
    "voxwatch_calls_ended_total": ("counter", ("region", "outcome")),
    "voxwatch_degradation_level": ("gauge", ()),
    "voxwatch_llm_time_to_first_token_seconds": ("histogram", ("provider", "model")),
    "voxwatch_cache_hits_total": ("counter", ("cache",)),
    "voxwatch_cache_misses_total": ("counter", ("cache",)),
    "voxwatch_handoffs_total": ("counter", ("reason",)),
    "voxwatch_region_up": ("gauge", ("region",)),
    "voxwatch_sink_rows_written_total": ("counter", ("table",)),
    "voxwatch_sink_rows_rejected_total": ("counter", ("table", "reason")),
    "voxwatch_sink_queue_rows": ("gauge", ()),
    "voxwatch_instrument_rejected_observations_total": ("counter", ("metric", "reason")),
    "voxwatch_instrument_series_overflow_total": ("counter", ("metric",)),
}


def write(tmp_path: Path, name: str, body: str) -> Path:
    p = tmp_path / name
    p.write_text(body)
    return p


GOOD = """
groups:
  - component: pool
    layer: integration
    metrics:
      - {id: 1, name: voxwatch_pool_in_use, type: gauge, unit: count, labels: [pool], description: "Connections borrowed."}
"""


def entry(**fields) -> str:
    base = {"id": 7, "name": "voxwatch_thing_seconds", "type": "histogram", "unit": "seconds",
            "labels": "[region]", "description": '"Something measured in seconds."'}
    base.update(fields)
    body = ", ".join(f"{k}: {v}" for k, v in base.items() if v is not None)
    return f"groups:\n  - component: stt\n    layer: processing\n    metrics:\n      - {{{body}}}\n"


def test_shipped_catalog_declares_at_least_300_distinct_metrics():
    catalog = default_catalog()
    assert len(catalog) >= 300
    assert len(set(catalog.names())) == len(catalog)
    assert len({m.id for m in catalog}) == len(catalog)


def test_every_layer_of_the_article_has_metrics():
    catalog = default_catalog()
    for layer in LAYERS:
        assert len(catalog.layer(layer)) >= 10, layer


def test_metrics_other_rooms_rely_on_have_their_agreed_shape():
    catalog = default_catalog()
    for name, (kind, labels) in EXPECTED.items():
        spec = catalog[name]
        assert (spec.type, spec.labels) == (kind, labels), name


def test_pool_saturation_is_metric_312_and_saturates_at_one():
    spec = default_catalog().resolve("#312")
    assert spec.name == "voxwatch_pool_saturation_ratio"
    assert spec.capacity == 1.0 and spec.is_saturation


def test_capacity_metrics_are_gauges_sharing_the_saturating_metrics_labels():
    catalog = default_catalog()
    sat = catalog.saturation_metrics()
    assert len(sat) >= 20
    for spec in sat:
        if spec.capacity_metric:
            cap = catalog[spec.capacity_metric]
            assert cap.type == "gauge" and set(cap.labels) <= set(spec.labels)


def test_golden_signals_cover_every_pool_cache_and_worker_resource():
    names = set(default_catalog().names())
    for needed in ("voxwatch_pool_connections_in_use", "voxwatch_pool_capacity_connections",
                   "voxwatch_pool_wait_seconds", "voxwatch_pool_acquire_timeouts_total",
                   "voxwatch_pool_saturation_ratio", "voxwatch_cache_hits_total", "voxwatch_cache_misses_total",
                   "voxwatch_cache_evictions_total", "voxwatch_cache_hit_ratio", "voxwatch_worker_utilization_ratio",
                   "voxwatch_worker_queue_depth", "voxwatch_edge_jitter_seconds", "voxwatch_edge_packet_loss_ratio",
                   "voxwatch_edge_session_setup_seconds", "voxwatch_stt_real_time_factor",
                   "voxwatch_stt_confidence_ratio", "voxwatch_stt_audio_seconds_total",
                   "voxwatch_llm_cached_input_tokens_total", "voxwatch_runtime_event_loop_lag_seconds",
                   "voxwatch_runtime_resident_memory_bytes", "voxwatch_business_containment_ratio",
                   "voxwatch_business_handoff_ratio", "voxwatch_business_abandonment_ratio"):
        assert needed in names, needed


def test_no_metric_is_labelled_by_a_per_call_identifier():
    for spec in default_catalog():
        assert not set(spec.labels) & FORBIDDEN_LABELS, spec.name


def test_histograms_get_increasing_buckets_and_the_latency_ones_resolve_the_300ms_budget():
    catalog = default_catalog()
    for spec in catalog:
        if spec.type == "histogram":
            assert list(spec.buckets) == sorted(set(spec.buckets)), spec.name
    assert 0.3 in catalog["voxwatch_turn_latency_seconds"].buckets


def test_lookup_by_id_name_and_unknown_name_suggests_close_ones():
    catalog = default_catalog()
    assert catalog.resolve("312") is catalog.resolve("voxwatch_pool_saturation_ratio")
    with pytest.raises(KeyError, match="voxwatch_pool_saturation_ratio"):
        catalog["voxwatch_pool_saturation_ration"]


def test_the_degradation_ladder_is_written_once_in_the_catalog_and_the_pipeline_and_alerts_read_it():
    from alerts.model import DEFAULT_LADDER
    from pipeline.degradation import DegradationLevel

    ladder = default_catalog().states("voxwatch_degradation_level")
    assert ladder[0] == "NORMAL" and len(ladder) >= 2
    assert [(m.name, int(m)) for m in DegradationLevel] == [(name, i) for i, name in enumerate(ladder)]
    assert DEFAULT_LADDER is ladder
    with pytest.raises(KeyError, match="no states"):
        default_catalog().states("voxwatch_calls_active")


def test_a_small_catalog_file_loads(tmp_path):
    catalog = load_catalog([write(tmp_path, "a.yaml", GOOD)])
    assert catalog["voxwatch_pool_in_use"].component == "pool"


@pytest.mark.parametrize(
    "fields, field, problem",
    [
        ({"type": "summary"}, "type", "counter"),
        ({"name": "VoxWatch-Thing"}, "name", "voxwatch_snake_case"),
        ({"name": "voxwatch_thing_seconds_count"}, "name", "reserves"),
        ({"unit": "furlongs"}, "unit", "unknown unit"),
        ({"unit": "bytes"}, "unit", "needs the name to end with _bytes"),
        ({"unit": "count", "type": "gauge"}, "unit", "ends with _seconds but unit is 'count'"),
        ({"type": "counter", "unit": "count", "name": "voxwatch_things"}, "name", "must end with _total"),
        ({"type": "gauge", "name": "voxwatch_things_total", "unit": "count"}, "name", "only counters"),
        ({"labels": "[region, call_id]"}, "labels", "per-call identifier"),
        ({"labels": "[region, region]"}, "labels", "twice"),
        ({"layer": "cloud"}, "layer", "unknown layer"),
        ({"buckets": "[0.5, 0.1]"}, "buckets", "strictly increasing"),
        ({"buckets": "glacial"}, "buckets", "unknown bucket preset"),
        ({"colour": "blue"}, "colour", "Extra inputs"),
        ({"name": "voxwatch_thing_saturation_ratio", "unit": "ratio", "type": "gauge"}, "capacity", "saturation metric"),
        ({"description": '"short"'}, "description", "at least 10"),
        ({"states": "[LOW, HIGH]"}, "states", "level gauge"),
        ({"states": "[low]", "type": "gauge", "unit": "level", "name": "voxwatch_thing_level"}, "states", "UPPER_SNAKE"),
    ],
)
def test_a_bad_entry_is_refused_naming_file_entry_and_field(tmp_path, fields, field, problem):
    path = write(tmp_path, "bad.yaml", entry(**fields))
    with pytest.raises(CatalogError) as err:
        load_catalog([path])
    msg = str(err.value)
    assert str(path) in msg and "entry 1" in msg
    assert f"field '{field}'" in msg and problem in msg


def test_duplicate_id_across_files_names_both_metrics(tmp_path):
    a = write(tmp_path, "a.yaml", GOOD)
    b = write(tmp_path, "b.yaml", GOOD.replace("voxwatch_pool_in_use", "voxwatch_pool_idle"))
    with pytest.raises(CatalogError, match=r"b.yaml: entry \(voxwatch_pool_idle\): field 'id': duplicate id 1, "
                                           r"already used by voxwatch_pool_in_use"):
        load_catalog([a, b])


def test_duplicate_name_is_refused(tmp_path):
    a = write(tmp_path, "a.yaml", GOOD)
    b = write(tmp_path, "b.yaml", GOOD.replace("id: 1", "id: 2"))
    with pytest.raises(CatalogError, match="field 'name': duplicate name"):
        load_catalog([a, b])


def test_a_counter_and_a_histogram_exposing_the_same_sample_name_collide(tmp_path):
    body = GOOD + (
        '      - {id: 2, name: voxwatch_pool_tokens_total, type: counter, unit: count, description: "Tokens counted."}\n'
        '      - {id: 3, name: voxwatch_pool_tokens, type: histogram, unit: count, description: "Tokens per request."}\n'
    )
    with pytest.raises(CatalogError, match="voxwatch_pool_tokens.*also exposes"):
        load_catalog([write(tmp_path, "a.yaml", body)])


def test_capacity_metric_must_be_declared(tmp_path):
    body = GOOD.replace("labels: [pool],", "labels: [pool], capacity_metric: voxwatch_pool_size,")
    with pytest.raises(CatalogError, match="capacity_metric.*voxwatch_pool_size.*not declared"):
        load_catalog([write(tmp_path, "a.yaml", body)])


def test_malformed_yaml_names_the_file(tmp_path):
    path = write(tmp_path, "a.yaml", "groups: [\n")
    with pytest.raises(CatalogError, match="a.yaml: not valid YAML"):
        load_catalog([path])
