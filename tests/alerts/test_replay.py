"""Replaying stored history: samples and findings written to the store are read back (on both
engines) and the rules fire when they would have."""

from __future__ import annotations

import json

import pytest

from alerts.replay import replay_store
from alerts.ruleset import load_rules
from telemetry.snapshot import series_fingerprint
from voxwatch.cli import main

T0 = 1_764_000_000.0  # a recent time (retention counts from storage, but stay in range anyway)


def fill(store):
    """An orders pool that saturates from minute 10 to minute 20, and one saturation finding."""
    labels = {"pool": "orders"}
    fp = series_fingerprint("voxwatch_pool_saturation_ratio", labels)
    store.insert("metric_series", {"fingerprint": [fp], "metric_id": [312], "metric": ["voxwatch_pool_saturation_ratio"],
                                   "sample_name": ["voxwatch_pool_saturation_ratio"], "metric_type": ["gauge"],
                                   "label_keys": [["pool"]], "label_values": [["orders"]], "first_seen_ms": [int(T0 * 1000)]})
    ts = list(range(0, 1800))
    values = [0.99 if 600 <= t < 1200 else 0.3 for t in ts]
    store.insert("metric_samples", {"ts_ms": [int((T0 + t) * 1000) for t in ts], "fingerprint": [fp] * len(ts),
                                    "metric_id": [312] * len(ts), "value": values})
    store.insert("anomaly_findings", {"ts_ms": [int((T0 + 550) * 1000)], "finding_id": ["f1"], "detector": ["saturation_trend"],
                                      "kind": ["saturation_trend"], "metric": ["voxwatch_pool_saturation_ratio"],
                                      "fingerprint": [fp], "label_keys": [["pool"]], "label_values": [["orders"]],
                                      "score": [0.9], "value": [0.8], "expected_low": [0.0], "expected_high": [1.0],
                                      "time_to_exhaustion_s": [300.0], "confidence": [0.9], "reason": ["rising"]})


@pytest.fixture(params=["chdb", pytest.param("server", marks=pytest.mark.server)])
def backend(request):
    return request.getfixturevalue({"chdb": "store", "server": "server_store"}[request.param])


def test_stored_samples_and_findings_replay_through_the_rules(backend):
    fill(backend)
    engine = replay_store(load_rules(env={}), backend, T0 + 60, T0 + 1800)
    fired = {(t["rule"], round(t["ts"] - T0)) for t in engine.transitions if t["state"] == "firing"}
    assert ("PoolSaturationForecast", 550) in fired or ("PoolSaturationForecast", 551) in fired
    sat = [ts for rule, ts in fired if rule == "PoolSaturated"]
    # the 1 m average passes 0.95 about 57 s into the saturation, then 20 s of `for`
    assert sat and 600 + 57 <= min(sat) <= 600 + 80
    resolved = [t for t in engine.transitions if t["rule"] == "PoolSaturated" and t["state"] == "resolved"]
    assert resolved and resolved[0]["ts"] - T0 > 1200


def test_rules_test_command_replays_a_store(store, store_url, capsys):
    fill(store)
    code = main(["rules", "test", "--store", store_url, "--from", str(T0 + 60), "--to", str(T0 + 1800), "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rules"]["PoolSaturated"]["episodes"] == 1
    assert report["rules"]["PoolSaturated"]["fired"][0]["labels"] == {"pool": "orders", "team": "integrations", "hierarchy": "pool"}
