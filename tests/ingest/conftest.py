"""A real `voxwatch serve` API (uvicorn on a free port, the service's own context and sink) on a fresh
embedded store, with an ingest token, a read token and an admin token."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn

from voxwatch.config import ApiToken, Scope, Settings

INGEST, READ, ADMIN = "ingest-token-1234567", "read-token-123456789", "admin-token-12345678"


@pytest.fixture
def map_workers() -> int:
    """`ingest.map_workers` of the service: 0, traces mapped in the receiver's process. A module that
    parametrises this fixture runs its tests against the worker-process path too."""
    return 0


@pytest.fixture
def service(store, tmp_path, monkeypatch, map_workers):
    from voxwatch.commands.serve import build_context, start_api

    monkeypatch.setenv("VOXWATCH_SPOOL", str(tmp_path / "spool"))
    settings = Settings(tokens=[ApiToken(name="pipecat-bot", token=INGEST, scopes=[Scope.INGEST]),
                                ApiToken(name="r", token=READ, scopes=[Scope.READ]),
                                ApiToken(name="a", token=ADMIN, scopes=[Scope.ADMIN])],
                        ingest={"map_workers": map_workers})
    ctx = build_context(settings, store=store)
    api = start_api(ctx)
    ctx.url = api.url
    yield ctx
    api.stop()
    ctx.sink.close()


def auth(token: str = INGEST) -> dict:
    return {"Authorization": f"Bearer {token}"}


def stored(ctx, sql: str):
    """Flush what the service queued, then read the store."""
    ctx.telemetry.flush()
    ctx.sink.flush()
    return ctx.store.query_rows(sql)


ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def served_app(app, path: str):
    """A FastAPI app (a webhook receiver) served by uvicorn on a free port in a thread; yields the URL of `path`."""
    from voxwatch.commands.serve import _wait_http, free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    try:
        _wait_http(f"http://127.0.0.1:{port}/docs", 20, th.is_alive)
        yield f"http://127.0.0.1:{port}{path}"
    finally:
        server.should_exit = True
        th.join(5)


def _llm_stand_in(ttft_median_s: float = 0.090):
    """The project's OpenAI-compatible stand-in (pipeline/real/llm_server.py) in its own process."""
    from voxwatch.commands.serve import _wait_http, free_port

    port = free_port()
    code = ("import sys, uvicorn; from pipeline.real.llm_server import LatencyProfile, create_llm_app; "
            "uvicorn.run(create_llm_app(LatencyProfile(ttft_median_s=float(sys.argv[2]), ttft_sigma=0.05)), "
            "host='127.0.0.1', port=int(sys.argv[1]), log_level='warning')")
    proc = subprocess.Popen([sys.executable, "-c", code, str(port), str(ttft_median_s)], cwd=ROOT,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_http(f"{url}/healthz", 30, lambda: proc.poll() is None)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="session")
def llm_stand_in():
    yield from _llm_stand_in()


@pytest.fixture(scope="session")
def slow_llm_stand_in():
    """The same stand-in with its provider slowed down: about 900 ms to the first token."""
    yield from _llm_stand_in(0.9)
