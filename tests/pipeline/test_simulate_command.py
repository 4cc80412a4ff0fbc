"""`voxwatch simulate` end to end: a scenario into an embedded store, the JSON summary, and clear
errors for bad arguments."""

from __future__ import annotations

import json

import pytest

from voxwatch.cli import main


def test_simulate_writes_calls_spans_and_metrics_into_the_store(store_url, capsys):
    rc = main(["simulate", "--scenario", "region-outage", "--calls", "200", "--duration", "4m", "--seed", "5",
               "--store", store_url, "--trace-sample", "0.5", "--json"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["scenario"] == "region-outage" and summary["simulated_s"] == 240
    written = summary["rows"]["written"]
    assert written["calls"] > 100 and written["spans"] > 100 and written["metric_samples"] > 10_000
    assert summary["rows"]["rejected"] == 0
    assert summary["regions"]["failovers"] >= 1
    assert summary["ground_truth"][0]["kind"] == "region_outage"

    from telemetry.store import open_store

    store = open_store(store_url)
    try:
        calls = int(store.scalar("SELECT count() FROM calls WHERE scenario = 'region-outage'"))
        assert calls == written["calls"]
        up = store.query(
            "SELECT min(s.value) AS low FROM metric_samples AS s WHERE s.fingerprint IN "
            "(SELECT fingerprint FROM metric_series WHERE metric = 'voxwatch_region_up' AND has(label_values, 'us-east'))"
        )
        assert float(up["low"][0]) == 0.0  # the outage is visible in the stored series
    finally:
        store.close()


def test_json_summary_without_a_store(capsys):
    assert main(["simulate", "--scenario", "baseline", "--calls", "100", "--duration", "60", "--store", "none", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["turns"]["total"] > 0 and s["store"] is None
    assert {"stt", "response", "turn"} <= set(s["latency_by_minute"][0])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scenario", "october-4"], "unknown scenario 'october-4'"),
        (["--duration", "soon"], "--duration: cannot read 'soon'"),
        (["--speed", "fast"], "--speed: expected a number or 'max'"),
        (["--calls", "0"], "--calls must be positive"),
    ],
)
def test_bad_arguments_are_one_clear_line(args, message, capsys):
    assert main(["simulate", *args, "--store", "none"]) == 2
    assert message in capsys.readouterr().err
