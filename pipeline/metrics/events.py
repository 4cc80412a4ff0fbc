"""Per-event recording: what the per-call pipeline (real engines, or simulated ones run call by call)
reports one call, turn, stage, pool acquisition or queue event at a time."""

from __future__ import annotations

import math

import numpy as np

from pipeline.metrics.recorder import ACTION_NAMES, LLM_MODEL, PROVIDER, Recorder


class EventRecording(Recorder):
    """One event at a time: the per-call runner's calls, turns, stages, pools, queue, handoffs, regions."""

    def call_started(self, region: str, channel: str = "simulated", n: int = 1, language: str | None = None) -> None:
        self._inc("voxwatch_calls_started_total", n, region)
        if language:
            self._inc("voxwatch_business_calls_by_language_total", n, language)
        self._edge_setup(region, n)

    def calls_rejected(self, region: str, reason: str, n: int) -> None:
        self._inc("voxwatch_calls_rejected_total", n, region, reason)

    def routing(self, region: str, reason: str, n: int) -> None:
        self._inc("voxwatch_region_routing_decisions_total", n, region, reason)

    def calls_by_language(self, language: str, n: int) -> None:
        self._inc("voxwatch_business_calls_by_language_total", n, language)

    def calls_migrated(self, from_region: str, to_region: str, n: int, context_lost: bool = False) -> None:
        self._inc("voxwatch_region_calls_migrated_total", n, from_region, to_region)
        if context_lost:
            self._inc("voxwatch_context_lost_total", n, "failover")

    def call_ended(self, region: str, channel: str, outcome: str, duration_s: float, turns: int) -> None:
        self.call_ended_batch(region, outcome, np.array([duration_s]), np.array([turns]))

    def stage(self, stage: str, region: str, seconds: float, status: str) -> None:
        self.m("voxwatch_stage_latency_seconds", stage, region).observe(seconds)
        if status != "ok":
            self.m("voxwatch_stage_errors_total", stage, region, "exception").inc()

    def turn(self, region: str, seconds: float, status: str, level: str) -> None:
        self.m("voxwatch_turns_total", region).inc()
        self.m("voxwatch_turn_latency_seconds", region).observe(seconds)
        if seconds <= 0.3:
            self.m("voxwatch_business_slo_good_turns_total", region).inc()
        if status == "error":
            self.m("voxwatch_turns_failed_total", region, "unknown").inc()
        if seconds > 1.0:
            self.m("voxwatch_turn_dead_air_seconds", region).observe(seconds)
            self.m("voxwatch_business_dead_air_seconds_total", region).inc(seconds)

    def stt_result(self, region: str, transcript) -> None:
        lang = transcript.language
        self.m("voxwatch_stt_requests_total", region, lang).inc()
        self.m("voxwatch_stt_confidence_ratio", lang).observe(transcript.confidence)
        self.m("voxwatch_stt_words_total", lang).inc(len(transcript.text.split()))
        self.m("voxwatch_stt_audio_seconds_total", lang).inc(transcript.audio_s)
        if not transcript.text.strip():
            self.m("voxwatch_stt_empty_transcripts_total", lang).inc()

    def intent_result(self, region: str, intent) -> None:
        self.m("voxwatch_nlu_requests_total", "all").inc()
        self.m("voxwatch_nlu_intents_total", intent.intent).inc()
        self.m("voxwatch_nlu_intent_confidence_ratio", intent.intent).observe(intent.confidence)
        if intent.fallback:
            self.m("voxwatch_nlu_fallback_intents_total", "all").inc()

    def response_source(self, region: str, intent: str, source: str) -> None:
        self.m("voxwatch_response_routes_total", source).inc()

    def llm_result(self, region: str, reply, seconds: float, provider: str = PROVIDER) -> None:
        """One answer from the LLM engine, labelled with the engine's provider and the model that answered."""
        self.llm_batch(np.array([reply.ttft_s]), np.array([seconds]), np.array([reply.completion_tokens]), reply.prompt_tokens, 0, 0, np.zeros(1), provider=provider, model=reply.model or LLM_MODEL)

    def tts_result(self, region: str, spoken) -> None:
        self.m("voxwatch_tts_requests_total", "all").inc()
        self.m("voxwatch_tts_time_to_first_byte_seconds", "all").observe(spoken.first_audio_s)
        self.m("voxwatch_tts_audio_seconds_total", "all").inc(spoken.duration_s)

    def integration_call(self, region: str, system: str, operation: str, seconds: float, ok: bool) -> None:
        self.m("voxwatch_integration_requests_total", system, operation).inc()
        self.m("voxwatch_integration_request_seconds", system, operation).observe(seconds)
        if not ok:
            self.m("voxwatch_integration_errors_total", system, "server_error").inc()

    def connections_failed(self, system: str, n: int, connect_error_rate: float) -> None:
        """Requests that failed on the wire close their connection; the pool opens a new one, which
        fails too while the downstream is down."""
        if n <= 0:
            return
        self._inc("voxwatch_pool_connections_closed_total", n, system, "error")
        self._inc("voxwatch_pool_connections_opened_total", n, system)
        self._inc("voxwatch_pool_connect_errors_total", int(self.rng.binomial(n, min(1.0, 0.01 + connect_error_rate))), system)

    def integration_deferred(self, system: str, n: int) -> None:
        self._inc("voxwatch_integration_deferred_total", n, system)

    def pool_acquire(self, pool, waited: float, ok: bool) -> None:
        if ok:
            self.m("voxwatch_pool_acquires_total", pool.service).inc()
            self.m("voxwatch_pool_wait_seconds", pool.service).observe(waited)
        else:
            self.m("voxwatch_pool_acquire_timeouts_total", pool.service).inc()

    def pool_leak(self, pool, n: int) -> None:
        self.m("voxwatch_pool_leaked_connections", pool.service).set(pool.leaked)
        if n < 0:
            self._inc("voxwatch_pool_connections_opened_total", -n, pool.service)

    def pool_resize(self, pool, delta: int) -> None:
        name = pool.service
        self._inc("voxwatch_pool_resizes_total", 1, name, "grow" if delta > 0 else "shrink")
        if delta > 0:
            self._inc("voxwatch_pool_connections_opened_total", delta, name)
            self._many("voxwatch_pool_connect_seconds", self.rng.lognormal(math.log(0.02), 0.4, delta), name)
        else:
            self._inc("voxwatch_pool_connections_closed_total", -delta, name, "shrink")

    def circuit_short_circuited(self, dependency: str, n: int) -> None:
        self._inc("voxwatch_circuit_short_circuited_total", n, dependency)

    def circuit_transition(self, dependency: str, to_state: str, state: int) -> None:
        self.m("voxwatch_circuit_transitions_total", dependency, to_state).inc()
        self.m("voxwatch_circuit_state", dependency).set(state)

    def queue_event(self, system: str, event: str, age_s: float | None = None, attempts: int | None = None, operation: str = "") -> None:
        action = ACTION_NAMES.get(operation, ACTION_NAMES.get(system, "update_crm") if operation == "" else "update_crm")
        if event == "enqueued":
            self.m("voxwatch_action_queue_enqueued_total", action).inc()
        elif event == "succeeded":
            self.m("voxwatch_action_queue_completed_total", action).inc()
            if age_s is not None:
                self.m("voxwatch_action_queue_wait_seconds", action).observe(age_s)
        elif event == "retried":
            self.m("voxwatch_action_queue_retries_total", action).inc()
            self.m("voxwatch_integration_retries_total", system).inc()
        elif event == "dead_lettered":
            self.m("voxwatch_action_queue_failed_total", action, "retries_exhausted").inc()
        elif event == "rejected":
            self.m("voxwatch_action_queue_dropped_total", "queue_full").inc()

    def handoff(self, request) -> None:
        reason = {"misunderstanding": "repeated_fallback", "degradation": "degradation"}.get(request.reason, request.reason)
        self.m("voxwatch_handoffs_total", reason).inc()
        self.m("voxwatch_handoff_context_transfer_seconds", request.region).observe(0.02 + 0.002 * len(request.transcript))
        size = sum(len(str(t)) for t in request.transcript) + 200
        self.m("voxwatch_handoff_context_bytes").observe(size)
        self.m("voxwatch_handoff_context_preserved_total", "complete" if request.transcript else "partial").inc()

    def handoff_assigned(self, request) -> None:
        self.m("voxwatch_handoffs_completed_total", request.region).inc()
        wait = (request.assigned_at or request.enqueued_at) - request.enqueued_at
        self.m("voxwatch_handoff_wait_seconds", request.region).observe(max(0.0, wait))
        self.m("voxwatch_handoff_transfer_seconds", request.region).observe(float(self.rng.lognormal(math.log(1.2), 0.3)))

    def handoff_abandoned(self, request) -> None:
        self.m("voxwatch_handoff_abandoned_total", request.region).inc()
        self.m("voxwatch_handoff_failures_total", "timeout").inc()
        self.m("voxwatch_business_abandoned_calls_total", request.region, "handoff_queue").inc()

    def region_failover(self, region, took: float) -> None:
        self.m("voxwatch_region_failovers_total", region.name, region.secondary or "none").inc()
        self.m("voxwatch_region_failover_seconds", region.name).observe(took)

    def region_failback(self, region) -> None:
        pass

    def calls_dropped(self, region: str, n: int) -> None:
        self._inc("voxwatch_region_calls_dropped_total", n, region)

    def degradation_action(self, phase: str, level: str, source: str = "operator") -> None:
        result = {"requested": None, "applied": "applied", "reverted": "applied", "refused": "refused"}.get(phase)
        if result:
            self.m("voxwatch_degradation_requests_total", source, result).inc()
