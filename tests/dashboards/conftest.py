"""Fixtures for the query API and dashboard tests: one store filled with the incident scenario, and the
FastAPI app served by a real uvicorn on 127.0.0.1 (read-only: no pipeline, so degradation comes from
the store), plus tokens of each scope."""

from __future__ import annotations

import os

import pytest

from tests.dashboards import scenario_data

READ_TOKEN = "read-token-0123456789abcdef"
ADMIN_TOKEN = "admin-token-0123456789abcdef"


def settings():
    from voxwatch.config import ApiToken, Scope, Settings

    return Settings(tokens=[ApiToken(name="dashboard", token=READ_TOKEN, scopes=[Scope.READ]),
                            ApiToken(name="oncall", token=ADMIN_TOKEN, scopes=[Scope.ADMIN])])


class _FixedClock:
    """The service's clock pinned at the end of the scenario, so 'the last hour' is the incident."""

    def __init__(self, now_ms: int) -> None:
        self._ms = now_ms

    def now(self) -> float:
        return self._ms / 1000

    def now_ms(self) -> int:
        return self._ms

    async def sleep(self, seconds: float) -> None:  # pragma: no cover - not used by the API
        raise NotImplementedError


@pytest.fixture(scope="session")
def scenario_store(chdb_root):
    from telemetry.store import open_store

    store = open_store(f"chdb://{chdb_root}?database=dash_{os.getpid()}")
    info = scenario_data.fill(store)
    yield store, info
    store.drop_database()
    store.close()


@pytest.fixture(scope="session")
def api(scenario_store):
    """The query API over HTTP: yields (base_url, scenario info)."""
    from voxwatch.commands.serve import start_api
    from voxwatch.context import AppContext

    store, info = scenario_store
    ctx = AppContext(store=store, clock=_FixedClock(info["end_ms"]), settings=settings())
    running = start_api(ctx)
    yield running.url, info
    running.stop()


@pytest.fixture
def dashboard_env(api, monkeypatch):
    """Environment for AppTest pages: the API's URL and a read token."""
    url, info = api
    monkeypatch.setenv("VOXWATCH_API_URL", url)
    monkeypatch.setenv("VOXWATCH_API_TOKEN", READ_TOKEN)
    return info
