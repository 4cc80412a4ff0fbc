"""The query API over real HTTP: every endpoint, its filters, bad input (400/422 with a reason, nothing
changed, the service keeps serving) and bearer-token scopes (401, 403)."""

from __future__ import annotations

from types import SimpleNamespace

import httpx
import pytest

from tests.dashboards.conftest import ADMIN_TOKEN, READ_TOKEN, _FixedClock, settings

READ = {"Authorization": f"Bearer {READ_TOKEN}"}
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
HOUR = 3_600_000


@pytest.fixture
def http(api):
    url, info = api
    with httpx.Client(base_url=url + "/api/v1", timeout=30) as c:
        yield c, info


def window(info, hours=2):
    return {"start_ms": info["end_ms"] - hours * HOUR, "end_ms": info["end_ms"]}


READ_ENDPOINTS = ["/now", "/catalog", "/overview", "/calls", "/calls/call-00001", "/findings", "/alerts",
                  "/notifications", "/silences", "/degradation", "/metrics/voxwatch_pool_saturation_ratio/labels",
                  "/series?metric=voxwatch_pool_saturation_ratio"]


# -- auth -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", READ_ENDPOINTS)
def test_read_endpoints_answer_401_without_a_token_and_with_an_unknown_one(http, path):
    c, _ = http
    r = c.get(path)
    assert r.status_code == 401 and r.json()["detail"] == "missing bearer token"
    r = c.get(path, headers={"Authorization": "Bearer not-a-real-token-at-all"})
    assert r.status_code == 401 and "unknown" in r.json()["detail"]


@pytest.mark.parametrize("path", READ_ENDPOINTS)
def test_read_endpoints_answer_200_to_read_and_admin_tokens(http, path):
    c, _ = http
    assert c.get(path, headers=READ).status_code == 200
    assert c.get(path, headers=ADMIN).status_code == 200


def test_a_read_token_cannot_create_silences_or_change_degradation(http):
    c, info = http
    body = {"matchers": [{"name": "alertname", "value": "X"}], "duration_s": 60, "comment": "c"}
    r = c.post("/silences", json=body, headers=READ)
    assert r.status_code == 403 and "admin" in r.json()["detail"]
    assert c.delete("/silences/whatever", headers=READ).status_code == 403
    r = c.post("/degradation", json={"level": "CACHED_RESPONSES", "reason": "test"}, headers=READ)
    assert r.status_code == 403
    assert c.get("/silences", headers=READ).json()["silences"] == []


def test_sql_needs_a_token(http):
    c, _ = http
    assert c.post("/sql", json={"sql": "SELECT 1"}).status_code == 401


# -- calls ------------------------------------------------------------------------------------------


def test_call_search_returns_newest_first_with_the_total(http):
    c, info = http
    r = c.get("/calls", params={**window(info), "limit": 50}, headers=READ).json()
    assert r["total"] == info["calls"]
    starts = [x["started_ms"] for x in r["calls"]]
    assert len(starts) == 50 and starts == sorted(starts, reverse=True)
    page2 = c.get("/calls", params={**window(info), "limit": 50, "offset": 50}, headers=READ).json()
    assert page2["calls"][0]["started_ms"] <= starts[-1]


def test_call_search_filters_by_region_language_intent_outcome_handoff_and_latency(http):
    c, info = http
    base = window(info)
    r = c.get("/calls", params={**base, "region": "eu-west", "language": "de", "limit": 1000}, headers=READ).json()
    assert r["total"] > 0 and all(x["region"] == "eu-west" and x["language"] == "de" for x in r["calls"])
    r = c.get("/calls", params={**base, "intent": ["billing", "cancel_order"], "limit": 1000}, headers=READ).json()
    assert r["total"] > 0 and all({"billing", "cancel_order"} & set(x["intents"]) for x in r["calls"])
    r = c.get("/calls", params={**base, "outcome": "handoff", "handoff": "true", "limit": 1000}, headers=READ).json()
    assert r["total"] > 0 and all(x["handoff"] and x["outcome"] == "handoff" for x in r["calls"])
    r = c.get("/calls", params={**base, "min_latency_ms": 300, "limit": 1000}, headers=READ).json()
    assert r["total"] > 0 and all(x["latency_p95_ms"] > 300 for x in r["calls"])
    all_calls = c.get("/calls", params={**base, "limit": 1000}, headers=READ).json()["calls"]
    assert r["total"] == sum(1 for x in all_calls if x["latency_p95_ms"] > 300)


def test_call_search_finds_words_in_the_transcript(http):
    c, info = http
    r = c.get("/calls", params={**window(info), "text": "CHARGED twice", "limit": 1000}, headers=READ).json()
    assert r["total"] > 0
    for call in r["calls"][:5]:
        detail = c.get(f"/calls/{call['call_id']}", headers=READ).json()
        assert "charged twice" in detail["transcript"].lower()


def test_call_detail_has_turns_with_stage_spans_transcript_and_the_incident_around_it(http):
    c, info = http
    d = c.get(f"/calls/{info['slow_call_id']}", headers=READ).json()
    assert d["call"]["call_id"] == info["slow_call_id"] and d["call"]["region"] == "eu-west"
    assert len(d["turns"]) == d["call"]["turns"]
    for turn in d["turns"]:
        assert [s["name"] for s in turn["stages"]] == ["stt", "nlu", "llm", "tts", "tool"]
        assert turn["duration_ms"] >= sum(s["duration_ms"] for s in turn["stages"]) - 1
    assert d["conversation"]["name"] == "conversation"
    assert "caller:" in d["transcript"]
    # the slowest call ran late in the incident: the alert was already firing and the action applied
    assert isinstance(d["alerts"], list) and isinstance(d["actions"], list)


def test_unknown_call_is_404(http):
    c, _ = http
    r = c.get("/calls/no-such-call", headers=READ)
    assert r.status_code == 404 and "no-such-call" in r.json()["detail"]


# -- metric series ----------------------------------------------------------------------------------


def test_series_filters_by_labels_and_groups(http):
    c, info = http
    r = c.get("/series", params={"metric": "voxwatch_pool_saturation_ratio", "label": ["pool=crm"], **window(info),
                                 "step_s": 600}, headers=READ).json()
    assert {s["labels"]["pool"] for s in r["series"]} == {"crm"} and len(r["series"]) == 2
    assert len(r["series"][0]["points"]) == 12
    r = c.get("/series", params={"metric": "voxwatch_pool_saturation_ratio", "label": ["region=~eu.*", "pool!=llm"],
                                 **window(info), "step_s": 600}, headers=READ).json()
    assert {(s["labels"]["region"], s["labels"]["pool"]) for s in r["series"]} == {("eu-west", "crm"), ("eu-west", "payments")}
    r = c.get("/series", params={"metric": "voxwatch_pool_saturation_ratio", "group_by": "region", "agg": "max",
                                 **window(info), "step_s": 600}, headers=READ).json()
    assert sorted(s["labels"]["region"] for s in r["series"]) == ["eu-west", "us-east"]


def test_series_from_rollups_equals_series_from_raw_samples(http):
    c, info = http
    params = {"metric": "voxwatch_pool_saturation_ratio", "label": ["pool=crm", "region=eu-west"], **window(info),
              "step_s": 300}
    raw = c.get("/series", params={**params, "source": "raw"}, headers=READ).json()
    rollup = c.get("/series", params={**params, "source": "rollup"}, headers=READ).json()
    assert raw["source"] == "raw" and rollup["source"] == "rollup"
    a, b = raw["series"][0]["points"], rollup["series"][0]["points"]
    assert [p[0] for p in a] == [p[0] for p in b]
    assert all(abs(x[1] - y[1]) < 1e-9 for x, y in zip(a, b, strict=True))
    # the incident: the crm pool in eu-west climbs from ~0.35 to ~0.95
    assert a[0][1] < 0.4 and a[-1][1] > 0.85


def test_counter_rate_is_per_second(http):
    c, info = http
    r = c.get("/series", params={"metric": "voxwatch_calls_started_total", "agg": "rate", **window(info), "step_s": 600},
              headers=READ).json()
    # the fixture's counter grows by poisson(30)/5 per 10 s: about 0.6 per second
    values = [p[1] for s in r["series"] for p in s["points"][1:]]
    assert values and all(0.4 < v < 0.8 for v in values)


def test_histogram_percentiles_come_from_buckets_and_show_the_slowdown(http):
    c, info = http
    r = c.get("/series", params={"metric": "voxwatch_turn_latency_seconds", "percentiles": "50,95,99",
                                 "label": "region=eu-west", **window(info), "step_s": 1200}, headers=READ).json()
    assert r["percentiles"] == [0.5, 0.95, 0.99]
    p50, p95, p99 = ([p[1] for p in s["points"]] for s in r["series"])
    assert all(a <= b <= c_ for a, b, c_ in zip(p50, p95, p99, strict=True))
    assert p99[0] < 0.3 and p99[-1] > 0.3  # under budget before the incident, over it at the end


def test_metric_labels_lists_values(http):
    c, _ = http
    r = c.get("/metrics/voxwatch_pool_saturation_ratio/labels", headers=READ).json()
    assert r["labels"] == {"pool": ["crm", "llm", "payments"], "region": ["eu-west", "us-east"]}


def test_catalog_search_finds_stored_metrics(http):
    c, _ = http
    r = c.get("/catalog", params={"q": "saturation", "stored_only": True}, headers=READ).json()
    assert [m["name"] for m in r["metrics"]] == ["voxwatch_pool_saturation_ratio"]


# -- overview, findings, alerts, notifications, degradation -------------------------------------------


def test_overview_reports_traffic_latency_saturation_alerts_and_level(http):
    c, info = http
    r = c.get("/overview", params=window(info, 1), headers=READ).json()
    assert r["budget_ms"] == 300.0
    assert sum(p["calls"] for p in r["traffic"]) == sum(1 for t in info["call_starts"] if t >= info["end_ms"] - HOUR)
    assert {s["labels"]["quantile"] for s in r["latency"]} == {"0.5", "0.95", "0.99"}
    top = r["saturation"][0]
    assert top["labels"] == {"pool": "crm", "region": "eu-west"} and top["value"] > 0.85
    assert top["time_to_exhaustion_s"] == 1080.0
    assert [a["rule"] for a in r["active_alerts"]] == ["PoolSaturationForecast"]
    assert r["degradation"] == {**r["degradation"], "level": "INTEGRATIONS_QUEUED", "source": "store"}


def test_findings_filter_by_kind_and_score(http):
    c, info = http
    r = c.get("/findings", params={**window(info), "kind": "saturation_trend"}, headers=READ).json()
    assert [f["finding_id"] for f in r["findings"]] == ["f-2", "f-1"]
    assert r["findings"][0]["time_to_exhaustion_s"] == 1080.0
    r = c.get("/findings", params={**window(info), "min_score": 0.9}, headers=READ).json()
    assert {f["finding_id"] for f in r["findings"]} == {"f-1", "f-2"}
    level = c.get("/findings", params={**window(info), "kind": "level_shift"}, headers=READ).json()["findings"][0]
    assert level["time_to_exhaustion_s"] is None


def test_alerts_active_and_history(http):
    c, info = http
    r = c.get("/alerts", params=window(info), headers=READ).json()
    assert [a["state"] for a in r["active"]] == ["firing"]
    assert [h["state"] for h in r["history"]] == ["firing", "pending"]
    assert r["history"][0]["labels"]["pool"] == "crm"


def test_notifications_and_degradation_history(http):
    c, info = http
    n = c.get("/notifications", params=window(info), headers=READ).json()["notifications"]
    assert [(x["receiver"], x["result"]) for x in n] == [("oncall-webhook", "delivered")]
    d = c.get("/degradation", params=window(info), headers=READ).json()
    assert {h["phase"] for h in d["history"]} == {"requested", "applied"}
    assert d["state"]["level"] == "INTEGRATIONS_QUEUED"


# -- bad input ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "params", "reason"), [
    ("/series", {"metric": "voxwatch_no_such_metric"}, "unknown metric"),
    ("/series", {"metric": "424242"}, "unknown metric"),
    ("/series", {"metric": "drop table; --"}, "neither a metric id nor a valid metric name"),
    ("/series", {"metric": "voxwatch_pool_saturation_ratio", "label": "pool"}, "malformed label filter"),
    ("/series", {"metric": "voxwatch_pool_saturation_ratio", "label": "pool=~("}, "invalid regular expression"),
    ("/series", {"metric": "voxwatch_pool_saturation_ratio", "label": "pool=~(?=crm)"}, "store refused"),
    ("/series", {"metric": "voxwatch_pool_saturation_ratio", "start_ms": 2000, "end_ms": 1000}, "backwards"),
    ("/series", {"metric": "voxwatch_pool_saturation_ratio", "start_ms": 0, "end_ms": 400 * 86_400_000}, "longer than the limit"),
    ("/series", {"metric": "voxwatch_pool_saturation_ratio", "start_ms": 0, "end_ms": 86_400_000, "step_s": 1}, "points requested"),
    ("/series", {"metric": "voxwatch_pool_saturation_ratio", "percentiles": "0.5,abc"}, "percentiles must be numbers"),
    ("/series", {"metric": "voxwatch_pool_saturation_ratio", "percentiles": "150"}, "outside"),
    ("/series", {"metric": "voxwatch_pool_saturation_ratio", "agg": "median"}, "agg must be one of"),
    ("/series", {"metric": "voxwatch_pool_saturation_ratio", "source": "rollup", "step_s": 30}, "multiple of 60"),
    ("/calls", {"start_ms": 5000, "end_ms": 1000}, "backwards"),
    ("/calls", {"limit": 10_000_000}, "above the maximum"),
    ("/overview", {"start_ms": -5, "end_ms": 1000}, "negative"),
    ("/metrics/voxwatch_nope/labels", {}, "unknown metric"),
])
def test_bad_input_is_a_400_with_the_reason(http, path, params, reason):
    c, _ = http
    r = c.get(path, params=params, headers=READ)
    assert r.status_code == 400, r.text
    assert reason in r.json()["detail"]


@pytest.mark.parametrize(("path", "params"), [
    ("/calls", {"limit": 0}), ("/calls", {"handoff": "maybe"}), ("/calls", {"min_latency_ms": -1}),
    ("/findings", {"min_score": 2}), ("/overview", {"start_ms": "yesterday"}),
])
def test_malformed_parameters_are_a_422_naming_the_field(http, path, params):
    c, _ = http
    r = c.get(path, params=params, headers=READ)
    assert r.status_code == 422
    assert next(iter(params)) in str(r.json()["detail"])


# -- read-only SQL ------------------------------------------------------------------------------------


def test_sql_reads_with_a_row_limit(http):
    c, info = http
    r = c.post("/sql", json={"sql": "SELECT call_id FROM calls ORDER BY call_id", "max_rows": 10}, headers=READ).json()
    assert r["row_count"] == 10 and r["truncated"] is True and r["columns"] == ["call_id"]
    assert r["rows"][0] == ["call-00000"]
    r = c.post("/sql", json={"sql": "SELECT count() AS n FROM calls"}, headers=READ).json()
    assert r["rows"] == [[info["calls"]]] and r["truncated"] is False


@pytest.mark.parametrize("sql", ["DROP TABLE calls", "INSERT INTO calls (call_id) VALUES ('x')",
                                 "ALTER TABLE calls DELETE WHERE 1", "SELECT 1; DROP TABLE calls",
                                 "TRUNCATE TABLE calls"])
def test_sql_that_writes_is_refused_and_nothing_changes(http, sql):
    c, info = http
    r = c.post("/sql", json={"sql": sql}, headers=READ)
    detail = r.json()["detail"]
    assert r.status_code == 400 and ("read-only" in detail or "one statement" in detail)
    n = c.post("/sql", json={"sql": "SELECT count() FROM calls"}, headers=READ).json()["rows"][0][0]
    assert n == info["calls"]
    assert c.get("/now", headers=READ).status_code == 200  # still serving


def test_sql_errors_and_over_limit_requests_are_400(http):
    c, _ = http
    r = c.post("/sql", json={"sql": "SELECT no_such_column FROM calls"}, headers=READ)
    assert r.status_code == 400 and "no_such_column" in r.json()["detail"]
    r = c.post("/sql", json={"sql": "SELECT 1", "max_rows": 10_000_000}, headers=READ)
    assert r.status_code == 400 and "above the limit" in r.json()["detail"]
    assert c.post("/sql", json={"sql": "   "}, headers=READ).status_code == 422


def test_openapi_documents_the_query_api(http, api):
    url, _ = api
    doc = httpx.get(url + "/openapi.json").json()
    paths = set(doc["paths"])
    assert {"/api/v1/calls", "/api/v1/calls/{call_id}", "/api/v1/series", "/api/v1/overview", "/api/v1/findings",
            "/api/v1/alerts", "/api/v1/silences", "/api/v1/silences/{silence_id}", "/api/v1/degradation",
            "/api/v1/sql", "/api/v1/catalog"} <= paths
    assert "CallDetail" in doc["components"]["schemas"]


# -- admin: silences and degradation (a service of their own on a fresh store) ------------------------


@pytest.fixture
def admin_api(store, tmp_path):
    from alerts.notify.silences import Silences
    from pipeline.degradation import DegradationController
    from telemetry.sink import Sink
    from voxwatch.commands.serve import start_api
    from voxwatch.context import AppContext

    clock = _FixedClock(1_795_000_000_000)
    sink = Sink(store, spool_dir=tmp_path / "spool", flush_interval=0.05)
    controller = DegradationController(clock, sink=sink)
    # the alert engine's silences, as the composition root hands them over when alerts run here
    engine = SimpleNamespace(silences=Silences(clock, writer=sink, store=store))
    running = start_api(AppContext(store=store, sink=sink, clock=clock, pipeline=controller, alerts=engine,
                                   settings=settings()))
    with httpx.Client(base_url=running.url + "/api/v1", timeout=30) as c:
        c.engine_silences = engine.silences
        yield c, clock, sink
    running.stop()
    sink.close()


def test_silences_are_created_listed_and_expired_by_admins(admin_api):
    c, clock, _ = admin_api
    body = {"matchers": [{"name": "alertname", "value": "PoolSaturationForecast"},
                         {"name": "region", "value": "eu-.*", "isRegex": True}],
            "duration_s": 3600, "comment": "maintenance on the crm pool"}
    created = c.post("/silences", json=body, headers=ADMIN)
    assert created.status_code == 201
    s = created.json()
    assert s["state"] == "active" and s["created_by"] == "oncall" and s["ends_ms"] == clock.now_ms() + 3_600_000
    # the alert engine in this process mutes matching alerts at once
    muted = {"alertname": "PoolSaturationForecast", "region": "eu-west", "pool": "crm"}
    assert c.engine_silences.mutes(muted) == [s["silence_id"]]
    assert c.engine_silences.mutes({**muted, "region": "us-east"}) == []
    listed = c.get("/silences", headers=READ).json()["silences"]
    assert [x["silence_id"] for x in listed] == [s["silence_id"]]
    expired = c.delete(f"/silences/{s['silence_id']}", headers=ADMIN)
    assert expired.status_code == 200 and expired.json()["state"] == "expired"
    assert c.engine_silences.mutes(muted) == []
    assert c.get("/silences", params={"state": "active"}, headers=READ).json()["silences"] == []
    assert c.get("/silences", params={"state": "expired"}, headers=READ).json()["silences"][0]["ends_ms"] == clock.now_ms()
    again = c.delete(f"/silences/{s['silence_id']}", headers=ADMIN)
    assert again.status_code == 400 and "already expired" in again.json()["detail"]


@pytest.mark.parametrize(("body", "status", "reason"), [
    ({"matchers": [{"name": "a", "value": "b"}], "comment": "x"}, 400, "needs an end"),
    ({"matchers": [{"name": "a", "value": "b"}], "comment": "x", "starts_ms": 1_795_000_100_000,
      "ends_ms": 1_795_000_050_000}, 400, "before it starts"),
    ({"matchers": [{"name": "a", "value": "("}], "isRegex": True, "comment": "x", "duration_s": 60}, 422, "isRegex"),
    ({"matchers": [{"name": "a", "value": "(", "isRegex": True}], "comment": "x", "duration_s": 60}, 400, "regular expression"),
    ({"matchers": [{"name": "a", "value": ".*", "isRegex": True}], "comment": "x", "duration_s": 60}, 400, "empty string"),
    ({"matchers": [{"name": "a", "value": "b"}], "comment": "x", "duration_s": 60 * 86400}, 400, "at most 30 days"),
    ({"matchers": [], "comment": "x", "duration_s": 60}, 422, "matchers"),
    ({"matchers": [{"name": "a", "value": "b"}], "duration_s": 60}, 422, "comment"),
])
def test_bad_silences_are_refused_and_none_is_stored(admin_api, body, status, reason):
    c, _, _ = admin_api
    r = c.post("/silences", json=body, headers=ADMIN)
    assert r.status_code == status and reason in str(r.json()["detail"])
    assert c.get("/silences", headers=READ).json()["silences"] == []


def test_unknown_silence_cannot_be_expired(admin_api):
    c, _, _ = admin_api
    assert c.delete("/silences/nope", headers=ADMIN).status_code == 404


def test_admin_changes_the_degradation_level_through_the_pipeline_controller(admin_api):
    c, _, sink = admin_api
    assert c.get("/degradation", headers=READ).json()["state"]["level"] == "NORMAL"
    r = c.post("/degradation", json={"level": "cached_responses", "reason": "LLM provider slow"}, headers=ADMIN)
    assert r.status_code == 200
    assert r.json()["action"]["phase"] == "applied" and r.json()["state"]["level"] == "CACHED_RESPONSES"
    sink.flush()
    d = c.get("/degradation", params={"start_ms": 1_794_990_000_000, "end_ms": 1_795_000_000_001}, headers=READ).json()
    assert d["state"] == {**d["state"], "level": "CACHED_RESPONSES", "source": "pipeline"}
    assert {h["phase"] for h in d["history"]} == {"requested", "applied"}
    assert "LLM provider slow (by oncall)" in d["history"][0]["reason"]


def test_unknown_degradation_level_is_a_400_and_the_level_stays(admin_api):
    c, _, _ = admin_api
    r = c.post("/degradation", json={"level": "PANIC", "reason": "x"}, headers=ADMIN)
    assert r.status_code == 400 and "unknown degradation level" in r.json()["detail"]
    assert c.get("/degradation", headers=READ).json()["state"]["level"] == "NORMAL"


def test_degradation_cannot_change_where_no_pipeline_runs(http):
    c, _ = http
    r = c.post("/degradation", json={"level": "CACHED_RESPONSES", "reason": "x"}, headers=ADMIN)
    assert r.status_code == 503 and "no pipeline" in r.json()["detail"]


@pytest.mark.parametrize("path", ["/calls/a%09b", "/calls/a%5C", "/calls/a%0Ab", "/calls/a%5C0b",
                                  "/alerts?rule=a%0Ab", "/findings?kind=a%0Ab", "/alerts?rule=a%5Cb"])
def test_control_characters_and_backslashes_in_parameters_are_data_not_errors(http, path):
    c, _ = http
    r = c.get(path, headers=READ)
    assert r.status_code in (200, 404), r.text  # looked up as the exact string: not found, never a 500


@pytest.mark.parametrize("extra", [{"duration_s": 1e308}, {"duration_s": -1}, {"starts_ms": 2**63 - 10, "duration_s": 60},
                                   {"ends_ms": 2**63 - 1}, {"starts_ms": -5, "duration_s": 60}])
def test_silences_with_out_of_range_times_are_refused_clearly(http, extra):
    c, _ = http
    body = {"matchers": [{"name": "alertname", "value": "X"}], "comment": "fuzz", **extra}
    r = c.post("/silences", json=body, headers=ADMIN)
    assert r.status_code == 422, r.text
    assert c.get("/silences", headers=ADMIN).status_code == 200


@pytest.mark.parametrize("sql", [
    "SELECT name, value FROM system.settings WHERE name='readonly' --",
    "SELECT * FROM `file`('/etc/hostname','LineAsString') --",
    "SELECT * FROM file/**/('/proc/self/cmdline','LineAsString')",
    "SELECT * FROM file('/proc/self/environ','LineAsString') #",
    "WITH 1 AS x INSERT INTO calls (call_id) SELECT 'marker' --",
    "SELECT sum(sleepEachRow(1)) FROM numbers(20) SETTINGS max_block_size=1 --",
])
def test_a_read_token_cannot_reach_host_files_or_write_through_sql(http, sql):
    c, _ = http
    r = c.post("/sql", json={"sql": sql}, headers=READ)
    assert r.status_code == 400, r.text
    assert "read-only SQL" in r.json()["detail"] or "does not parse" in r.json()["detail"]
    marker = c.post("/sql", json={"sql": "SELECT count() FROM calls WHERE call_id = 'marker'"}, headers=READ)
    assert marker.json()["rows"] == [[0]]
