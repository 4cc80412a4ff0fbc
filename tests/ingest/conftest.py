"""A real `voxwatch serve` API (uvicorn on a free port, the service's own context and sink) on a fresh
embedded store, with an ingest token, a read token and an admin token."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from voxwatch.config import ApiToken, Scope, Settings

INGEST, READ, ADMIN = "ingest-token-1234567", "read-token-123456789", "admin-token-12345678"


@pytest.fixture
def service(store, tmp_path, monkeypatch):
    from voxwatch.commands.serve import build_context, start_api

    monkeypatch.setenv("VOXWATCH_SPOOL", str(tmp_path / "spool"))
    settings = Settings(tokens=[ApiToken(name="pipecat-bot", token=INGEST, scopes=[Scope.INGEST]),
                                ApiToken(name="r", token=READ, scopes=[Scope.READ]),
                                ApiToken(name="a", token=ADMIN, scopes=[Scope.ADMIN])])
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


@pytest.fixture(scope="session")
def llm_stand_in():
    from voxwatch.commands.serve import _wait_http, free_port

    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.real.llm_server", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_http(f"{url}/healthz", 30, lambda: proc.poll() is None)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
