"""Every dashboard page, run headless by Streamlit's AppTest against the query API serving the
incident scenario: each page renders without exceptions and shows the scenario's facts."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

PAGES = Path(__file__).resolve().parents[2] / "dashboards" / "views"


def run_page(name: str, timeout: float = 60) -> AppTest:
    at = AppTest.from_file(str(PAGES / f"{name}.py"), default_timeout=timeout)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def charts(at: AppTest) -> list:
    return at.get("plotly_chart")


def test_overview_shows_traffic_latency_saturation_alerts_and_level(dashboard_env):
    at = run_page("overview")
    metrics = {m.label: m.value for m in at.metric}
    assert int(metrics["Calls"].replace(",", "")) > 0
    assert metrics["Degradation level"] == "INTEGRATIONS_QUEUED"
    assert metrics["Active alerts"] == "1"
    assert metrics["Abandoned calls"].endswith("%")
    assert f"Incident {dashboard_env['incident_id']} open" in at.warning[0].value  # the way to the whole story
    assert len(charts(at)) == 3
    saturation = at.dataframe[0].value
    assert saturation.iloc[0]["resource"].startswith("pool (pool=crm, region=eu-west")
    assert saturation.iloc[0]["time to exhaustion"] == "18 min"
    assert "PoolSaturationForecast" in list(at.dataframe[1].value["rule"])


def test_metrics_page_searches_the_catalog_and_plots_a_metric_with_label_filters(dashboard_env):
    at = run_page("metrics")
    at.text_input(key="vx_metric_q").input("saturation").run()
    assert not at.exception
    names = list(at.dataframe[0].value["name"])
    assert names == ["voxwatch_pool_saturation_ratio"]
    at.multiselect(key="vx_label_voxwatch_pool_saturation_ratio_pool").select("crm").run()
    assert not at.exception
    assert len(charts(at)) == 1
    assert "2 series" in at.caption[-1].value  # crm in two regions


def test_metrics_page_plots_histogram_percentiles(dashboard_env):
    at = run_page("metrics")
    at.text_input(key="vx_metric_q").input("turn latency").run()
    at.selectbox(key="vx_metric").select("voxwatch_turn_latency_seconds").run()
    assert not at.exception
    assert "3 series" in at.caption[-1].value  # P50, P95, P99


def test_incidents_page_shows_one_incident_with_its_timeline_and_the_raw_events(dashboard_env):
    at = run_page("incidents")
    assert at.selectbox(key="vx_incident").value.startswith(f"[OPEN] {dashboard_env['incident_id']}")
    tiles = {m.label: m.value for m in at.metric}
    assert tiles["State"] == "open" and tiles["Resources"] == "crm, eu-west" and tiles["People paged"] == "oncall-webhook"
    assert tiles["Time to page"] != "—" and tiles["Time to resolve"] == "—"
    timeline = at.table[0].value
    assert list(timeline["event"]) == ["finding", "opened", "alert", "page", "action"]
    history = at.dataframe[1].value  # [0] is the actions-and-effects table
    assert list(history["state"]) == ["firing", "pending"]
    notes, actions = at.dataframe[2].value, at.dataframe[3].value
    assert list(notes["receiver"]) == ["oncall-webhook"]
    assert "applied" in set(actions["phase"])
    assert len(charts(at)) == 2  # latency and the pool's saturation, with the incident shaded


def test_incidents_page_acknowledges_with_the_persons_token_and_refuses_without(dashboard_env):
    from tests.dashboards.conftest import ADMIN_TOKEN, READ_TOKEN

    at = run_page("incidents")
    at.button(key="vx_ack").click().run()
    assert "Enter your API token" in at.error[0].value
    at.text_input(key="vx_user_token").input(READ_TOKEN).run()
    at.button(key="vx_ack").click().run()
    assert "lacks the 'admin' scope (HTTP 403)" in at.error[0].value
    at.text_input(key="vx_user_token").input(ADMIN_TOKEN).run()
    at.button(key="vx_ack").click().run()
    assert not at.exception
    assert "acknowledged" in at.success[0].value
    assert {m.label: m.value for m in at.metric}["State"] == "acknowledged"


def test_calls_page_filters_exports_csv_and_shows_a_waterfall(dashboard_env):
    at = run_page("calls")
    last_hour = sum(1 for t in dashboard_env["call_starts"] if t >= dashboard_env["end_ms"] - 3_600_000)
    assert at.caption[0].value.startswith(f"{last_hour} calls match")
    at.text_input(key="vx_f_text").input("charged twice")
    at.button[0].click().run()  # the form's Search button
    assert not at.exception
    table = at.dataframe[0].value
    assert len(table) > 0 and all("billing" in i for i in table["intents"])
    assert at.get("download_button")
    assert len(charts(at)) == 1  # the selected call's waterfall
    assert "charged twice" in at.code[0].value


def test_anomalies_page_lists_findings_with_band_and_forecast(dashboard_env):
    at = run_page("anomalies")
    table = at.dataframe[0].value
    assert set(table["kind"]) == {"saturation_trend", "level_shift"}
    assert "18 min" in set(table["time to exhaustion"])
    assert len(charts(at)) == 1


def test_sql_page_runs_a_read_only_query_and_refuses_a_write(dashboard_env):
    at = run_page("sql")
    df = at.dataframe[0].value
    assert set(df["region"]) == {"eu-west", "us-east"}
    at.text_area(key="vx_sql_text").input("DROP TABLE calls")
    at.button[0].click().run()
    assert not at.exception
    assert "not allowed" in at.error[0].value


def test_the_app_opens_on_the_overview_with_one_range_picker_for_every_page(dashboard_env):
    at = AppTest.from_file(str(PAGES.parent / "app.py"), default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Overview"
    assert [s.label for s in at.sidebar.selectbox] == ["Time range"]
    at.sidebar.selectbox(key="vx_range").select("Last 6 hours").run()
    assert not at.exception
    assert at.caption[0].value.startswith("Last 6 hours")


@pytest.mark.parametrize("page", ["overview", "metrics", "incidents", "calls", "anomalies", "sql"])
def test_pages_say_so_when_the_api_is_unreachable(page, monkeypatch):
    from voxwatch.commands.serve import free_port

    monkeypatch.setenv("VOXWATCH_API_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("VOXWATCH_API_TOKEN", "whatever-token-123456")
    at = run_page(page)
    assert at.error and "unreachable" in at.error[0].value


def test_pages_show_the_api_refusal_for_a_bad_token(api, monkeypatch):
    url, _ = api
    monkeypatch.setenv("VOXWATCH_API_URL", url)
    monkeypatch.setenv("VOXWATCH_API_TOKEN", "not-a-valid-token-000000")
    at = run_page("overview")
    assert "unknown or revoked token (HTTP 401)" in at.error[0].value


def test_traffic_is_a_rate_per_minute_over_the_part_of_each_bucket_the_range_covers():
    import pandas as pd

    from dashboards.common import per_minute

    step = 300_000  # 5-minute buckets, a steady 100 calls a minute
    traffic = pd.DataFrame({"t": [0, 300_000, 600_000, 900_000], "calls": [250, 500, 500, 20]})
    # the range starts in the middle of the first bucket (its 150 s hold 250 calls) and ends 12 s into the last
    out = per_minute(traffic, step, start_ms=150_000, end_ms=912_000)
    assert list(out["t"]) == [0, 300_000, 600_000]  # a bucket barely touched (12 s of 300) is left out
    assert list(out["calls"]) == [100.0, 100.0, 100.0]  # steady load, steady bars


def test_a_series_without_labels_is_named_alone():
    from dashboards.common import series_text

    assert series_text("action_queue", {}) == "action_queue"  # the Overview showed "action_queue ()"
    assert series_text("pool", {"pool": "orders", "region": "eu-west"}) == "pool (pool=orders, region=eu-west)"
