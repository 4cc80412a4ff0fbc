"""The CLI's `--store`: accepted before or after the action, and every bad store URL or folder is one
line on stderr (exit status 2), never a traceback. Incident commands read the same store."""

from __future__ import annotations

import pytest

from voxwatch.cli import main


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_store_is_accepted_after_the_action_and_before_it(store, store_url, capsys):
    code, out, err = run(capsys, "store", "sql", "--store", store_url, "SELECT 41 + 1 AS answer")
    assert code == 0 and "42" in out, err
    code, out, _ = run(capsys, "store", "--store", store_url, "sql", "SELECT 6 * 7 AS answer", "--json")
    assert code == 0 and '"answer":42' in out
    code, out, _ = run(capsys, "store", "info", "--store", store_url)
    assert code == 0 and "incidents" in out and "incident_events" in out


@pytest.mark.parametrize(("url", "says"), [
    ("chdb:///proc/voxwatch-nope", "/proc/voxwatch-nope"),  # a folder that cannot be made: the line names it
    ("chdb:///etc/hostname", "/etc/hostname"),  # a file, not a folder
    ("bogus://x", "the scheme must be"),
    ("chdb://", "needs a folder"),
    ("clickhouse://", "needs a host"),
    ("clickhouse://h:port/db", "the port is not a number"),
    ("chdb:///tmp/x?database=a-b", "not a valid database"),
    ("chdb:///tmp/x?colour=red", "unknown option"),
])
def test_every_bad_store_url_is_one_line(capsys, url, says):
    for argv in (["store", "sql", "--store", url, "SELECT 1"], ["incident", "list", "--store", url]):
        code, _, err = run(capsys, *argv)
        assert code == 2 and says in err, err
        assert err.count("\n") == 1 and "Traceback" not in err


def test_incident_commands_on_an_empty_store_and_an_unknown_id(store, store_url, capsys):
    code, out, _ = run(capsys, "incident", "list", "--store", store_url)
    assert code == 0 and "no incidents" in out
    code, _, err = run(capsys, "incident", "report", "INC-nope", "--store", store_url)
    assert code == 2 and "no incident with id 'INC-nope'" in err


def test_incident_list_and_report_read_what_the_tracker_wrote(store, store_url, capsys, tmp_path):
    from alerts import StoreWriter
    from alerts.incidents import IncidentTracker
    from alerts.model import Alert
    from telemetry.clock import VirtualClock

    t0 = 1_696_323_600.0
    tracker = IncidentTracker(VirtualClock(t0), StoreWriter(store), store)
    tracker.known_faults = [{"kind": "pool_leak", "target": "orders", "start_ms": int((t0 - 600) * 1000),
                             "end_ms": int((t0 + 3600) * 1000), "description": "a leak"}]
    labels = {"alertname": "PoolSaturated", "severity": "page", "pool": "orders"}
    alert = Alert("PoolSaturated", "fp-1", labels, {"summary": "orders pool full"}, "firing", 1.0, t0 - 30, t0)
    tracker.on_transitions([{"ts": t0, "alert": alert, "state": "firing", "previous_state": "pending"}])
    tracker.on_action({"ts_ms": int(t0 * 1000), "action_id": "a1", "phase": "applied", "level": "INTEGRATIONS_QUEUED",
                       "rule": "PoolSaturated", "effect_metric": "voxwatch_turn_latency_seconds", "effect_value": 2.4})
    tracker.on_action({"ts_ms": int((t0 + 60) * 1000), "action_id": "a1", "phase": "observed", "level": "INTEGRATIONS_QUEUED",
                       "rule": "PoolSaturated", "effect_metric": "voxwatch_turn_latency_seconds", "effect_value": 0.3})
    (iid,) = tracker.incidents
    code, out, _ = run(capsys, "incident", "list", "--store", store_url)
    assert code == 0 and iid in out and "PoolSaturated (pool=orders)" in out
    target = tmp_path / "report.md"
    code, _, err = run(capsys, "incident", "report", iid, "--store", store_url, "-o", str(target))
    assert code == 0 and "wrote" in err
    report = target.read_text()
    assert report.startswith(f"# {iid}: PoolSaturated (pool=orders)")
    assert "| fault injected |" in report and "pool_leak on orders" in report  # the ground truth beside it
    assert "| Detect (first alert fired) | 10 min 00 s |" in report
    assert "INTEGRATIONS_QUEUED | PoolSaturated | +0:10:00 | voxwatch_turn_latency_seconds | 2.4 | 0.3 | -88% | no |" in report


def test_the_report_draws_the_pool_it_names_from_the_stored_samples(store, store_url, capsys, tmp_path):
    """A real saturation series in the store: the report written with -o carries an SVG chart of it."""
    from alerts import StoreWriter
    from alerts.incidents import IncidentTracker
    from alerts.model import Alert
    from telemetry.catalog import default_catalog
    from telemetry.clock import VirtualClock

    t0 = 1_696_323_600.0
    spec = default_catalog()["voxwatch_pool_saturation_ratio"]
    store.insert("metric_series", {"fingerprint": [42], "metric_id": [spec.id], "metric": [spec.name],
                                   "sample_name": [spec.name], "metric_type": ["gauge"], "label_keys": [["pool"]],
                                   "label_values": [["orders"]], "first_seen_ms": [int(t0 * 1000) - 3_600_000]})
    ts = [int(t0 * 1000) + k * 15_000 for k in range(-60, 60)]
    store.insert("metric_samples", {"ts_ms": ts, "fingerprint": [42] * len(ts), "metric_id": [spec.id] * len(ts),
                                    "value": [min(1.0, 0.5 + 0.005 * (k + 60)) for k in range(-60, 60)]})
    tracker = IncidentTracker(VirtualClock(t0), StoreWriter(store), store)
    labels = {"alertname": "PoolSaturated", "severity": "page", "pool": "orders"}
    alert = Alert("PoolSaturated", "fp-9", labels, {}, "firing", 1.0, t0 - 30, t0)
    tracker.on_transitions([{"ts": t0, "alert": alert, "state": "firing", "previous_state": "pending"}])
    (iid,) = tracker.incidents
    target = tmp_path / "review.md"
    code, _, err = run(capsys, "incident", "report", iid, "--store", store_url, "-o", str(target))
    assert code == 0 and "1 chart(s)" in err
    assert "![Saturation of pool orders](review-chart1.svg)" in target.read_text()
    svg = (tmp_path / "review-chart1.svg").read_text()
    assert svg.startswith("<svg") and "<polyline" in svg and "Saturation of pool orders" in svg
    code, out, _ = run(capsys, "incident", "report", iid, "--store", store_url)  # stdout: the image inline
    assert code == 0 and "](data:image/svg+xml;base64," in out
