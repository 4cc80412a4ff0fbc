"""The degradation control API over real HTTP semantics (FastAPI TestClient): read the level, change
it, clear refusals for bad input, and the scopes that guard it."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from pipeline.runner import Pipeline
from pipeline.simulation.engines import simulated_engines
from pipeline.simulation.scenario import Engines as EngineModels
from telemetry.clock import VirtualClock
from voxwatch.app import create_app
from voxwatch.config import ApiToken, Scope, Settings
from voxwatch.context import AppContext

READ, ADMIN = "read-token-123456", "admin-token-123456"


@pytest.fixture
def client():
    clock = VirtualClock(1_700_000_000.0)
    pipeline = Pipeline(simulated_engines(EngineModels(), clock), clock=clock)
    settings = Settings(tokens=[ApiToken(name="r", token=READ, scopes=[Scope.READ]), ApiToken(name="a", token=ADMIN, scopes=[Scope.ADMIN])])
    ctx = AppContext(clock=clock, pipeline=pipeline, settings=settings)
    with TestClient(create_app(ctx)) as c:
        c.pipeline = pipeline
        yield c


def auth(token):
    return {"Authorization": f"Bearer {token}"}


def test_reads_the_current_level(client):
    r = client.get("/v1/degradation", headers=auth(READ))
    assert r.status_code == 200
    body = r.json()
    assert body["level"] == "NORMAL" and "HUMAN_HANDOFF" in body["levels"]


def test_put_changes_the_level_the_stages_obey(client):
    r = client.put("/v1/degradation", json={"level": "INTEGRATIONS_QUEUED", "reason": "orders pool saturated", "rule": "PoolSaturation"}, headers=auth(ADMIN))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["phase"] == "applied" and body["previous_level"] == "NORMAL"
    assert client.pipeline.controller.policy.integrations_queued
    back = client.put("/v1/degradation", json={"level": "NORMAL", "reason": "resolved"}, headers=auth(ADMIN)).json()
    assert back["phase"] == "reverted" and not client.pipeline.controller.policy.integrations_queued


def test_region_failover_evacuates_the_named_region(client):
    r = client.put("/v1/degradation", json={"level": "REGION_FAILOVER", "region": "primary", "reason": "region down"}, headers=auth(ADMIN))
    assert r.json()["region"] == "primary"
    assert client.pipeline.regions.serving("primary") == "secondary"


def test_asking_for_the_current_level_again_is_refused_not_an_error(client):
    client.put("/v1/degradation", json={"level": "CACHED_RESPONSES"}, headers=auth(ADMIN))
    r = client.put("/v1/degradation", json={"level": "CACHED_RESPONSES"}, headers=auth(ADMIN))
    assert r.status_code == 200 and r.json()["phase"] == "refused"


def test_unknown_level_is_a_400_naming_the_levels(client):
    r = client.put("/v1/degradation", json={"level": "PANIC"}, headers=auth(ADMIN))
    assert r.status_code == 400 and "CACHED_RESPONSES" in r.json()["detail"]


def test_unknown_region_is_a_400(client):
    r = client.put("/v1/degradation", json={"level": "REGION_FAILOVER", "region": "mars"}, headers=auth(ADMIN))
    assert r.status_code == 400 and "mars" in r.json()["detail"]


def test_changing_needs_the_admin_scope(client):
    assert client.put("/v1/degradation", json={"level": "NORMAL"}, headers=auth(READ)).status_code == 403
    assert client.put("/v1/degradation", json={"level": "NORMAL"}).status_code == 401


def test_without_a_pipeline_the_api_says_so():
    settings = Settings(tokens=[ApiToken(name="r", token=READ, scopes=[Scope.READ])])
    with TestClient(create_app(AppContext(settings=settings))) as c:
        r = c.get("/v1/degradation", headers=auth(READ))
    assert r.status_code == 503 and "no pipeline" in r.json()["detail"]


def test_both_addresses_take_one_request_and_check_the_region(client):
    # the query API's POST and the control API's PUT are one endpoint behind two addresses
    r = client.post("/api/v1/degradation", json={"level": "REGION_FAILOVER", "region": "mars", "reason": "x"}, headers=auth(ADMIN))
    assert r.status_code == 400 and "unknown region 'mars'" in r.json()["detail"]
    assert client.pipeline.controller.level.name == "NORMAL"
    r = client.post("/api/v1/degradation", json={"level": "REGION_FAILOVER", "region": "secondary", "reason": "flood"}, headers=auth(ADMIN))
    assert r.status_code == 200 and r.json()["action"]["phase"] == "applied"
    assert r.json()["state"]["region"] == "secondary" and r.json()["state"]["source"] == "pipeline"
    state = client.get("/v1/degradation", headers=auth(READ)).json()
    assert state["level"] == "REGION_FAILOVER" and state["reason"] == "flood (by a)"
    assert client.pipeline.regions.serving("secondary") == "primary"
