"""The source selector: with calls of Voxwatch's own pipeline and of a pipeline sending OTLP in the range,
the Overview, Calls and Anomalies pages offer a `Source` choice and show only that pipeline's calls and
findings; with one pipeline there is no selector (tests/dashboards/test_pages.py holds that)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from tests.dashboards.conftest import READ_TOKEN, _FixedClock, settings

PAGES = Path(__file__).resolve().parents[2] / "dashboards" / "views"
END_MS = (int(time.time()) // 60) * 60_000
OWN, INGESTED = 30, 12  # calls of each in the last hour


@pytest.fixture(scope="module")
def two_sources(chdb_root):
    """A store holding the last hour of Voxwatch's own calls (two regions) and of an OTLP sender
    (`pizza-bot`, whose calls are filed under its name as region, as ingest does without cloud.region),
    each call row built by the project's call-record builder; and a finding on each side."""
    from telemetry.ingest.conventions import CHANNEL
    from telemetry.store import open_store
    from telemetry.traces import call_columns
    from voxwatch.commands.serve import start_api
    from voxwatch.context import AppContext

    store = open_store(f"chdb://{chdb_root}?database=sources_{os.getpid()}")

    def calls(prefix, k, region, scenario, channel):
        started = END_MS / 1000 - 3000 + np.arange(k) * 60.0
        return call_columns(call_id=[f"{prefix}-{i}" for i in range(k)], started_s=started, ended_s=started + 30,
                            region=region, outcome="completed", turn_latency_ms=np.full((k, 1), 250.0), turns=[1] * k,
                            scenario=scenario, channel=channel)

    store.insert("calls", calls("own", OWN, ["us-east", "eu-west"] * (OWN // 2), "normal-day", "simulated"))
    store.insert("calls", calls("pizza", INGESTED, "pizza-bot", "pizza-bot", CHANNEL))
    store.insert("anomaly_findings", {
        "ts_ms": [END_MS - 600_000, END_MS - 300_000], "finding_id": ["f-own", "f-pizza"],
        "detector": ["robust_level"] * 2, "kind": ["level_shift"] * 2,
        "metric": ["voxwatch_stage_latency_seconds"] * 2, "fingerprint": [1, 2],
        "label_keys": [["region", "stage"]] * 2, "label_values": [["us-east", "llm"], ["pizza-bot", "llm"]],
        "score": [0.9, 0.9], "value": [1.2, 1.4], "expected_low": [0.2, 0.2], "expected_high": [0.5, 0.5],
        "time_to_exhaustion_s": [float("nan")] * 2, "confidence": [0.8, 0.8],
        "reason": ["llm latency up in us-east", "llm latency up for pizza-bot"]})
    running = start_api(AppContext(store=store, clock=_FixedClock(END_MS), settings=settings()))
    yield running.url
    running.stop()
    store.drop_database()
    store.close()


@pytest.fixture
def env(two_sources, monkeypatch):
    monkeypatch.setenv("VOXWATCH_API_URL", two_sources)
    monkeypatch.setenv("VOXWATCH_API_TOKEN", READ_TOKEN)
    return two_sources


def run_page(name: str) -> AppTest:
    at = AppTest.from_file(str(PAGES / f"{name}.py"), default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_the_api_lists_each_pipeline_with_its_regions(env):
    r = httpx.get(f"{env}/api/v1/sources", params={"start_ms": END_MS - 3_600_000, "end_ms": END_MS},
                  headers={"Authorization": f"Bearer {READ_TOKEN}"})
    assert r.status_code == 200
    assert [(s["name"], s["ingested"], s["regions"], s["calls"]) for s in r.json()["sources"]] == [
        ("voxwatch", False, ["eu-west", "us-east"], OWN), ("pizza-bot", True, ["pizza-bot"], INGESTED)]


def test_overview_shows_the_chosen_pipelines_calls(env):
    at = run_page("overview")
    assert at.sidebar.selectbox(key="vx_source").options == ["All sources", "voxwatch", "pizza-bot"]
    assert {m.label: m.value for m in at.metric}["Calls"] == str(OWN + INGESTED)
    at.sidebar.selectbox(key="vx_source").select("pizza-bot").run()
    assert not at.exception
    assert {m.label: m.value for m in at.metric}["Calls"] == str(INGESTED)
    assert "source pizza-bot (pizza-bot)" in at.caption[0].value
    at.sidebar.selectbox(key="vx_source").select("voxwatch").run()
    assert {m.label: m.value for m in at.metric}["Calls"] == str(OWN)


def test_calls_and_anomalies_follow_the_chosen_source(env):
    at = run_page("calls")
    assert at.caption[0].value.startswith(f"{OWN + INGESTED} calls match")
    at.sidebar.selectbox(key="vx_source").select("pizza-bot").run()
    assert at.caption[0].value.startswith(f"{INGESTED} calls match")
    assert set(at.dataframe[0].value["region"]) == {"pizza-bot"}
    at.text_input(key="vx_f_region").input("us-east")
    at.button[0].click().run()  # a region that is not the source's: nothing, and why
    assert not at.exception and "None of those regions" in at.info[0].value

    at = run_page("anomalies")
    assert list(at.dataframe[0].value["id"]) == ["f-pizza", "f-own"]
    at.sidebar.selectbox(key="vx_source").select("voxwatch").run()
    assert not at.exception and list(at.dataframe[0].value["id"]) == ["f-own"]
