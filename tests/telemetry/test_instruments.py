"""Instruments: declared metrics only, loud mistakes, counted bad data, bounded cardinality."""

from __future__ import annotations

import math

import numpy as np
import pytest

from telemetry import Telemetry
from telemetry.instruments import OVERFLOW


@pytest.fixture(scope="module")
def tel():
    return Telemetry()


def value(t: Telemetry, sample: str, **labels) -> float | None:
    return t.registry.get_sample_value(sample, labels)


def test_a_gauge_set_through_labels_reaches_the_registry(tel):
    tel["voxwatch_pool_connections_in_use"].labels(pool="crm").set(3)
    assert value(tel, "voxwatch_pool_connections_in_use", pool="crm") == 3.0


def test_label_values_by_position_and_by_name_reach_the_same_series(tel):
    m = tel["voxwatch_calls_ended_total"]
    m.labels("eu-west", "completed").inc()
    m.labels(outcome="completed", region="eu-west").inc(2)
    assert value(tel, "voxwatch_calls_ended_total", region="eu-west", outcome="completed") == 3.0


def test_a_pre_bound_child_records_into_its_series(tel):
    wait = tel["voxwatch_pool_wait_seconds"].labels(pool="orders")
    for v in (0.001, 0.2, 0.7):
        wait.observe(v)
    assert value(tel, "voxwatch_pool_wait_seconds_count", pool="orders") == 3.0
    assert value(tel, "voxwatch_pool_wait_seconds_bucket", pool="orders", le="0.3") == 2.0
    assert value(tel, "voxwatch_pool_wait_seconds_sum", pool="orders") == pytest.approx(0.901)


def test_an_unlabelled_metric_records_directly(tel):
    tel["voxwatch_degradation_level"].set(2)
    assert value(tel, "voxwatch_degradation_level") == 2.0


def test_an_undeclared_metric_is_a_key_error_naming_it(tel):
    with pytest.raises(KeyError, match="voxwatch_pool_wait_secs.*not declared.*voxwatch_pool_wait_seconds"):
        tel["voxwatch_pool_wait_secs"]


def test_an_undeclared_label_is_a_value_error_naming_metric_and_label(tel):
    with pytest.raises(ValueError, match="voxwatch_pool_wait_seconds: unknown label 'region'"):
        tel["voxwatch_pool_wait_seconds"].labels(pool="crm", region="eu")


def test_a_missing_label_is_a_value_error(tel):
    with pytest.raises(ValueError, match="voxwatch_calls_ended_total: missing label 'outcome'"):
        tel["voxwatch_calls_ended_total"].labels(region="eu")


def test_wrong_number_of_positional_labels_is_refused(tel):
    with pytest.raises(ValueError, match="expected 2 label values"):
        tel["voxwatch_calls_ended_total"].labels("eu")


def test_recording_on_a_labelled_metric_without_labels_is_refused(tel):
    with pytest.raises(ValueError, match="has labels \\['pool'\\]; call .labels"):
        tel["voxwatch_pool_connections_in_use"].set(1)


def test_nan_and_infinite_observations_are_counted_and_never_stored():
    t = Telemetry()
    h = t["voxwatch_turn_latency_seconds"].labels(region="us-east")
    h.observe(0.1)
    h.observe(math.nan)
    h.observe(math.inf)
    t["voxwatch_pool_connections_in_use"].labels(pool="crm").set(-math.inf)
    assert value(t, "voxwatch_turn_latency_seconds_count", region="us-east") == 1.0
    assert value(t, "voxwatch_turn_latency_seconds_sum", region="us-east") == pytest.approx(0.1)
    assert value(t, "voxwatch_pool_connections_in_use", pool="crm") == 0.0
    rejected = "voxwatch_instrument_rejected_observations_total"
    assert value(t, rejected, metric="voxwatch_turn_latency_seconds", reason="nan") == 1.0
    assert value(t, rejected, metric="voxwatch_turn_latency_seconds", reason="inf") == 1.0
    assert value(t, rejected, metric="voxwatch_pool_connections_in_use", reason="inf") == 1.0


def test_a_negative_counter_increment_is_rejected_not_raised():
    t = Telemetry()
    c = t["voxwatch_calls_started_total"].labels(region="eu")
    c.inc(2)
    c.inc(-1)
    assert value(t, "voxwatch_calls_started_total", region="eu") == 2.0
    assert value(t, "voxwatch_instrument_rejected_observations_total",
                 metric="voxwatch_calls_started_total", reason="negative_increment") == 1.0


def test_label_sets_beyond_the_series_limit_fold_into_the_overflow_series_and_are_counted():
    t = Telemetry(series_limit=3)
    m = t["voxwatch_cache_hits_total"]
    for i in range(5):
        m.labels(cache=f"kind{i}").inc()
    m.labels(cache="kind0").inc()  # an existing series still records normally
    assert value(t, "voxwatch_cache_hits_total", cache="kind0") == 2.0
    assert value(t, "voxwatch_cache_hits_total", cache="kind3") is None
    assert value(t, "voxwatch_cache_hits_total", cache=OVERFLOW) == 2.0
    assert value(t, "voxwatch_instrument_series_overflow_total", metric="voxwatch_cache_hits_total") == 2.0
    assert m.series_count == 4  # three real series and the overflow one


def test_observe_many_matches_observing_one_by_one():
    rng = np.random.default_rng(7)
    values = np.concatenate([rng.lognormal(-1.8, 0.6, 500), [0.3, 0.005, 10.0, 99.0]])
    a, b = Telemetry(), Telemetry()
    a["voxwatch_stage_latency_seconds"].labels(stage="llm", region="eu").observe_many(values)
    child = b["voxwatch_stage_latency_seconds"].labels(stage="llm", region="eu")
    for v in values:
        child.observe(float(v))
    for bound in a.catalog["voxwatch_stage_latency_seconds"].buckets:
        le = str(float(bound))
        assert value(a, "voxwatch_stage_latency_seconds_bucket", stage="llm", region="eu", le=le) == \
            value(b, "voxwatch_stage_latency_seconds_bucket", stage="llm", region="eu", le=le)
    assert value(a, "voxwatch_stage_latency_seconds_sum", stage="llm", region="eu") == pytest.approx(values.sum())


def test_observe_many_rejects_its_non_finite_values():
    t = Telemetry()
    t["voxwatch_pool_wait_seconds"].labels(pool="crm").observe_many([0.1, math.nan, math.inf, -math.inf])
    assert value(t, "voxwatch_pool_wait_seconds_count", pool="crm") == 1.0
    assert value(t, "voxwatch_instrument_rejected_observations_total",
                 metric="voxwatch_pool_wait_seconds", reason="inf") == 2.0


def test_two_telemetries_never_share_a_series():
    a, b = Telemetry(), Telemetry()
    a["voxwatch_calls_started_total"].labels(region="eu").inc()
    assert value(b, "voxwatch_calls_started_total", region="eu") is None
    assert a.registry is not b.registry


def test_disabled_telemetry_checks_names_and_records_nothing():
    off = Telemetry.disabled()
    off["voxwatch_pool_wait_seconds"].labels(pool="crm").observe(0.1)
    off["voxwatch_degradation_level"].set(3)
    assert not off.enabled
    assert list(off.registry.collect()) == []
    with pytest.raises(KeyError, match="not declared"):
        off["voxwatch_made_up_total"]


def test_a_custom_catalog_still_gets_the_instruments_own_metrics(tmp_path):
    from telemetry.catalog import load_catalog

    path = tmp_path / "small.yaml"
    path.write_text(
        "groups:\n  - component: pool\n    layer: integration\n    metrics:\n"
        '      - {id: 1, name: voxwatch_pool_in_use, type: gauge, unit: count, labels: [pool], '
        'description: "Connections borrowed."}\n'
    )
    t = Telemetry(load_catalog([path]))
    t["voxwatch_pool_in_use"].labels(pool="crm").set(math.nan)
    assert value(t, "voxwatch_instrument_rejected_observations_total",
                 metric="voxwatch_pool_in_use", reason="nan") == 1.0
    with pytest.raises(KeyError):
        t["voxwatch_calls_active"]
