"""The Incidents page in a real browser (Debian's Chromium driven by Playwright) on a replayed
october-3 (`voxwatch demo`, 300 calls at peak, full length, at full speed, still serving afterwards):
one incident, its timeline in order, acknowledged through the page with the on-call's own token,
the report downloaded and naming the orders pool and the action taken, and no two event markers or
labels of any chart overlapping (their bounding boxes compared). Screenshots go to
test-output/screenshots/."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_browser_dashboard import SHOTS, VOXWATCH, _free_port, hover_texts
from tests.e2e.test_browser_dashboard import settle as settle_page

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("Debian's chromium is not installed")
    work = tmp_path_factory.mktemp("replayed")
    api_port, dash_port = _free_port(), _free_port()
    log_path = work / "demo.log"
    log = open(log_path, "w")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen([*VOXWATCH, "demo", "--scenario", "october-3", "--calls", "300", "--speed", "max",
                             "--port", str(api_port), "--dashboard-port", str(dash_port),
                             "--store", f"chdb://{work}/store?database=demo"],
                            cwd=work, stdout=log, stderr=subprocess.STDOUT,
                            env=dict(os.environ, VOXWATCH_REFRESH_S="3600", COLUMNS="300", PYTHONPATH=str(ROOT)))
    deadline = time.monotonic() + 1200
    while "Still serving" not in log_path.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"the demo did not finish its replay: {log_path.read_text()[-3000:]}")
        time.sleep(1)
    text = log_path.read_text()
    tokens = {"read": re.search(r"read token: (vxr_[\w-]+)", text).group(1),
              "admin": re.search(r"token (vxa_[\w-]+)", text).group(1)}
    yield {"api": f"http://127.0.0.1:{api_port}", "dashboard": f"http://127.0.0.1:{dash_port}", "tokens": tokens}
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def settle(page) -> None:
    # after a full demo replay the machine is busy: longer to finish the run and to draw
    settle_page(page, timeout_ms=90_000, draw_ms=1500)


def api(replayed, path: str) -> dict:
    r = httpx.get(replayed["api"] + "/api/v1" + path, headers={"Authorization": f"Bearer {replayed['tokens']['read']}"},
                  timeout=30)
    r.raise_for_status()
    return r.json()


def overlaps(boxes: list[dict]) -> list[tuple[dict, dict]]:
    out = []
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            if a["x"] < b["x"] + b["width"] and b["x"] < a["x"] + a["width"] and \
               a["y"] < b["y"] + b["height"] and b["y"] < a["y"] + a["height"]:
                out.append((a, b))
    return out


def secs(text: str) -> int:
    """'+21:40' or '-3:05' (minutes:seconds since the incident's start) in seconds."""
    sign = -1 if text.startswith("-") else 1
    m, s = text.lstrip("+-").split(":")
    return sign * (int(m) * 60 + int(s))


def chart_marks(page) -> list[list[dict]]:
    """Per chart: the bounding boxes of its event markers and of any text annotation."""
    return page.evaluate("""() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(plot => {
        const els = [...plot.querySelectorAll('.subplot.xy9 .scatterlayer .point'), ...plot.querySelectorAll('g.annotation')];
        return els.map(e => { const r = e.getBoundingClientRect(); return {x: r.x, y: r.y, width: r.width, height: r.height}; })
                  .filter(r => r.width > 0 && r.height > 0);
    })""")


def test_the_incidents_page_tells_the_october_3_story_and_acknowledges(replayed, browser, tmp_path):
    listing = api(replayed, "/incidents")["incidents"]
    assert len(listing) == 1, [i["title"] for i in listing]
    inc = listing[0]
    assert "orders" in inc["scope"] and inc["state"] == "open"

    page = browser.new_page(viewport={"width": 1500, "height": 2600}, accept_downloads=True)
    page.goto(replayed["dashboard"] + "/incidents", wait_until="domcontentloaded", timeout=60_000)
    page.wait_for_selector("text=Timeline", timeout=90_000)
    page.wait_for_selector(".js-plotly-plot", timeout=90_000)
    settle(page)
    body = page.inner_text("body")
    assert inc["incident_id"] in body and "Ground truth: downstream_slowdown on orders" in body

    # the timeline, in order: 'since start' read from the page's table never goes back
    rows = page.eval_on_selector_all("[data-testid='stTable'] tbody tr",
                                     "rows => rows.map(r => Array.from(r.querySelectorAll('th,td')).map(c => c.innerText))")
    assert len(rows) >= 5
    since = [secs(r[1]) for r in rows]
    assert since == sorted(since)
    kinds = [r[2] for r in rows]
    assert "finding" in kinds and "alert" in kinds and "page" in kinds and "action" in kinds
    assert kinds.index("finding") < kinds.index("action")

    # no marker or label of a chart overlaps another one; tiles show their whole value
    charts = chart_marks(page)
    assert len(charts) >= 1 and sum(len(c) for c in charts) >= 5
    for boxes in charts:
        assert not overlaps(boxes)
    told = hover_texts(page, ".js-plotly-plot >> nth=0")  # the lane's markers tell what happened on hover
    assert any("action applied: INTEGRATIONS_QUEUED" in t for t in told), told
    cut = page.evaluate("""() => Array.from(document.querySelectorAll('[data-testid="stMetricValue"]'))
        .filter(e => e.scrollWidth > e.clientWidth + 1 || e.innerText.includes('…')).map(e => e.innerText)""")
    assert cut == []
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "incident-october-3.png"), full_page=True)

    # the report downloads and names the pool and the action taken
    with page.expect_download(timeout=60_000) as dl:
        page.get_by_role("button", name="Download report (Markdown)").click()
    report = Path(dl.value.path()).read_text()
    assert report.startswith(f"# {inc['incident_id']}") and "orders" in report and "INTEGRATIONS_QUEUED" in report

    # acknowledge through the page, as the on-call (their admin token, typed into the page)
    page.get_by_role("textbox", name="Your API token (admin scope)").fill(replayed["tokens"]["admin"])
    page.get_by_role("textbox", name="Your API token (admin scope)").press("Enter")
    settle(page)
    page.get_by_role("button", name="Acknowledge").click()
    page.wait_for_selector("text=acknowledged", timeout=60_000)
    settle(page)
    after = api(replayed, f"/incidents/{inc['incident_id']}")
    assert after["state"] == "acknowledged" and after["timings"]["acknowledge"] is not None
    assert after["timeline"][-1]["kind"] == "acknowledged"
    page.screenshot(path=str(SHOTS / "incident-october-3-acknowledged.png"), full_page=True)
    page.close()


def test_overview_tiles_fit_and_event_markers_do_not_overlap(replayed, browser):
    page = browser.new_page(viewport={"width": 1500, "height": 2400})
    page.goto(replayed["dashboard"] + "/", wait_until="domcontentloaded", timeout=60_000)
    page.wait_for_selector("[data-testid='stMetric']", timeout=90_000)
    page.wait_for_selector(".js-plotly-plot", timeout=90_000)
    settle(page)
    text = page.inner_text("body")
    assert "Abandoned calls" in text and "calls started per minute" in text
    tiles = page.evaluate("""() => Array.from(document.querySelectorAll('[data-testid="stMetricValue"]'))
        .map(e => ({text: e.innerText, cut: e.scrollWidth > e.clientWidth + 1}))""")
    assert any(t["text"] == "INTEGRATIONS_QUEUED" for t in tiles) and not any(t["cut"] for t in tiles)
    for boxes in chart_marks(page):
        assert not overlaps(boxes)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "overview-october-3.png"), full_page=True)
    page.close()
