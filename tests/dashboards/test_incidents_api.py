"""The incidents API over a real store: list and read incidents the tracker wrote, acknowledge, note and
resolve with an admin token (a read token is refused), the report as Markdown, and bad ids or states
answered with the reason."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from alerts import StoreWriter
from alerts.incidents import IncidentTracker
from alerts.model import FIRING, PENDING, Alert, alert_fingerprint
from telemetry.clock import VirtualClock
from tests.dashboards.conftest import ADMIN_TOKEN, READ_TOKEN, settings
from voxwatch.app import create_app
from voxwatch.context import AppContext

T0 = 1_696_323_600.0
READ = {"Authorization": f"Bearer {READ_TOKEN}"}
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def served(store):
    """An incident written by one tracker (as the engine's would), served by an API without an engine."""
    clock = VirtualClock(T0)
    writer = StoreWriter(store)
    t = IncidentTracker(clock, writer, store)
    ls = {"alertname": "PoolSaturated", "severity": "page", "pool": "orders"}
    a = Alert("PoolSaturated", alert_fingerprint(ls), ls, {"summary": "orders pool full"}, FIRING, 1.0, T0 - 60, T0)
    t.on_transitions([{"ts": T0, "alert": a, "state": FIRING, "previous_state": PENDING, "event": True}])
    t.on_action({"ts_ms": int(T0 * 1000) + 500, "action_id": "act-9", "phase": "applied", "level": "INTEGRATIONS_QUEUED",
                 "region": "", "rule": "PoolSaturated", "effect_metric": "voxwatch_turn_latency_seconds", "effect_value": 2.4})
    clock.advance(300)
    ctx = AppContext(store=store, clock=clock, settings=settings())
    with TestClient(create_app(ctx)) as client:
        yield client, next(iter(t.incidents))


def test_list_and_read_an_incident_with_its_timeline(served):
    client, iid = served
    assert client.get("/api/v1/incidents").status_code == 401
    r = client.get("/api/v1/incidents", headers=READ)
    assert r.status_code == 200
    body = r.json()
    assert [i["incident_id"] for i in body["incidents"]] == [iid] and len(body["rules"]) == 6
    inc = client.get(f"/api/v1/incidents/{iid}", headers=READ).json()
    assert inc["state"] == "open" and inc["scope"] == ["orders"] and inc["severity"] == "page"
    assert [e["kind"] for e in inc["timeline"]] == ["opened", "alert", "action"]
    assert inc["timings"]["detect"] == 60.0


def test_acknowledge_note_and_resolve_need_admin_and_land_on_the_timeline(served):
    client, iid = served
    r = client.post(f"/api/v1/incidents/{iid}/acknowledge", headers=READ, json={"note": "mine"})
    assert r.status_code == 403
    r = client.post(f"/api/v1/incidents/{iid}/acknowledge", headers=ADMIN, json={"note": "looking"})
    assert r.status_code == 200 and r.json()["state"] == "acknowledged" and r.json()["acknowledged_by"] == "oncall"
    again = client.post(f"/api/v1/incidents/{iid}/acknowledge", headers=ADMIN)
    assert again.status_code == 409 and "already acknowledged" in again.json()["detail"]
    assert client.post(f"/api/v1/incidents/{iid}/notes", headers=ADMIN, json={"text": ""}).status_code == 422
    assert client.post(f"/api/v1/incidents/{iid}/notes", headers=ADMIN, json={"text": "leak found"}).status_code == 201
    r = client.post(f"/api/v1/incidents/{iid}/resolve", headers=ADMIN, json={"note": "pool raised"})
    assert r.status_code == 200 and r.json()["state"] == "resolved"
    inc = client.get(f"/api/v1/incidents/{iid}", headers=READ).json()
    assert [e["kind"] for e in inc["timeline"]][-3:] == ["acknowledged", "note", "resolved"]
    assert inc["timings"]["acknowledge"] == 360.0 and inc["timings"]["resolve"] == 360.0
    assert client.get("/api/v1/incidents", headers=READ, params={"state": "open"}).json()["incidents"] == []


def test_the_report_downloads_as_markdown(served):
    client, iid = served
    r = client.get(f"/api/v1/incidents/{iid}/report", headers=READ)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/markdown")
    assert f'filename="{iid}.md"' in r.headers["content-disposition"]
    text = r.text
    assert text.startswith(f"# {iid}: PoolSaturated (pool=orders)")
    assert "INTEGRATIONS_QUEUED" in text and "## Timeline" in text and "## Actions and their effects" in text


def test_bad_ids_and_states_are_refused_with_the_reason(served):
    client, _ = served
    assert client.get("/api/v1/incidents/INC-nope", headers=READ).status_code == 404
    assert client.post("/api/v1/incidents/INC-nope/resolve", headers=ADMIN).status_code == 404
    assert client.get("/api/v1/incidents/bad id!", headers=READ).status_code == 422
    r = client.get("/api/v1/incidents", headers=READ, params={"state": "closed"})
    assert r.status_code == 400 and "state must be one of" in r.json()["detail"]
    r = client.get("/api/v1/incidents", headers=READ, params={"start_ms": 10, "end_ms": 5})
    assert r.status_code == 400


def pagerduty_delivery(secret: str, fingerprint: str, event_type: str = "incident.acknowledged") -> tuple[bytes, dict]:
    """A PagerDuty V3 webhook delivery as PagerDuty signs it."""
    import hashlib
    import hmac
    import json

    body = json.dumps({"event": {"id": "evt-1", "event_type": event_type, "resource_type": "incident",
                                 "agent": {"id": "PU1", "summary": "Dana Oncall", "type": "user_reference"},
                                 "data": {"id": "PD-INC-1", "type": "incident", "status": "acknowledged",
                                          "incident_key": f"voxwatch/PoolSaturated/{fingerprint}"}}}).encode()
    sig = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return body, {"X-PagerDuty-Signature": f"v1=0000,v1={sig}", "Content-Type": "application/json"}


def test_an_acknowledgement_in_pagerduty_acknowledges_the_incident(served, monkeypatch):
    from alerts.model import alert_fingerprint

    client, iid = served
    fp = alert_fingerprint({"alertname": "PoolSaturated", "severity": "page", "pool": "orders"})
    body, headers = pagerduty_delivery("pd-secret", fp)
    assert client.post("/api/v1/incidents/hooks/pagerduty", content=body, headers=headers).status_code == 404
    monkeypatch.setenv("VOXWATCH_PAGERDUTY_WEBHOOK_SECRET", "pd-secret")
    forged = dict(headers, **{"X-PagerDuty-Signature": "v1=" + "0" * 64})
    assert client.post("/api/v1/incidents/hooks/pagerduty", content=body, headers=forged).status_code == 401
    other, h2 = pagerduty_delivery("pd-secret", fp, event_type="incident.priority_updated")
    assert client.post("/api/v1/incidents/hooks/pagerduty", content=other, headers=h2).json()["result"] == "ignored"
    r = client.post("/api/v1/incidents/hooks/pagerduty", content=body, headers=headers)
    assert r.status_code == 202 and r.json() == {"result": "acknowledged", "incident_id": iid}
    inc = client.get(f"/api/v1/incidents/{iid}", headers=READ).json()
    assert inc["state"] == "acknowledged" and inc["acknowledged_by"] == "Dana Oncall (PagerDuty)"
    again = client.post("/api/v1/incidents/hooks/pagerduty", content=body, headers=headers)
    assert again.status_code == 202 and again.json()["result"] == "unchanged"  # a redelivery changes nothing
