"""Typed payloads of the query API: what a dashboard or an analyst's script sends and gets back.

Times are epoch milliseconds (`*_ms`) like in the store; durations in milliseconds unless named `_s`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- metrics --------------------------------------------------------------------------------------


class CatalogMetric(Model):
    id: int
    name: str
    type: str
    unit: str = ""
    labels: list[str] = Field(default_factory=list)
    layer: str = ""
    component: str = ""
    description: str = ""
    capacity: str | None = Field(default=None, description="fixed capacity or the gauge holding it (saturation metrics)")
    saturation: bool = False
    stored: bool = Field(default=False, description="samples of this metric exist in the store")


class CatalogResponse(Model):
    metrics: list[CatalogMetric]
    total: int
    source: str = Field(description="'catalog' (telemetry's declared catalog) or 'store' (metrics seen in samples)")


class MetricLabelsResponse(Model):
    metric: str
    metric_id: int
    labels: dict[str, list[str]]


class SeriesLine(Model):
    labels: dict[str, str]
    fingerprint: int | None = None
    points: list[tuple[int, float]] = Field(description="[bucket start ms, value]")


class SeriesResponse(Model):
    metric: str
    metric_id: int
    metric_type: str
    agg: str | None = None
    percentiles: list[float] | None = None
    source: str = Field(description="raw samples or the 1-minute rollups")
    start_ms: int
    end_ms: int
    step_ms: int
    series: list[SeriesLine]


# -- calls ----------------------------------------------------------------------------------------


class CallSummary(Model):
    call_id: str
    started_ms: int
    ended_ms: int
    region: str
    language: str
    scenario: str
    channel: str
    intents: list[str]
    outcome: str
    handoff: bool
    handoff_reason: str
    turns: int
    latency_p50_ms: float
    latency_p95_ms: float
    latency_max_ms: float
    degradation_level: str
    trace_id: str


class CallSearchResponse(Model):
    calls: list[CallSummary]
    total: int | None
    limit: int
    offset: int
    start_ms: int
    end_ms: int


class Span(Model):
    span_id: str
    parent_span_id: str
    turn: int
    name: str
    start_us: int
    duration_ms: float
    status: str
    attributes: dict[str, str]


class Turn(Model):
    turn: int
    start_us: int
    duration_ms: float
    status: str
    stages: list[Span] = Field(description="the stage spans of the turn in start order (the waterfall)")


class AlertEvent(Model):
    ts_ms: int
    rule: str
    alert_fingerprint: str
    state: str
    previous_state: str = ""
    severity: str
    labels: dict[str, str]
    annotations: dict[str, str]
    value: float | None
    active_since_ms: int | None = None


class DegradationAction(Model):
    ts_ms: int
    action_id: str
    phase: str
    level: str
    previous_level: str
    region: str
    rule: str
    reason: str
    effect_metric: str = ""
    effect_value: float | None = None


class CallDetail(Model):
    call: CallSummary
    transcript: str
    turns: list[Turn]
    conversation: Span | None = Field(default=None, description="the call's root span, when traced")
    alerts: list[AlertEvent] = Field(description="alert transitions while the call ran, in its region or unscoped")
    actions: list[DegradationAction] = Field(description="degradation actions while the call ran")


# -- overview -------------------------------------------------------------------------------------


class TrafficPoint(Model):
    t: int
    calls: int
    failed: int
    abandoned: int
    handoffs: int
    error_ratio: float


class SaturatedResource(Model):
    metric: str
    labels: dict[str, str]
    fingerprint: int
    value: float = Field(description="latest saturation ratio (0-1)")
    ts_ms: int
    time_to_exhaustion_s: float | None = Field(description="latest forecast from the anomaly findings, if any")


class ActiveAlert(Model):
    rule: str
    alert_fingerprint: str
    state: str
    severity: str = ""
    active_since_ms: int | None
    fired_ms: int | None
    updated_ms: int
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class DegradationState(Model):
    level: str
    region: str | None = None
    reason: str = ""
    rule: str = ""
    since_ms: int | None = None
    source: str = Field(description="'pipeline' (the live controller), 'store' (last recorded action) or 'none'")
    levels: list[str] = Field(default_factory=list)


class OverviewResponse(Model):
    start_ms: int
    end_ms: int
    step_ms: int
    budget_ms: float
    traffic: list[TrafficPoint]
    latency: list[SeriesLine] = Field(description="turn latency P50/P95/P99 lines, ms")
    latency_source: str
    saturation: list[SaturatedResource]
    active_alerts: list[ActiveAlert]
    degradation: DegradationState


# -- findings, alerts, notifications -----------------------------------------------------------------


class Finding(Model):
    ts_ms: int
    finding_id: str
    detector: str
    kind: str
    metric: str
    fingerprint: int
    labels: dict[str, str]
    score: float | None
    value: float | None
    expected_low: float | None
    expected_high: float | None
    time_to_exhaustion_s: float | None
    confidence: float | None
    reason: str


class FindingsResponse(Model):
    findings: list[Finding]
    start_ms: int
    end_ms: int


class AlertsResponse(Model):
    active: list[ActiveAlert]
    history: list[AlertEvent]
    start_ms: int
    end_ms: int


class Notification(Model):
    ts_ms: int
    notification_id: str
    receiver: str
    integration: str
    group_key: str
    status: str
    attempt: int
    result: str
    http_status: int
    error: str
    alert_fingerprints: list[str]


class NotificationsResponse(Model):
    notifications: list[Notification]
    start_ms: int
    end_ms: int


# -- silences -------------------------------------------------------------------------------------


class Matcher(Model):
    """Alertmanager's silence matcher."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(min_length=1)
    value: str
    isRegex: bool = False
    isEqual: bool = True


# Silence times are epoch milliseconds between 1970 and the year 9999, and a silence lasts at most
# ten years: a `duration_s` of 1e308 or a `starts_ms` near 2**63 is a 422, not a 500 or a negative end.
EPOCH_MS_MAX = 253_402_300_799_999
SILENCE_MAX_SECONDS = 10 * 365 * 24 * 3600


class SilenceCreate(Model):
    matchers: list[Matcher] = Field(min_length=1)
    starts_ms: int | None = Field(default=None, ge=0, le=EPOCH_MS_MAX, description="default: now")
    ends_ms: int | None = Field(default=None, ge=0, le=EPOCH_MS_MAX, description="give ends_ms or duration_s")
    duration_s: float | None = Field(default=None, gt=0, le=SILENCE_MAX_SECONDS, allow_inf_nan=False)
    comment: str = Field(min_length=1, max_length=2000)
    created_by: str | None = Field(default=None, description="default: the token's name")


class Silence(Model):
    silence_id: str
    matchers: list[Matcher]
    starts_ms: int
    ends_ms: int
    created_ms: int
    updated_ms: int
    created_by: str
    comment: str
    state: str


class SilencesResponse(Model):
    silences: list[Silence]


# -- degradation ----------------------------------------------------------------------------------


class DegradationRequest(Model):
    """What `PUT /v1/degradation` (the alerts' action sink) and `POST /api/v1/degradation` (an operator)
    both send: one model, checked once."""

    level: str | int = Field(description="NORMAL | CACHED_RESPONSES | INTEGRATIONS_QUEUED | REGION_FAILOVER | "
                                         "HUMAN_HANDOFF, by name (any case) or number")
    reason: str = Field("", max_length=2000, description="why the level is asked for (shown in the action log)")
    region: str | None = Field(None, description="the region to evacuate (REGION_FAILOVER); default: the primary")
    rule: str = Field("", max_length=200, description="the alert rule asking, if any")


class ControllerState(BaseModel):
    """The live controller's state, as `GET /v1/degradation` returns it."""

    level: str
    level_value: int
    region: str | None
    reason: str
    rule: str
    since_ms: int
    cached_intents: list[str]
    levels: list[str]


class ControllerAction(BaseModel):
    """One decision of the live controller, as `PUT /v1/degradation` returns it."""

    action_id: str
    phase: str = Field(description="applied | reverted | refused")
    level: str
    previous_level: str
    region: str
    rule: str
    reason: str
    ts_ms: int
    state: ControllerState


class DegradationResponse(Model):
    state: DegradationState
    history: list[DegradationAction]


class DegradationChange(Model):
    action: DegradationAction
    state: DegradationState


# -- SQL ------------------------------------------------------------------------------------------


class SqlRequest(Model):
    sql: str = Field(min_length=1, max_length=20_000)
    max_rows: int | None = Field(default=None, gt=0)
    max_seconds: float | None = Field(default=None, gt=0)

    @field_validator("sql")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("SQL is empty")
        return v


class SqlResponse(Model):
    columns: list[str]
    types: list[str]
    rows: list[list[Any]]
    row_count: int
    truncated: bool = Field(description="more rows existed than max_rows")
    elapsed_ms: float
