"""`POST /v1/calls` from browsers: CORS for the configured origins only (preflight and the answer),
an optional caller token, and the /call page; a config change applies at once. The offers here are
refused by the edge's SDP check (400) before any model loads, which is enough to see the guard."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from voxwatch.app import create_app
from voxwatch.config import Settings
from voxwatch.context import AppContext

OTHER = "http://support.example.com"
BAD_OFFER = {"sdp": "v=0\r\n", "type": "offer"}


@pytest.fixture
def app():
    ctx = AppContext(settings=Settings(calls={"cors_origins": [OTHER]}))
    return ctx, TestClient(create_app(ctx))


def test_preflight_allows_configured_origins_only(app):
    _, client = app
    ok = client.options("/v1/calls", headers={"Origin": OTHER, "Access-Control-Request-Method": "POST",
                                              "Access-Control-Request-Headers": "content-type"})
    assert ok.status_code == 204
    assert ok.headers["access-control-allow-origin"] == OTHER
    assert "POST" in ok.headers["access-control-allow-methods"]
    assert "content-type" in ok.headers["access-control-allow-headers"]
    no = client.options("/v1/calls", headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
    assert no.status_code == 403 and "access-control-allow-origin" not in no.headers


def test_post_from_another_origin_is_refused_unless_configured(app):
    _, client = app
    r = client.post("/v1/calls", json=BAD_OFFER, headers={"Origin": "http://evil.example"})
    assert r.status_code == 403 and "calls.cors_origins" in r.json()["detail"]
    r = client.post("/v1/calls", json=BAD_OFFER, headers={"Origin": OTHER})
    # through the guard: the edge judged the offer, and the browser may read its answer
    assert r.status_code == 400 and r.headers["access-control-allow-origin"] == OTHER
    # same origin and non-browser clients (no Origin) are not CORS requests
    assert client.post("/v1/calls", json=BAD_OFFER, headers={"Origin": "http://testserver"}).status_code == 400
    assert client.post("/v1/calls", json=BAD_OFFER).status_code == 400


def test_caller_token_when_configured_and_reload_applies_at_once(app):
    ctx, client = app
    ctx.settings = Settings(calls={"cors_origins": ["*"], "token": "caller-secret-0123456789"})
    r = client.post("/v1/calls", json=BAD_OFFER, headers={"Origin": "http://anywhere.example"})
    assert r.status_code == 401 and r.headers["access-control-allow-origin"] == "http://anywhere.example"
    r = client.post("/v1/calls", json=BAD_OFFER, headers={"Authorization": "Bearer wrong-token-0123456789"})
    assert r.status_code == 401
    r = client.post("/v1/calls", json=BAD_OFFER, headers={"Authorization": "Bearer caller-secret-0123456789"})
    assert r.status_code == 400
    assert client.get("/v1/calls/0123456789abcdef/turns").status_code == 401
    ok = client.get("/v1/calls/0123456789abcdef/turns", headers={"Authorization": "Bearer caller-secret-0123456789"})
    assert ok.status_code == 200 and ok.json() == []


def test_the_caller_page_is_served(app):
    _, client = app
    r = client.get("/call")
    assert r.status_code == 200 and "RTCPeerConnection" in r.text and "/v1/calls" in r.text


def test_bad_origins_in_config_are_refused():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="not an origin"):
        Settings(calls={"cors_origins": ["https://support.example.com/path"]})
