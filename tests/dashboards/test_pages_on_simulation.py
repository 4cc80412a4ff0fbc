"""Every page against a store filled by the pipeline's own simulator: `october-3` (scaled down to 60
concurrent calls over 15 simulated minutes, ending now), its metrics, spans and call records written
through the real telemetry path, served by the query API on 127.0.0.1."""

from __future__ import annotations

import os
import time

import httpx
import pytest
from streamlit.testing.v1 import AppTest

from tests.dashboards.conftest import READ_TOKEN, _FixedClock, settings
from tests.dashboards.test_pages import PAGES

DURATION_S = 900


@pytest.fixture(scope="module")
def simulated(chdb_root):
    from pipeline.simulation.scenario import load_scenario
    from telemetry.store import open_store
    from voxwatch.commands.serve import start_api
    from voxwatch.commands.simulate import simulate
    from voxwatch.context import AppContext

    end = int(time.time())
    scenario = load_scenario("october-3").scaled(calls=60, duration_s=DURATION_S)
    # ending now: the store's retention (TTL) would drop rows stamped on the real October 3
    scenario = scenario.model_copy(update={"start": float(end - DURATION_S)})
    url = f"chdb://{chdb_root}?database=sim_{os.getpid()}"
    summary = simulate(scenario, store_url=url, trace_sample=0.5)
    store = open_store(url)
    running = start_api(AppContext(store=store, clock=_FixedClock(end * 1000), settings=settings()))
    yield running.url, summary, store
    running.stop()
    store.drop_database()
    store.close()


@pytest.fixture
def env(simulated, monkeypatch):
    url, summary, store = simulated
    monkeypatch.setenv("VOXWATCH_API_URL", url)
    monkeypatch.setenv("VOXWATCH_API_TOKEN", READ_TOKEN)
    return summary, store


def run(name: str) -> AppTest:
    at = AppTest.from_file(str(PAGES / f"{name}.py"), default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_overview_shows_the_simulated_traffic_latency_and_the_orders_pool(env):
    summary, store = env
    at = run("overview")
    metrics = {m.label: m.value for m in at.metric}
    stored_calls = int(store.scalar("SELECT count() FROM calls"))
    assert int(metrics["Calls"].replace(",", "")) == stored_calls > 0
    assert "histogram:voxwatch_turn_latency_seconds" in at.caption[0].value
    resources = list(at.dataframe[0].value["resource"])
    assert any("pool=orders" in r for r in resources)  # the pool october-3 saturates


def test_metrics_page_plots_the_pool_saturation_by_pool(env):
    at = run("metrics")
    at.text_input(key="vx_metric_q").input("pool saturation").run()
    at.selectbox(key="vx_metric").select("voxwatch_pool_saturation_ratio").run()
    assert not at.exception
    assert len(at.get("plotly_chart")) == 1
    assert "5 series" in at.caption[-1].value  # crm, orders, ticketing, catalog, llm


def test_calls_page_lists_simulated_calls_with_a_waterfall(env):
    summary, store = env
    at = run("calls")
    assert at.caption[0].value.startswith(f"{int(store.scalar('SELECT count() FROM calls')):,} calls match")
    assert len(at.get("plotly_chart")) == 1  # traced calls come first, so the selected one has a waterfall
    at.checkbox(key="vx_f_traced").check()
    at.button[0].click().run()
    traced = int(store.scalar("SELECT count() FROM calls WHERE trace_id != ''"))
    assert 0 < traced < int(store.scalar("SELECT count() FROM calls"))  # the simulator samples traces
    assert at.caption[0].value.startswith(f"{traced:,} calls match")


def test_incidents_anomalies_and_sql_pages_render_on_simulated_data(env):
    summary, store = env
    run("incidents")
    run("anomalies")
    at = run("sql")
    total = at.dataframe[0].value["calls"].sum()
    assert total == int(store.scalar("SELECT count() FROM calls"))


def test_call_detail_of_a_traced_simulated_call_has_its_stages(env, simulated):
    url, _, store = simulated
    # a call that ended: one still in progress when the scenario stops has its turns' spans but no
    # calls row yet (29 of 348 traced calls here), and the API answers 404 for it
    call_id = store.scalar(
        "SELECT call_id FROM spans WHERE name = 'turn' AND call_id IN (SELECT call_id FROM calls) LIMIT 1")
    d = httpx.get(f"{url}/api/v1/calls/{call_id}", headers={"Authorization": f"Bearer {READ_TOKEN}"}).json()
    assert d["turns"] and {"stt", "nlu", "response", "tts"} <= {s["name"] for t in d["turns"] for s in t["stages"]}
