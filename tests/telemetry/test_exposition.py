"""GET /metrics from a running app, scraped over real HTTP and parsed with prometheus-client's parser."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

from telemetry import Telemetry
from voxwatch.app import create_app
from voxwatch.context import AppContext


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served():
    tel = Telemetry()
    app = create_app(AppContext(telemetry=tel))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    yield tel, f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(5)


def scrape(url: str, **headers) -> httpx.Response:
    r = httpx.get(f"{url}/metrics", headers=headers, timeout=10)
    r.raise_for_status()
    return r


def test_metrics_endpoint_serves_every_declared_metric_in_prometheus_text_format(served):
    tel, url = served
    tel["voxwatch_pool_saturation_ratio"].labels(pool="crm").set(0.93)
    tel["voxwatch_turn_latency_seconds"].labels(region="us-east").observe(0.147)
    tel["voxwatch_calls_started_total"].labels(region="us-east").inc(3)

    r = scrape(url)
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(r.text)}

    for spec in tel.catalog:
        assert spec.prometheus_name in families, spec.name
        assert families[spec.prometheus_name].type == spec.type
    sat = families["voxwatch_pool_saturation_ratio"].samples
    assert [(s.labels, s.value) for s in sat] == [({"pool": "crm"}, 0.93)]
    turn = {(s.name, s.labels.get("le")): s.value for s in families["voxwatch_turn_latency_seconds"].samples}
    assert turn[("voxwatch_turn_latency_seconds_bucket", "0.15")] == 1.0
    assert turn[("voxwatch_turn_latency_seconds_bucket", "0.125")] == 0.0
    assert turn[("voxwatch_turn_latency_seconds_count", None)] == 1.0
    started = [s for s in families["voxwatch_calls_started"].samples if s.name.endswith("_total")]
    assert started[0].value == 3.0


def test_scrapes_are_counted_and_openmetrics_is_served_when_asked(served):
    tel, url = served
    scrape(url)
    r = scrape(url, accept="application/openmetrics-text; version=1.0.0")
    assert r.headers["content-type"].startswith("application/openmetrics-text")
    assert r.text.rstrip().endswith("# EOF")
    assert tel.registry.get_sample_value("voxwatch_metrics_scrapes_total") == 2.0


def test_without_telemetry_the_app_has_no_metrics_route():
    app = create_app(AppContext())
    assert "/metrics" not in {getattr(r, "path", "") for r in app.routes}
