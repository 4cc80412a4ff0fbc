"""The OpenAI-compatible LLM stand-in over real HTTP: its fault injection (`POST /admin/faults`) is what
demos and tests use to slow the provider or make it fail, so it must accept the JSON body it documents."""

from __future__ import annotations

import time

import httpx
import pytest

from pipeline.real.llm_server import LatencyProfile
from pipeline.real.services import LocalServices

CHAT = {"model": "voxwatch-local", "messages": [{"role": "user", "content": "where is my order"}]}


@pytest.fixture
def services():
    svc = LocalServices(llm_profile=LatencyProfile(ttft_median_s=0.01, ttft_sigma=0.01)).start()
    try:
        yield svc
    finally:
        svc.close()


def test_faults_body_is_accepted_and_applied(services):
    with httpx.Client(base_url=services.llm_url, timeout=10) as http:
        r = http.post("/admin/faults", json={"error_rate": 1.0})
        assert r.status_code == 200, r.text
        assert r.json() == {"error_rate": 1.0, "latency_ms": 0.0}
        assert http.post("/v1/chat/completions", json=CHAT).status_code == 503

        assert http.post("/admin/faults", json={"error_rate": 0.0, "latency_ms": 300}).status_code == 200
        t0 = time.perf_counter()
        r = http.post("/v1/chat/completions", json=CHAT)
        elapsed = time.perf_counter() - t0
        assert r.status_code == 200
        assert r.json()["choices"][0]["message"]["content"]
        # The injected latency is a lower bound on the reply time (a behaviour, not a speed check).
        assert elapsed >= 0.3


@pytest.mark.parametrize("body", [{"error_rate": 2}, {"latency_ms": -1}, {"error_rate": "x"}])
def test_out_of_range_faults_are_refused(services, body):
    with httpx.Client(base_url=services.llm_url, timeout=10) as http:
        r = http.post("/admin/faults", json=body)
        assert r.status_code == 422
        assert http.post("/v1/chat/completions", json=CHAT).status_code == 200
