"""The snapshotter: every registry sample becomes a row of metric_samples; label sets go once into
metric_series; fingerprints are stable."""

from __future__ import annotations

import asyncio

import pytest

from telemetry import Snapshotter, Telemetry, VirtualClock, series_fingerprint
from telemetry.sink import Sink

T0 = 1_696_323_600.0  # 2023-10-03 09:00 UTC, the morning of the incident
FP_CALLS_ACTIVE_EU_WEST = 14367577189664733960  # blake2b-64; stored series depend on it never changing


@pytest.fixture
def sink(store, tmp_path):
    s = Sink(store, spool_dir=tmp_path / "spool", flush_interval=60)
    yield s
    s.close()


def test_fingerprint_is_stable_and_ignores_label_order():
    a = series_fingerprint("voxwatch_pool_wait_seconds_bucket", {"pool": "crm", "le": "0.3"})
    b = series_fingerprint("voxwatch_pool_wait_seconds_bucket", {"le": "0.3", "pool": "crm"})
    assert a == b
    assert a != series_fingerprint("voxwatch_pool_wait_seconds_bucket", {"pool": "orders", "le": "0.3"})
    assert 0 <= a < 2**64
    # a fixed value: the fingerprint must not change between releases (stored series depend on it)
    assert series_fingerprint("voxwatch_calls_active", {"region": "eu-west"}) == FP_CALLS_ACTIVE_EU_WEST


def test_a_snapshot_reads_exactly_what_the_registry_exposes():
    tel = Telemetry(clock=VirtualClock(T0))
    tel["voxwatch_pool_connections_in_use"].labels(pool="crm").set(7)
    tel["voxwatch_calls_started_total"].labels(region="eu").inc(5)
    tel["voxwatch_turn_latency_seconds"].labels(region="eu").observe_many([0.12, 0.2, 0.45, 2.5])
    snap = Snapshotter(tel, sink=None)
    snap.snapshot_once()
    snap.snapshot_once()  # the first tick also creates the snapshotter's own series
    fps, ids, values = snap.read()
    got = dict(zip(fps.tolist(), values.tolist(), strict=False))
    expected = {}
    for family in tel.registry.collect():
        for s in family.samples:
            if not s.name.endswith("_created"):
                expected[series_fingerprint(s.name, s.labels)] = s.value
    assert got == expected
    assert len(got) > 100  # the unlabelled metrics exist from the start


def test_samples_and_series_land_in_the_store(store, sink):
    clock = VirtualClock(T0)
    tel = Telemetry(clock=clock, sink=sink)
    pool = tel["voxwatch_pool_saturation_ratio"].labels(pool="crm")
    wait = tel["voxwatch_pool_wait_seconds"].labels(pool="crm")
    snap = Snapshotter(tel)
    for _second, (ratio, w) in enumerate([(0.50, 0.01), (0.75, 0.2), (0.98, 1.7)]):
        pool.set(ratio)
        wait.observe(w)
        snap.snapshot_once(clock.now_ms())
        clock.advance(1.0)
    sink.flush()

    fp = series_fingerprint("voxwatch_pool_saturation_ratio", {"pool": "crm"})
    df = store.query("SELECT ts_ms, value, metric_id FROM metric_samples WHERE fingerprint = {fp:UInt64} "
                     "ORDER BY ts_ms", {"fp": fp})
    assert df["value"].tolist() == [0.50, 0.75, 0.98]
    assert df["ts_ms"].tolist() == [int(T0 * 1000) + k * 1000 for k in range(3)]
    assert set(df["metric_id"]) == {312}

    # histogram buckets are cumulative, as Prometheus exposes them
    le = store.query(
        "SELECT s.label_values AS lv, m.value AS value FROM metric_samples AS m "
        "INNER JOIN metric_series AS s ON m.fingerprint = s.fingerprint "
        "WHERE s.sample_name = 'voxwatch_pool_wait_seconds_bucket' AND m.ts_ms = {t:Int64}",
        {"t": int(T0 * 1000) + 2000},
    )
    by_le = {lv[-1]: v for lv, v in zip(le["lv"], le["value"], strict=False)}
    assert by_le["0.01"] == 1 and by_le["0.2"] == 2 and by_le["2.0"] == 3 and by_le["+Inf"] == 3

    series = store.query("SELECT fingerprint, count() AS n, any(metric) AS metric, any(label_keys) AS k, "
                         "any(label_values) AS v FROM metric_series GROUP BY fingerprint")
    assert series["n"].max() == 1  # written once although three ticks ran
    row = series[series["fingerprint"] == fp].iloc[0]
    assert row["metric"] == "voxwatch_pool_saturation_ratio"
    assert list(row["k"]) == ["pool"] and list(row["v"]) == ["crm"]

    # every sampled series has its label set
    orphans = store.query("SELECT count() AS n FROM metric_samples WHERE fingerprint NOT IN "
                          "(SELECT fingerprint FROM metric_series)")
    assert orphans["n"][0] == 0


def test_series_appearing_later_are_planned_on_the_next_tick(store, sink):
    tel = Telemetry(clock=VirtualClock(T0), sink=sink)
    snap = Snapshotter(tel)
    tel["voxwatch_pool_connections_in_use"].labels(pool="crm").set(1)  # cardinality bookkeeping exists
    snap.snapshot_once()
    first = snap.snapshot_once()  # the first tick also creates the snapshotter's own series
    tel["voxwatch_cache_hits_total"].labels(cache="product_info").inc(4)
    second = snap.snapshot_once()
    # the new series, and voxwatch_instrument_series{metric=...} and its _limit it caused
    assert second == first + 1 + 2
    sink.flush()
    fp = series_fingerprint("voxwatch_cache_hits_total", {"cache": "product_info"})
    df = store.query("SELECT value FROM metric_samples WHERE fingerprint = {fp:UInt64}", {"fp": fp})
    assert df["value"].tolist() == [4.0]


def test_the_loop_ticks_on_interval_boundaries_of_the_injected_clock(store, sink):
    clock = VirtualClock(T0 + 0.4)
    tel = Telemetry(clock=clock, sink=sink)
    snap = Snapshotter(tel, interval_s=1.0)

    async def drive():
        task = asyncio.create_task(snap.run())
        await asyncio.sleep(0)
        for _ in range(5):
            clock.advance(1.0)
            for _ in range(3):
                await asyncio.sleep(0)
        snap.stop()
        clock.advance(1.0)
        await asyncio.wait_for(task, 1)

    asyncio.run(drive())
    sink.flush()
    ticks = store.query("SELECT DISTINCT ts_ms FROM metric_samples ORDER BY ts_ms")["ts_ms"].tolist()
    assert ticks == [int(T0 * 1000) + k * 1000 for k in range(1, 6)]
