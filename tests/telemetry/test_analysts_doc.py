"""docs/analysts.md stays true: every SQL answer in it runs on a store the pipeline simulator filled
(Grafana's macros expanded as Grafana would), the `samples` view shows the metric name, the labels
as a Map and a millisecond time with `SELECT *`, and on Debian's 18.16 server the view has its
closest form (seconds, label arrays)."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "analysts.md"
BLOCK = re.compile(r"```sql( grafana)?\n(.*?)```", re.S)


def doc_queries() -> list[tuple[str, bool]]:
    return [(m.group(2).strip(), bool(m.group(1))) for m in BLOCK.finditer(DOC.read_text())]


def grafana(sql: str) -> str:
    """Expand the data source's macros the way it does for a one-hour panel with a 1-minute interval."""
    sql = re.sub(r"\$__timeFilter\((\w+)\)", r"\1 >= now() - INTERVAL 1 HOUR AND \1 <= now()", sql)
    return re.sub(r"\$__timeInterval\((\w+)\)", r"toStartOfInterval(\1, INTERVAL 60 second)", sql)


@pytest.fixture(scope="module")
def simulated(chdb_root):
    from pipeline.simulation.scenario import load_scenario
    from telemetry.store import open_store
    from voxwatch.commands.simulate import simulate

    end = int(time.time())
    scenario = load_scenario("october-3").scaled(calls=60, duration_s=900)
    scenario = scenario.model_copy(update={"start": float(end - 900)})  # ending now: 'the last hour' holds it
    url = f"chdb://{chdb_root}?database=analysts_{os.getpid()}"
    simulate(scenario, store_url=url, trace_sample=0.5)
    store = open_store(url)
    yield store
    store.drop_database()
    store.close()


def test_the_doc_has_ten_questions_and_grafana_examples():
    text = DOC.read_text()
    assert len(re.findall(r"^\d+\. \*\*", text, re.M)) == 10
    queries = doc_queries()
    assert sum(1 for _, g in queries if g) == 2 and len(queries) >= 12


def test_every_answer_in_the_doc_runs_without_a_join(simulated):
    answered = 0
    for sql, is_grafana in doc_queries():
        assert " JOIN " not in sql.upper(), sql
        df = simulated.readonly_query(grafana(sql) if is_grafana else sql, max_rows=1000, max_seconds=30)
        answered += len(df) > 0
    assert answered >= 9  # the incidents question has no rows here: this store saw no alert engine


def test_samples_shows_metric_labels_map_and_milliseconds(simulated):
    df = simulated.readonly_query("SELECT * FROM samples WHERE metric = 'voxwatch_pool_saturation_ratio' LIMIT 5",
                                  max_rows=10, max_seconds=30)
    assert list(df.columns)[:4] == ["ts", "metric", "labels", "value"]
    types = dict(zip(*[simulated.query("DESCRIBE TABLE samples")[c] for c in ("name", "type")], strict=True))
    assert types["ts"] == "DateTime64(3, 'UTC')" and types["labels"] == "Map(String, String)"
    row = df.iloc[0]
    assert row["metric"] == "voxwatch_pool_saturation_ratio" and "pool" in dict(row["labels"])
    ms = simulated.scalar("SELECT toUnixTimestamp64Milli(ts) - ts_ms FROM samples LIMIT 1")
    assert int(ms) == 0  # the time keeps its milliseconds


@pytest.mark.server
def test_the_samples_view_on_the_old_server_is_its_closest_form(server_store):
    server_store.insert("metric_series", {"fingerprint": [7], "metric_id": [5], "metric": ["voxwatch_pool_saturation_ratio"],
                                          "sample_name": ["voxwatch_pool_saturation_ratio"], "metric_type": ["gauge"],
                                          "label_keys": [["pool"]], "label_values": [["orders"]], "first_seen_ms": [0]})
    server_store.insert("metric_samples", {"ts_ms": [1_696_323_600_250], "fingerprint": [7], "metric_id": [5], "value": [0.5]})
    df = server_store.readonly_query(
        "SELECT ts, metric, label_values[indexOf(label_keys, 'pool')] AS pool, value, ts_ms FROM samples",
        max_rows=10, max_seconds=10)
    assert list(df["pool"]) == ["orders"] and int(df["ts_ms"].iloc[0]) == 1_696_323_600_250
