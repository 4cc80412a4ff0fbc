"""Every dashboard page, run headless by Streamlit's AppTest against the query API serving the
incident scenario: each page renders without exceptions and shows the scenario's facts."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

PAGES = Path(__file__).resolve().parents[2] / "dashboards" / "pages"


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
    assert len(charts(at)) == 3
    saturation = at.dataframe[0].value
    assert saturation.iloc[0]["resource"].startswith("pool (pool=crm, region=eu-west")
    assert saturation.iloc[0]["time to exhaustion"] == "18 min"
    assert "PoolSaturationForecast" in list(at.dataframe[1].value["rule"])
