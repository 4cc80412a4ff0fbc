"""The dashboard in a real browser: Debian's Chromium driven by Playwright against a running
`voxwatch serve --config FILE --dashboard` on an embedded store holding the incident scenario.
Each page is loaded, its rendered content awaited and checked, and a screenshot kept under
test-output/screenshots/."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "test-output" / "screenshots"
READ_TOKEN = "browser-read-token-0123456789"
ADMIN_TOKEN = "browser-admin-token-0123456789"
FILL = ("import sys, time; from telemetry.store import open_store; from tests.dashboards.scenario_data import fill; "
        "s = open_store('chdb://' + sys.argv[1]); fill(s, end_ms=int(time.time() * 1000)); s.close()")

# the console script, as a person runs it (`python -m voxwatch.cli` would load the CLI module twice)
VOXWATCH = [sys.executable, "-c", "import sys; from voxwatch.cli import main; sys.exit(main())"]


def _free_port() -> int:
    from voxwatch.commands.serve import free_port

    return free_port()


def wait_for_dashboard(proc, dash: str, log, log_path: Path, timeout_s: float = 90) -> None:
    """Until the dashboard of a starting `voxwatch serve` answers its health check; its log's tail if it dies or stalls."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(f"{dash}/_stcore/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            log.close()
            raise RuntimeError(f"voxwatch serve did not come up: {log_path.read_text()[-2000:]}")
        time.sleep(0.3)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("Debian's chromium is not installed")
    work = tmp_path_factory.mktemp("served")
    store_dir = work / "store"
    # the test process must not open the folder: `voxwatch serve` owns it (chdb locks it)
    subprocess.run([sys.executable, "-c", FILL, str(store_dir)], cwd=ROOT, check=True, timeout=180)
    api_port, dash_port = _free_port(), _free_port()
    config = work / "voxwatch.yaml"
    config.write_text(yaml.safe_dump({
        "store": f"chdb://{store_dir}", "host": "127.0.0.1", "port": api_port, "dashboard_port": dash_port,
        "tokens": [{"name": "dashboard", "token": READ_TOKEN, "scopes": ["read"]},
                   {"name": "oncall", "token": ADMIN_TOKEN, "scopes": ["admin"]}],
    }))
    log = open(work / "serve.log", "w")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen([*VOXWATCH, "serve", "--config", str(config), "--dashboard"],
                            cwd=work, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, VOXWATCH_REFRESH_S="3600"))
    dash = f"http://127.0.0.1:{dash_port}"
    wait_for_dashboard(proc, dash, log, work / "serve.log")
    yield {"api": f"http://127.0.0.1:{api_port}", "dashboard": dash, "proc": proc}
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def open_page(browser, url: str):
    # tall enough that the screenshot holds the whole page: Streamlit scrolls inside its own container
    page = browser.new_page(viewport={"width": 1500, "height": 2400})
    page.goto(url, wait_until="domcontentloaded", timeout=60_000)
    return page


def settle(page, timeout_ms: int = 60_000, draw_ms: int = 800) -> None:
    """Wait until Streamlit has finished the script run (its status widget disappears)."""
    page.wait_for_timeout(500)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout_ms)
    page.wait_for_timeout(draw_ms)  # plotly draws after the run ends
    body = page.inner_text("body")
    assert "Page not found" not in body and "Traceback" not in body


def shoot(page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def hover_texts(page, plot: str) -> list[str]:
    """Hover every marker of a chart's event lane and collect the hover labels plotly shows."""
    out = []
    points = page.locator(f"{plot} >> .subplot.xy9 .scatterlayer .point")
    for i in range(points.count()):
        box = points.nth(i).bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)  # plotly listens on its drag layer
        page.wait_for_timeout(200)
        label = page.locator(f"{plot} >> .hoverlayer .hovertext")
        if label.count():
            out.append(label.first.text_content() or "")
    return out


def test_api_behind_the_dashboard_refuses_requests_without_a_token(served):
    assert httpx.get(served["api"] + "/api/v1/overview").status_code == 401
    r = httpx.get(served["api"] + "/api/v1/overview", headers={"Authorization": f"Bearer {READ_TOKEN}"})
    assert r.status_code == 200 and r.json()["active_alerts"]


def test_overview_page_renders_metrics_charts_and_saturation(served, browser):
    page = open_page(browser, served["dashboard"] + "/")  # the default page
    page.wait_for_selector("[data-testid='stMetric']", timeout=60_000)
    page.wait_for_selector(".js-plotly-plot", timeout=60_000)
    settle(page)
    text = page.inner_text("body")
    assert "Turn latency P50 / P95 / P99" in text and "300 ms budget" in text
    assert "Abandoned calls" in text
    assert page.locator(".js-plotly-plot").count() == 3
    # what happened is in the event lane under the time axis: hovering its markers tells it
    told = hover_texts(page, ".js-plotly-plot >> nth=0")
    assert any("applied INTEGRATIONS_QUEUED" in t for t in told) and any("PoolSaturationForecast firing" in t for t in told), told
    assert shoot(page, "overview").stat().st_size > 20_000
    page.close()


def test_metrics_page_lists_the_catalog_and_plots(served, browser):
    page = open_page(browser, served["dashboard"] + "/metrics")
    page.wait_for_selector(".js-plotly-plot", timeout=60_000)
    settle(page)
    assert "Metric to plot" in page.inner_text("body")
    shoot(page, "metrics")
    page.close()


def test_incidents_page_shows_the_timeline_and_annotated_charts(served, browser):
    page = open_page(browser, served["dashboard"] + "/incidents")
    page.wait_for_selector("text=Actions taken", timeout=60_000)
    page.wait_for_selector(".js-plotly-plot", timeout=60_000)
    settle(page)
    assert page.locator(".js-plotly-plot").count() == 2  # latency and the pool's saturation, incident shaded
    assert "action applied: INTEGRATIONS_QUEUED" in page.inner_text("[data-testid='stTable']")  # the timeline
    svg = page.inner_html(".js-plotly-plot >> nth=0")
    assert "events" in svg  # the lane of event markers under the time axis
    shoot(page, "incidents")
    page.close()


def test_calls_page_shows_the_explorer_and_a_waterfall(served, browser):
    page = open_page(browser, served["dashboard"] + "/calls")
    page.wait_for_selector("text=Turn-by-turn waterfall", timeout=60_000)
    settle(page)
    text = page.inner_text("body")
    assert "calls match" in text and "Export CSV" in text and "caller:" in text
    shoot(page, "calls")
    page.close()


def test_anomalies_page_shows_findings_with_forecast(served, browser):
    page = open_page(browser, served["dashboard"] + "/anomalies")
    page.wait_for_selector(".js-plotly-plot", timeout=60_000)
    settle(page)
    assert "exhausted in" in page.inner_html(".js-plotly-plot")
    shoot(page, "anomalies")
    page.close()


def test_sql_page_runs_the_example_query(served, browser):
    page = open_page(browser, served["dashboard"] + "/sql")
    page.wait_for_selector("[data-testid='stDataFrame']", timeout=60_000)
    settle(page)
    assert "rows in" in page.inner_text("body")
    shoot(page, "sql")
    page.close()
