"""The pipeline's catalog metrics: every event a stage, pool, cache, queue, region or the degradation
controller reports becomes the catalog's counters, gauges and histograms here, in one place.

Two entry styles over the same instruments: per-event methods for the real pipeline (one turn at a
time), and `*_batch` methods for the simulator, which hands arrays (histograms take them in one
`observe_many`). Quantities that only a media engine measures (RTP, jitter, VAD frames, worker pools)
come, in the simulator, from the simulated edge and worker models in `sim_second`, drawn with their
own random stream so telemetry never changes the simulation's course.

A metric name the catalog does not declare is collected in `missing` (tests assert it stays empty)
rather than crashing a running pipeline.
"""

from __future__ import annotations

import math
import resource
from typing import Any

import numpy as np

from pipeline.degradation import DegradationLevel

PROVIDER = "simulated"
LLM_MODEL = "sim-llm-small"
STT_MODEL = "whisper-tiny.en"
NLU_MODEL = "intent-sgd"
OUTCOME_REASON = {"completed": "caller_hangup", "abandoned": "caller_hangup", "handoff": "server_close", "failed": "timeout", "silence": "timeout"}
ACTION_NAMES = {
    "log_interaction": "update_crm",
    "update_account": "update_crm",
    "customer_history": "update_crm",
    "billing_account": "update_crm",
    "open_ticket": "create_ticket",
    "create_return": "create_return",
    "cancel_order": "cancel_order",
    "order_status": "send_sms",
    "product_info": "send_sms",
}
ENTITY_BY_INTENT = {"order_status": "order_number", "return_request": "order_number", "cancel_order": "order_number", "product_question": "product", "billing": "account_number", "account_update": "email"}
COST_PER_1K_INPUT = 0.00015
MODEL_INTERVAL_S = 5.0
# histograms of modelled quantities (not timings a detector watches): observed every MODEL_INTERVAL_S
SLOW_HISTOGRAMS = frozenset({
    "voxwatch_vad_speech_ratio", "voxwatch_business_cost_per_call_dollars", "voxwatch_stt_first_partial_seconds",
    "voxwatch_stt_real_time_factor", "voxwatch_stt_confidence_ratio", "voxwatch_tts_synthesis_seconds",
    "voxwatch_tts_real_time_factor", "voxwatch_cache_lookup_seconds", "voxwatch_cache_entry_age_seconds",
    "voxwatch_response_characters", "voxwatch_integration_response_bytes", "voxwatch_nlu_intent_confidence_ratio",
    "voxwatch_call_setup_seconds", "voxwatch_edge_ice_setup_seconds", "voxwatch_edge_dtls_handshake_seconds",
    "voxwatch_edge_session_setup_seconds", "voxwatch_edge_signalling_seconds", "voxwatch_call_turns",
    "voxwatch_vad_utterance_seconds", "voxwatch_vad_endpointing_delay_seconds", "voxwatch_vad_barge_in_reaction_seconds",
    "voxwatch_context_tokens", "voxwatch_llm_context_window_used_ratio", "voxwatch_context_load_seconds",
    "voxwatch_stt_inference_seconds", "voxwatch_nlu_inference_seconds", "voxwatch_llm_inter_token_seconds",
    "voxwatch_llm_output_tokens_per_request", "voxwatch_action_queue_execution_seconds",
})
COST_PER_1K_OUTPUT = 0.0006


class _Noop:
    def labels(self, *a, **k):
        return self

    def inc(self, *a):
        pass

    def set(self, *a):
        pass

    def observe(self, *a):
        pass

    def observe_many(self, *a):
        pass


_NOOP = _Noop()


class CatalogRecorder:
    """Looks up a catalog instrument's child for a label set once and keeps it (the hot path records
    thousands of times a second). A metric missing from the catalog is remembered in `missing` (a bug
    to fix, found by the dead-metric tests) and recorded nowhere, instead of failing a call."""

    def __init__(self, telemetry) -> None:
        self.tel = telemetry
        self.missing: set[str] = set()
        self._children: dict[tuple, Any] = {}

    def m(self, name: str, *labels):
        key = (name, labels)
        child = self._children.get(key)
        if child is None:
            try:
                inst = self.tel[name]
            except KeyError:
                self.missing.add(name)
                return _NOOP
            child = inst.labels(*labels) if labels else inst
            self._children[key] = child
        return child


class PipelineMetrics(CatalogRecorder):
    def __init__(self, telemetry, *, seed: int = 0) -> None:
        super().__init__(telemetry)
        self.rng = np.random.default_rng(seed + 7919)  # the telemetry models' own stream
        self._cache_published: dict[str, dict[str, int]] = {}
        self._queue_published = 0
        self._level_since: float | None = None
        self._level = DegradationLevel.NORMAL
        self._left_normal_at: float | None = None
        self._last_second: float | None = None
        self._ended_window: list[tuple[float, str, str, int]] = []  # (t, region, outcome, n) for 15 min ratios
        self._turns_seen = 0
        self.buffered = False  # the simulator turns this on and flushes once per simulated second
        self._hist_buf: dict[tuple, list[np.ndarray]] = {}
        self._expected: dict[tuple, float] = {}
        self._region_was_up: dict[str, bool] = {}
        self._replicas: dict[tuple[str, str], int] = {}
        self._cache_lookups_seen: dict[str, int] = {}
        self._model_dt = MODEL_INTERVAL_S  # report the models on the first second too
        self._llm_tokens: list[tuple[float, float]] = []  # (second, tokens) for the per-minute quota
        self._turns_good = 0
        self._turns_bad = 0

    # ------------------------------------------------------------------ plumbing
    def _many(self, name: str, values, *labels) -> None:
        v = np.asarray(values, dtype=np.float64)
        if not v.size:
            return
        if self.buffered:
            # the simulator hands many small batches per second; the histogram takes one per series
            self._hist_buf.setdefault((name, labels), []).append(v)
            return
        self.m(name, *labels).observe_many(v)

    def flush_histograms(self, slow: bool = True) -> None:
        """Observe what was buffered: every series each second; the model-derived ones (SLOW) when
        `slow` (every MODEL_INTERVAL_S)."""
        keep = {}
        for (name, labels), parts in self._hist_buf.items():
            if not slow and name in SLOW_HISTOGRAMS:
                keep[(name, labels)] = parts
                continue
            self.m(name, *labels).observe_many(parts[0] if len(parts) == 1 else np.concatenate(parts))
        self._hist_buf = keep

    def _inc(self, name: str, amount: float, *labels) -> None:
        if amount > 0:
            self.m(name, *labels).inc(float(amount))

    def _expect(self, name: str, expected: float, *labels) -> None:
        """Rare events of a model: accumulate the expected count and emit whole events as they add
        up, so a rate of 0.01 per interval shows once per 100 intervals instead of by luck."""
        key = (name, labels)
        acc = self._expected.get(key, 0.0) + expected
        whole = int(acc)
        self._expected[key] = acc - whole
        self._inc(name, whole, *labels)

    # ------------------------------------------------------------------ calls (both paths)
    def call_started(self, region: str, channel: str = "simulated", n: int = 1, language: str | None = None) -> None:
        self._inc("voxwatch_calls_started_total", n, region)
        if language:
            self._inc("voxwatch_business_calls_by_language_total", n, language)
        self._many("voxwatch_call_setup_seconds", self.rng.lognormal(math.log(0.9), 0.3, min(n, 50)), region)
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

    def call_ended_batch(self, region: str, outcome: str, durations: np.ndarray, turns: np.ndarray) -> None:
        n = len(durations)
        if not n:
            return
        self._inc("voxwatch_calls_ended_total", n, region, outcome)
        self._many("voxwatch_call_duration_seconds", durations, region, outcome)
        self._many("voxwatch_call_turns", turns[turns > 0], region)
        self._inc("voxwatch_edge_disconnects_total", n, region, OUTCOME_REASON.get(outcome, "server_close"))
        if outcome == "completed":
            self._inc("voxwatch_business_contained_calls_total", n, region)
        if outcome == "abandoned":
            phase_turns = turns <= 1
            self._inc("voxwatch_business_abandoned_calls_total", int(phase_turns.sum()), region, "greeting")
            self._inc("voxwatch_business_abandoned_calls_total", int((~phase_turns).sum()), region, "waiting_for_answer")
        # repeat callers: a share of callers rang within the last day (first-call resolution failed)
        self._inc("voxwatch_business_repeat_callers_total", int(self.rng.binomial(n, 0.08)), region)
        self._many("voxwatch_vad_speech_ratio", np.clip(self.rng.normal(0.38, 0.08, min(n, 50)), 0, 1), region)
        cost = durations / 60.0 * 0.004 + turns * 0.0006
        self._many("voxwatch_business_cost_per_call_dollars", cost[:200])
        self._ended_window.append((self._last_second or 0.0, region, outcome, n))

    # ------------------------------------------------------------------ turns and stages
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

    def turn_batch(self, region_names, served: np.ndarray, latency: np.ndarray, failed_stage: np.ndarray, stage_lat: dict, counted: np.ndarray) -> None:
        for r in np.unique(served):
            region = region_names[r]
            mask = served == r
            lat = latency[mask]
            self._inc("voxwatch_turns_total", len(lat), region)
            self._turns_seen += len(lat)
            self._turns_good += int((lat <= 0.3).sum())
            self._turns_bad += int((failed_stage[mask] != "").sum())
            self._many("voxwatch_turn_latency_seconds", lat, region)
            self._inc("voxwatch_business_slo_good_turns_total", int((lat <= 0.3).sum()), region)
            slow = lat[lat > 1.0]
            self._many("voxwatch_turn_dead_air_seconds", slow, region)
            self._inc("voxwatch_business_dead_air_seconds_total", float(slow.sum()), region)
            fs = failed_stage[mask]
            over = lat > 0.3
            if over.any():
                stacked = np.vstack([stage_lat[s][mask] for s in stage_lat])
                worst = np.argmax(stacked, axis=0)
                names = list(stage_lat)
                counts = np.bincount(worst[over], minlength=len(names))
                for i in np.flatnonzero(counts):
                    self._inc("voxwatch_turn_budget_exceeded_total", int(counts[i]), region, names[i])
            for s in stage_lat:
                v = stage_lat[s][mask]
                self._many("voxwatch_stage_latency_seconds", v[v > 0], s, region)
                # in flight (Little's law): arrivals per second times time in stage
                self.m("voxwatch_stage_inflight", s, region).set(float(v.sum()))
                k = int((fs == s).sum())
                if k:
                    self._inc("voxwatch_turns_failed_total", k, region, s)
                    self._inc("voxwatch_stage_errors_total", k, s, region, "timeout" if s == "edge" else "exception")
                    if s == "edge":
                        self._inc("voxwatch_stage_timeouts_total", k, s, region)
            # callers talking over a slow agent
            self._inc("voxwatch_turn_barge_ins_total", int(self.rng.binomial(len(lat), 0.04)), region)
            self._vad_turns(region, len(lat))

    # ------------------------------------------------------------------ stt / nlu / response / llm / tts
    def stt_result(self, region: str, transcript) -> None:
        lang = transcript.language
        self.m("voxwatch_stt_requests_total", region, lang).inc()
        self.m("voxwatch_stt_confidence_ratio", lang).observe(transcript.confidence)
        self.m("voxwatch_stt_words_total", lang).inc(len(transcript.text.split()))
        self.m("voxwatch_stt_audio_seconds_total", lang).inc(transcript.audio_s)
        if not transcript.text.strip():
            self.m("voxwatch_stt_empty_transcripts_total", lang).inc()

    def stt_batch(self, langs, lang_idx: np.ndarray, latency: np.ndarray, conf: np.ndarray, n_err: int, region_names, served: np.ndarray) -> None:
        rng = self.rng
        for r in np.unique(served):
            self._inc("voxwatch_stt_requests_total", int((served == r).sum()), region_names[r], "all")
        if n_err:
            self._inc("voxwatch_stt_errors_total", int(n_err), region_names[int(served[0])] if len(served) else "unknown", "engine_error")
            self._inc("voxwatch_stt_retries_total", int(n_err), region_names[int(served[0])] if len(served) else "unknown")
        audio = rng.lognormal(math.log(2.6), 0.35, len(latency))
        for li in np.unique(lang_idx):
            lang = langs[li]
            mask = lang_idx == li
            lat = latency[mask]
            self._many("voxwatch_stt_final_latency_seconds", lat, lang)
            self._many("voxwatch_stt_first_partial_seconds", rng.lognormal(math.log(0.35), 0.3, min(len(lat), 64)), lang)
            self._many("voxwatch_stt_real_time_factor", lat / audio[mask], lang)
            self._inc("voxwatch_stt_audio_seconds_total", float(audio[mask].sum()), lang)
            self._inc("voxwatch_stt_words_total", float(audio[mask].sum() * 2.4), lang)
            k = int(mask.sum())
            self._inc("voxwatch_stt_low_confidence_total", int(rng.binomial(k, 0.03)), lang)
            self._inc("voxwatch_stt_empty_transcripts_total", int(rng.binomial(k, 0.004)), lang)
            self._inc("voxwatch_stt_reprompts_total", int(rng.binomial(k, 0.02)), lang)
            self._inc("voxwatch_stt_suspected_hallucinations_total", int(rng.binomial(k, 0.001)), lang)
            self._inc("voxwatch_stt_language_mismatch_total", int(rng.binomial(k, 0.002)), lang, "en" if lang != "en" else "es")
        if len(conf):
            for li in np.unique(lang_idx[: len(conf)]):
                self._many("voxwatch_stt_confidence_ratio", conf[lang_idx[: len(conf)] == li], langs[li])
        self._many("voxwatch_stt_inference_seconds", latency * 0.8, STT_MODEL)

    def intent_result(self, region: str, intent) -> None:
        self.m("voxwatch_nlu_requests_total", "all").inc()
        self.m("voxwatch_nlu_intents_total", intent.intent).inc()
        self.m("voxwatch_nlu_intent_confidence_ratio", intent.intent).observe(intent.confidence)
        if intent.fallback:
            self.m("voxwatch_nlu_fallback_intents_total", "all").inc()

    def nlu_batch(self, intent_names, intents: np.ndarray, conf: np.ndarray, latency: np.ndarray, n_err: int, langs, lang_idx: np.ndarray) -> None:
        rng = self.rng
        counts = np.bincount(lang_idx, minlength=len(langs))
        fb_idx = intent_names.index("fallback") if "fallback" in intent_names else -1
        for li in np.flatnonzero(counts):
            lang = langs[li]
            self._inc("voxwatch_nlu_requests_total", int(counts[li]), lang)
            mask = lang_idx == li
            self._inc("voxwatch_nlu_fallback_intents_total", int((intents[mask] == fb_idx).sum()), lang)
            self._inc("voxwatch_nlu_negative_sentiment_turns_total", int(rng.binomial(int(counts[li]), 0.05)), lang)
        for ii in np.unique(intents):
            name = intent_names[ii]
            mask = intents == ii
            k = int(mask.sum())
            self._inc("voxwatch_nlu_intents_total", k, name)
            self._many("voxwatch_nlu_intent_confidence_ratio", conf[mask], name)
            self._inc("voxwatch_nlu_disambiguation_prompts_total", int(rng.binomial(k, 0.01)), name)
            entity = ENTITY_BY_INTENT.get(name)
            if entity:
                got = int(rng.binomial(k, 0.93))
                self._inc("voxwatch_nlu_entities_extracted_total", got, entity)
                self._inc("voxwatch_nlu_entity_extraction_failures_total", k - got, entity)
        if n_err:
            self._inc("voxwatch_nlu_errors_total", n_err, "model_error")
        self._many("voxwatch_nlu_inference_seconds", latency, NLU_MODEL)

    def response_source(self, region: str, intent: str, source: str) -> None:
        self.m("voxwatch_response_routes_total", source).inc()

    def response_batch(self, routes: np.ndarray, latency: np.ndarray) -> None:
        rng = self.rng
        for route in ("cache", "template", "llm", "fallback"):
            mask = routes == route
            k = int(mask.sum())
            if not k:
                continue
            self._inc("voxwatch_response_routes_total", k, route)
            self._many("voxwatch_response_latency_seconds", latency[mask], route)
            chars = rng.lognormal(math.log(140 if route == "llm" else 90), 0.4, min(k, 200))
            self._many("voxwatch_response_characters", chars, route)
            self._inc("voxwatch_response_deadline_misses_total", int((latency[mask] > 0.25).sum()), route)
            if route == "fallback":
                self._inc("voxwatch_response_errors_total", k, "llm", "llm_error")
                self._inc("voxwatch_response_fallbacks_total", k, "error")
            if route == "llm":
                self._inc("voxwatch_response_guardrail_blocks_total", int(rng.binomial(k, 0.002)), "pii")
                self._inc("voxwatch_response_tool_calls_total", int(rng.binomial(k, 0.3)), "lookup_order")
                tokens = rng.lognormal(math.log(600), 0.5, min(k, 200))
                self._many("voxwatch_context_tokens", tokens)
                self._inc("voxwatch_context_truncations_total", int((tokens > 3000).sum()))
                self._inc("voxwatch_context_summarizations_total", int((tokens > 2000).sum()))
                self._many("voxwatch_llm_context_window_used_ratio", tokens / 8192.0, LLM_MODEL)

    def context_loads(self, source: str, seconds: np.ndarray) -> None:
        self._many("voxwatch_context_load_seconds", seconds, source)

    def llm_result(self, region: str, reply, seconds: float) -> None:
        self.llm_batch(np.array([reply.ttft_s]), np.array([seconds]), np.array([reply.completion_tokens]), reply.prompt_tokens, 0, 0, np.zeros(1))

    def llm_batch(self, ttft: np.ndarray, request_s: np.ndarray, tokens: np.ndarray, prompt_tokens: int, n_err: int, n_timeout: int, waits: np.ndarray) -> None:
        k = len(ttft) + n_timeout
        if not k:
            return
        rng = self.rng
        self._inc("voxwatch_llm_requests_total", k, PROVIDER, LLM_MODEL)
        self._many("voxwatch_llm_time_to_first_token_seconds", ttft, PROVIDER, LLM_MODEL)
        self._many("voxwatch_llm_request_seconds", request_s, PROVIDER, LLM_MODEL)
        if len(ttft):
            self._many("voxwatch_llm_inter_token_seconds", (request_s - ttft) / np.maximum(tokens, 1), PROVIDER)
            self._many("voxwatch_llm_output_tokens_per_request", tokens, PROVIDER)
            self._many("voxwatch_llm_queue_wait_seconds", waits, PROVIDER)
        out_tokens = float(tokens.sum())
        in_tokens = float(prompt_tokens) * len(ttft)
        cached = in_tokens * 0.6
        self._inc("voxwatch_llm_input_tokens_total", in_tokens, PROVIDER, LLM_MODEL)
        self._inc("voxwatch_llm_output_tokens_total", out_tokens, PROVIDER, LLM_MODEL)
        self._inc("voxwatch_llm_cached_input_tokens_total", cached, PROVIDER, LLM_MODEL)
        self._inc("voxwatch_llm_prompt_cache_hits_total", int(len(ttft) * 0.8), PROVIDER)
        self._inc("voxwatch_llm_cost_dollars_total", (in_tokens - cached) / 1000 * COST_PER_1K_INPUT + out_tokens / 1000 * COST_PER_1K_OUTPUT, PROVIDER, LLM_MODEL)
        self._inc("voxwatch_llm_finish_reasons_total", len(ttft) - n_err, PROVIDER, "stop")
        self._inc("voxwatch_llm_finish_reasons_total", int(rng.binomial(max(len(ttft), 0), 0.01)), PROVIDER, "length")
        # a stream stalls more often when the provider is slow (generation time per token grows)
        per_token = (request_s - ttft) / np.maximum(tokens, 1)
        self._inc("voxwatch_llm_stream_stalls_total", int(rng.binomial(len(ttft), min(1.0, 0.002 * float(per_token.mean() / 0.011)))) if len(ttft) else 0, PROVIDER)
        self._llm_tokens.append((self._last_second or 0.0, in_tokens + out_tokens))
        if n_err:
            self._inc("voxwatch_llm_errors_total", n_err - n_timeout, PROVIDER, "server_error")
            self._inc("voxwatch_llm_retries_total", n_err, PROVIDER)
            self._inc("voxwatch_llm_fallback_requests_total", n_err, "sim-llm-fallback")
        if n_timeout:
            self._inc("voxwatch_llm_errors_total", n_timeout, PROVIDER, "timeout")

    def tts_result(self, region: str, spoken) -> None:
        self.m("voxwatch_tts_requests_total", "all").inc()
        self.m("voxwatch_tts_time_to_first_byte_seconds", "all").observe(spoken.first_audio_s)
        self.m("voxwatch_tts_audio_seconds_total", "all").inc(spoken.duration_s)

    def tts_batch(self, langs, lang_idx: np.ndarray, ttfb: np.ndarray, audio_s: np.ndarray, n_err: int) -> None:
        rng = self.rng
        synth = ttfb + audio_s * 0.08
        for li in np.unique(lang_idx):
            lang = langs[li]
            mask = lang_idx == li
            k = int(mask.sum())
            self._inc("voxwatch_tts_requests_total", k, lang)
            self._many("voxwatch_tts_time_to_first_byte_seconds", ttfb[mask], lang)
            self._many("voxwatch_tts_synthesis_seconds", synth[mask], lang)
            self._many("voxwatch_tts_real_time_factor", synth[mask] / audio_s[mask], lang)
            self._inc("voxwatch_tts_audio_seconds_total", float(audio_s[mask].sum()), lang)
            self._inc("voxwatch_tts_characters_total", float(audio_s[mask].sum() * 15), lang)
        k = len(ttfb)
        self._inc("voxwatch_tts_cancelled_total", int(rng.binomial(k, 0.04)), "barge_in")
        if n_err:
            self._inc("voxwatch_tts_errors_total", n_err, "engine_error")

    def degradation_cached(self, intent_names, intents: np.ndarray) -> None:
        if len(intents):
            counts = np.bincount(intents, minlength=len(intent_names))
            for i in np.flatnonzero(counts):
                self._inc("voxwatch_degradation_cached_responses_total", int(counts[i]), intent_names[i])

    # ------------------------------------------------------------------ integrations and pools
    def integration_call(self, region: str, system: str, operation: str, seconds: float, ok: bool) -> None:
        self.m("voxwatch_integration_requests_total", system, operation).inc()
        self.m("voxwatch_integration_request_seconds", system, operation).observe(seconds)
        if not ok:
            self.m("voxwatch_integration_errors_total", system, "server_error").inc()

    def integration_batch(self, system: str, op_counts: dict[str, int], holds: np.ndarray, error_kinds: np.ndarray, n: int) -> None:
        total = sum(op_counts.values()) or n
        start = 0
        for op, k in op_counts.items():
            self._inc("voxwatch_integration_requests_total", k, system, op)
            share = holds[start:start + int(round(k * len(holds) / total))] if total else holds
            self._many("voxwatch_integration_request_seconds", share, system, op)
            start += len(share)
        for kind in np.unique(error_kinds):
            k = int((error_kinds == kind).sum())
            self._inc("voxwatch_integration_errors_total", k, system, str(kind))
            if kind == "server_error":
                self._inc("voxwatch_integration_rate_limited_total", int(self.rng.binomial(k, 0.1)), system)
        self._many("voxwatch_integration_response_bytes", self.rng.lognormal(math.log(1800), 0.6, min(len(holds), 64)), system)

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

    def customer_lookups(self, ok: np.ndarray) -> None:
        k_ok = int(ok.sum())
        found = int(self.rng.binomial(k_ok, 0.93))
        self._inc("voxwatch_integration_customer_lookups_total", found, "found")
        self._inc("voxwatch_integration_customer_lookups_total", k_ok - found, "not_found")
        self._inc("voxwatch_integration_customer_lookups_total", int((~ok).sum()), "failed")

    def pool_acquire(self, pool, waited: float, ok: bool) -> None:
        if ok:
            self.m("voxwatch_pool_acquires_total", pool.service).inc()
            self.m("voxwatch_pool_wait_seconds", pool.service).observe(waited)
        else:
            self.m("voxwatch_pool_acquire_timeouts_total", pool.service).inc()

    def pool_acquire_batch(self, pool, waits: np.ndarray, timeouts: int) -> None:
        name = pool.service
        self._inc("voxwatch_pool_acquires_total", len(waits), name)
        self._inc("voxwatch_pool_releases_total", len(waits), name)
        self._many("voxwatch_pool_wait_seconds", waits, name)
        self._inc("voxwatch_pool_acquire_timeouts_total", timeouts, name)

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

    def pool_state(self, pool, busy: int, waiting: int) -> None:
        name = pool.service
        self.m("voxwatch_pool_connections_in_use", name).set(busy)
        self.m("voxwatch_pool_capacity_connections", name).set(pool.size)
        self.m("voxwatch_pool_max_connections", name).set(pool.config.max_size)
        self.m("voxwatch_pool_connections_idle", name).set(max(0, pool.size - busy))
        self.m("voxwatch_pool_pending_acquires", name).set(waiting)
        self.m("voxwatch_pool_saturation_ratio", name).set(pool.utilization)
        self.m("voxwatch_pool_leaked_connections", name).set(pool.leaked)
        if busy >= pool.usable and waiting > 0:
            self.m("voxwatch_pool_exhausted_seconds_total", name).inc(1.0)
        if pool.service == "llm":
            self.m("voxwatch_llm_inflight_requests", PROVIDER).set(busy)
            self.m("voxwatch_llm_concurrency_limit", PROVIDER).set(pool.size)
            # the provider's per-minute token quota, provisioned with the concurrency limit
            now = self._last_second or 0.0
            self._llm_tokens = [(t, k) for t, k in self._llm_tokens if t > now - 60]
            quota = pool.size * 40_000.0  # tokens per minute: a connection streams about 750 tokens/s flat out
            self.m("voxwatch_llm_quota_used_ratio", PROVIDER).set(min(1.0, sum(k for _, k in self._llm_tokens) / quota))
        else:
            self.m("voxwatch_integration_inflight_requests", name).set(busy)

    def pool_model(self, pools, dt: float, mean_hold: dict[str, float]) -> None:
        """Per-second model quantities of the pools: hold times as the connector model draws them,
        connection churn by max lifetime, connect errors."""
        for p in pools:
            name = p.service
            h = mean_hold.get(name, 0.05)
            self._many("voxwatch_pool_hold_seconds", self.rng.lognormal(math.log(max(h, 1e-4)), 0.45, 16), name)
            key = ("churn", name)
            acc = self._expected.get(key, 0.0) + p.size / 1800.0 * dt  # 30 min max lifetime
            churn = int(acc)
            self._expected[key] = acc - churn
            self._inc("voxwatch_pool_connections_closed_total", churn, name, "max_lifetime")
            self._inc("voxwatch_pool_connections_opened_total", churn, name)
            self._inc("voxwatch_pool_connect_errors_total", int(self.rng.binomial(churn, 0.01)), name)

    # ------------------------------------------------------------------ circuit breakers
    def circuit_short_circuited(self, dependency: str, n: int) -> None:
        self._inc("voxwatch_circuit_short_circuited_total", n, dependency)

    def circuit_transition(self, dependency: str, to_state: str, state: int) -> None:
        self.m("voxwatch_circuit_transitions_total", dependency, to_state).inc()
        self.m("voxwatch_circuit_state", dependency).set(state)

    def circuit_state(self, dependency: str, state: int) -> None:
        self.m("voxwatch_circuit_state", dependency).set(state)

    # ------------------------------------------------------------------ caches
    def cache_state(self, cache) -> None:
        name = cache.name
        prev = self._cache_published.setdefault(name, {"hits": 0, "misses": 0, "evictions": 0, "expirations": 0})
        hits, misses = sum(cache.hits.values()), sum(cache.misses.values())
        dh, dm = hits - prev["hits"], misses - prev["misses"]
        self._inc("voxwatch_cache_hits_total", dh, name)
        self._inc("voxwatch_cache_misses_total", dm, name)
        self._inc("voxwatch_cache_evictions_total", cache.evictions - prev["evictions"], name, "capacity")
        self._inc("voxwatch_cache_evictions_total", cache.expirations - prev["expirations"], name, "ttl")
        self._inc("voxwatch_cache_writes_total", dm, name)
        if dh + dm:
            self.m("voxwatch_cache_hit_ratio", name).set(dh / (dh + dm))
            self._many("voxwatch_cache_lookup_seconds", self.rng.lognormal(math.log(2e-5), 0.3, 8), name)
            self._many("voxwatch_cache_entry_age_seconds", self.rng.uniform(0, cache.ttl_s, min(dh, 16)), name)
            saved = {"responses": 0.25, "customer_history": 0.04, "product_info": 0.04}.get(name, 0.01)
            self._inc("voxwatch_cache_compute_saved_seconds_total", dh * saved, name)
        n = len(cache)
        self.m("voxwatch_cache_entries", name).set(n)
        self.m("voxwatch_cache_capacity_entries", name).set(cache.capacity)
        self.m("voxwatch_cache_fill_ratio", name).set(n / cache.capacity if cache.capacity else 0.0)
        self.m("voxwatch_cache_bytes", name).set(n * {"responses": 600, "customer_history": 2400, "product_info": 1800}.get(name, 1000))
        prev.update(hits=hits, misses=misses, evictions=cache.evictions, expirations=cache.expirations)

    def cache_model(self, caches, degraded: bool, region_down: bool = False) -> None:
        for c in caches:
            lookups = sum(c.hits.values()) + sum(c.misses.values())
            recent = lookups - self._cache_lookups_seen.get(c.name, 0)
            self._cache_lookups_seen[c.name] = lookups
            self._expect("voxwatch_cache_invalidations_total", 0.02, c.name, "update")
            if degraded:
                self._inc("voxwatch_cache_stale_served_total", int(self.rng.poisson(2)), c.name)
            self._inc("voxwatch_cache_errors_total", int(self.rng.binomial(recent, 2e-5)), c.name, "timeout")
            if region_down:
                # the failed region's cache replicas are unreachable until failover settles
                self._inc("voxwatch_cache_errors_total", max(1, int(self.rng.binomial(recent, 0.01))), c.name, "backend_down")

    # ------------------------------------------------------------------ the action queue
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

    def queue_attempts(self, operations: list[str], seconds: np.ndarray) -> None:
        by: dict[str, list[float]] = {}
        for op, s in zip(operations, seconds.tolist(), strict=True):
            by.setdefault(ACTION_NAMES.get(op, "update_crm"), []).append(s)
        for action, vals in by.items():
            self._many("voxwatch_action_queue_execution_seconds", vals, action)

    def queue_state(self, queue, now: float) -> None:
        depth = len(queue)
        self.m("voxwatch_action_queue_depth").set(depth)
        self.m("voxwatch_action_queue_capacity").set(queue.capacity)
        self.m("voxwatch_action_queue_saturation_ratio").set(depth / queue.capacity)
        self.m("voxwatch_action_queue_oldest_age_seconds").set(queue.oldest_age(now))
        self.m("voxwatch_action_queue_dead_letters").set(len(queue.dead_letters))

    # ------------------------------------------------------------------ handoff
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

    def handoff_state(self, queue, now: float) -> None:
        # one human queue and one agent floor serve every region
        waiting = len(queue)
        region = "all"
        self.m("voxwatch_handoff_queue_depth", region).set(waiting)
        self.m("voxwatch_handoff_agents_staffed", region).set(queue.agents)
        self.m("voxwatch_handoff_agents_available", region).set(max(0, queue.agents - queue.agents_busy))
        self.m("voxwatch_handoff_agent_utilization_ratio", region).set(queue.agents_busy / queue.agents if queue.agents else 1.0)
        if queue.agents == 0 and waiting:
            self._inc("voxwatch_handoff_failures_total", waiting, "no_agents")

    # ------------------------------------------------------------------ regions
    def region_state(self, router) -> None:
        total = sum(r.weight for r in router.regions.values()) or 1.0
        for r in router.regions.values():
            self.m("voxwatch_region_up", r.name).set(1.0 if r.up else 0.0)
            self.m("voxwatch_region_draining", r.name).set(1.0 if r.evacuated else 0.0)
            share = 0.0 if (r.failed_over or r.evacuated) else r.weight / total
            self.m("voxwatch_region_traffic_weight_ratio", r.name).set(share)
            self.m("voxwatch_region_health_check_seconds", r.name).observe(float(self.rng.lognormal(math.log(0.03), 0.3)) if r.up else 2.0)
            if not r.up:
                self.m("voxwatch_region_health_check_failures_total", r.name).inc()

    def region_failover(self, region, took: float) -> None:
        self.m("voxwatch_region_failovers_total", region.name, region.secondary or "none").inc()
        self.m("voxwatch_region_failover_seconds", region.name).observe(took)

    def region_failback(self, region) -> None:
        pass

    def calls_dropped(self, region: str, n: int) -> None:
        self._inc("voxwatch_region_calls_dropped_total", n, region)

    # ------------------------------------------------------------------ degradation
    def degradation_level(self, level, now: float, changed: bool, previous=None) -> None:
        self._flush_level_time(now)
        self.m("voxwatch_degradation_level").set(int(level))
        if changed and previous is not None:
            self.m("voxwatch_degradation_transitions_total", DegradationLevel(previous).name, DegradationLevel(level).name).inc()
            self.m("voxwatch_degradation_apply_seconds").observe(0.05)
            if previous == DegradationLevel.NORMAL and level != DegradationLevel.NORMAL:
                self._left_normal_at = now
            elif level == DegradationLevel.NORMAL and self._left_normal_at is not None:
                self.m("voxwatch_degradation_recovery_seconds").observe(now - self._left_normal_at)
                self._left_normal_at = None
        self._level = DegradationLevel(level)

    def _flush_level_time(self, now: float) -> None:
        if self._level_since is not None and now > self._level_since:
            self.m("voxwatch_degradation_level_seconds_total", self._level.name).inc(now - self._level_since)
        self._level_since = now

    def degradation_action(self, phase: str, level: str, source: str = "operator") -> None:
        result = {"requested": None, "applied": "applied", "reverted": "applied", "refused": "refused"}.get(phase)
        if result:
            self.m("voxwatch_degradation_requests_total", source, result).inc()

    # ------------------------------------------------------------------ once per second
    def tick(self, now: float, pipeline) -> None:
        self._flush_level_time(now)
        self.m("voxwatch_degradation_level").set(int(pipeline.controller.level))
        ctx = len(pipeline.active)
        if ctx:
            for region in {c.origin_region for c in pipeline.active.values()}:
                self.m("voxwatch_context_sessions", region).set(ctx)
                self.m("voxwatch_context_bytes", region).set(ctx * 6000)

    def sim_second(self, sim, now: float, active_by_region: np.ndarray) -> None:
        """The simulator's per-second gauges and the simulated edge, VAD and worker models."""
        dt = 1.0 if self._last_second is None else max(0.0, now - self._last_second)
        self._last_second = now
        regions = sim._region_names
        pipe = sim.pipeline
        # media and worker models report like RTCP does: once per 5 s interval, covering the interval
        self._model_dt += dt
        report = self._model_dt >= MODEL_INTERVAL_S
        for i, region in enumerate(regions):
            n = int(active_by_region[i])
            self.m("voxwatch_calls_active", region).set(n)
            self.m("voxwatch_calls_capacity", region).set(int(sim._region_capacity[i]))
            self.m("voxwatch_context_sessions", region).set(n)
            self.m("voxwatch_context_bytes", region).set(n * 6000)
            up = pipe.regions.is_up(region)
            recovered = up and self._region_was_up.get(region) is False
            self._region_was_up[region] = up
            if report or recovered:
                self._edge_second(region, n, self._model_dt)
                self._workers(region, n, self._model_dt, recovered, max_calls=int(sim._region_capacity[i]))
        self.flush_histograms(slow=report)
        if report:
            self.pool_model(pipe.pools, self._model_dt, {s: math.exp(sim.scenario.engines.connectors[s].latency.mu) * sim._hold_factor.get(s, 1.0) for s in sim._systems} | {"llm": 0.6 * sim._llm_factor})
            self.cache_model(pipe.caches, pipe.controller.level >= DegradationLevel.CACHED_RESPONSES, not all(r.up for r in pipe.regions.regions.values()))
            self._model_dt = 0.0
        self._business(regions, now)
        # simulator self-metrics
        wall = sim._tick_wall
        if wall:
            self._many("voxwatch_simulator_tick_seconds", wall)
            sim._tick_wall = []
        if sim._wall_elapsed > 0:
            self.m("voxwatch_simulator_speedup_factor").set(sim.t / sim._wall_elapsed)
        for i, f in enumerate(sim.scenario.faults):
            self.m("voxwatch_simulator_fault_active", f.kind).set(1.0 if sim._fault_active.get(i) else 0.0)
        for kind, k in sim._events.items():
            self._inc("voxwatch_simulator_events_total", k, kind)
        sim._events = dict.fromkeys(sim._events, 0)

    def _business(self, regions, now: float) -> None:
        window = [(t, r, o, n) for t, r, o, n in self._ended_window if t >= now - 900]
        self._ended_window = window
        for region in regions:
            ended = sum(n for _, r, _, n in window if r == region)
            if not ended:
                continue
            by = {o: sum(n for _, r, oo, n in window if r == region and oo == o) for o in ("completed", "handoff", "abandoned")}
            self.m("voxwatch_business_containment_ratio", region).set(by["completed"] / ended)
            self.m("voxwatch_business_handoff_ratio", region).set(by["handoff"] / ended)
            self.m("voxwatch_business_abandonment_ratio", region).set(by["abandoned"] / ended)

        if self._turns_seen:
            # 30-day budgets, read off this run: 95% of turns within 300 ms; 99.5% of turns answered
            slow = 1.0 - self._turns_good / self._turns_seen
            failed = self._turns_bad / self._turns_seen
            self.m("voxwatch_business_error_budget_remaining_ratio", "turn_latency").set(max(0.0, 1.0 - slow / 0.05))
            self.m("voxwatch_business_error_budget_remaining_ratio", "availability").set(max(0.0, 1.0 - failed / 0.005))

    def intents_outcome(self, intent_names, intents: np.ndarray, resolved: bool) -> None:
        if len(intents):
            counts = np.bincount(intents, minlength=len(intent_names))
            name = "voxwatch_business_intents_resolved_total" if resolved else "voxwatch_business_intents_unresolved_total"
            for i in np.flatnonzero(counts):
                self._inc(name, int(counts[i]), intent_names[i])

    # ------------------------------------------------------------------ simulated media models
    def _edge_setup(self, region: str, n: int) -> None:
        rng = self.rng
        k = min(n, 64)
        ice = rng.lognormal(math.log(0.25), 0.4, k)
        dtls = rng.lognormal(math.log(0.08), 0.3, k)
        self._many("voxwatch_edge_ice_setup_seconds", ice, region)
        self._many("voxwatch_edge_dtls_handshake_seconds", dtls, region)
        self._many("voxwatch_edge_session_setup_seconds", ice + dtls + 0.05, region)
        relay = int(rng.binomial(n, 0.08))
        srflx = int(rng.binomial(n - relay, 0.6))
        self._inc("voxwatch_edge_ice_connections_total", relay, region, "relay")
        self._inc("voxwatch_edge_ice_connections_total", srflx, region, "srflx")
        self._inc("voxwatch_edge_ice_connections_total", n - relay - srflx, region, "host")
        self._inc("voxwatch_edge_sessions_by_codec_total", n, region, "opus")
        self._expect("voxwatch_edge_one_way_audio_total", n * 0.002, region)  # per session, NAT/firewall trouble
        self._inc("voxwatch_edge_signalling_requests_total", n, region, "offer", "2xx")
        self._inc("voxwatch_edge_signalling_requests_total", 2 * n, region, "candidate", "2xx")
        self._many("voxwatch_edge_signalling_seconds", rng.lognormal(math.log(0.03), 0.4, k), region, "offer")
        fails = int(rng.binomial(n, 0.004))
        self._inc("voxwatch_edge_session_setup_failures_total", fails, region, "ice_failed")
        self._inc("voxwatch_edge_signalling_requests_total", fails, region, "offer", "4xx")

    def _edge_second(self, region: str, n: int, dt: float) -> None:
        if n <= 0 or dt <= 0:
            return
        rng = self.rng
        self.m("voxwatch_edge_sessions_active", region).set(n)
        self.m("voxwatch_edge_relay_sessions_active", region).set(int(n * 0.08))
        self.m("voxwatch_edge_udp_ports_in_use", region).set(n)
        self.m("voxwatch_edge_udp_ports_capacity", region).set(40_000)
        frames = 50.0 * n * dt
        loss = float(np.clip(rng.lognormal(math.log(0.004), 0.5), 0, 0.2))
        lost = int(frames * loss)
        self._inc("voxwatch_edge_audio_frames_received_total", frames, region)
        self._inc("voxwatch_edge_audio_frames_sent_total", frames, region)
        self._inc("voxwatch_edge_rtp_packets_received_total", frames - lost, region)
        self._inc("voxwatch_edge_rtp_packets_sent_total", frames, region)
        self._inc("voxwatch_edge_rtp_packets_lost_total", lost, region, "inbound")
        self._inc("voxwatch_edge_rtp_packets_lost_total", int(frames * loss * 0.8), region, "outbound")
        self._inc("voxwatch_edge_received_bytes_total", (frames - lost) * 92, region)
        self._inc("voxwatch_edge_sent_bytes_total", frames * 92, region)
        self._inc("voxwatch_edge_nacks_sent_total", lost // 2, region)
        self._inc("voxwatch_edge_fec_recovered_packets_total", lost // 3, region)
        self._inc("voxwatch_edge_out_of_order_packets_total", int(frames * 0.001), region)
        self._inc("voxwatch_edge_jitter_buffer_discards_total", int(frames * 0.0005), region)
        self._inc("voxwatch_edge_concealed_audio_seconds_total", lost * 0.02, region)
        self._expect("voxwatch_edge_playout_underruns_total", n * dt * 0.0005, region)
        self._expect("voxwatch_edge_ice_restarts_total", n * dt * 5e-5, region)
        self._expect("voxwatch_edge_decode_errors_total", n * dt * 1e-4, region, "opus")
        self._expect("voxwatch_edge_dtmf_events_total", n * dt * 2e-4, region)
        k = 32
        rtt = rng.lognormal(math.log(0.045), 0.35, k)
        jitter = rng.lognormal(math.log(0.006), 0.5, k)
        self._many("voxwatch_edge_packet_loss_ratio", np.clip(rng.lognormal(math.log(loss + 1e-4), 0.6, k), 0, 1), region)
        self._many("voxwatch_edge_jitter_seconds", jitter, region)
        self._many("voxwatch_edge_jitter_buffer_delay_seconds", 0.02 + 2 * jitter, region)
        self._many("voxwatch_edge_round_trip_time_seconds", rtt, region)
        self._inc("voxwatch_edge_rtt_budget_exceeded_total", int((rtt > 0.1).sum()), region)
        self._many("voxwatch_edge_audio_level_dbfs", rng.normal(-26, 6, k), region)
        self._many("voxwatch_edge_frame_processing_seconds", rng.lognormal(math.log(0.0002), 0.3, k), region)
        self._many("voxwatch_edge_playout_buffer_seconds", rng.lognormal(math.log(0.06), 0.3, k), region)
        mos = np.clip(4.4 - 60 * loss - 8 * jitter - 2 * np.maximum(rtt - 0.15, 0), 1, 5)
        self._many("voxwatch_edge_mos_estimate", mos, region)
        self._inc("voxwatch_vad_frames_processed_total", frames, region)
        self._many("voxwatch_vad_processing_seconds", rng.lognormal(math.log(0.0003), 0.3, 16), region)
        self._many("voxwatch_vad_noise_floor_dbfs", rng.normal(-58, 5, 16), region)

    def _vad_turns(self, region: str, n: int) -> None:
        if n <= 0:
            return
        rng = self.rng
        k = min(n, 128)
        utter = rng.lognormal(math.log(2.6), 0.35, k)
        self._inc("voxwatch_vad_speech_segments_total", n, region)
        self._inc("voxwatch_vad_speech_seconds_total", float(utter.mean() * n), region)
        self._many("voxwatch_vad_utterance_seconds", utter, region)
        self._many("voxwatch_vad_endpointing_delay_seconds", rng.lognormal(math.log(0.2), 0.2, k), region)
        self._inc("voxwatch_vad_false_starts_total", int(rng.binomial(n, 0.03)), region)
        self._many("voxwatch_vad_barge_in_reaction_seconds", rng.lognormal(math.log(0.12), 0.3, max(1, k // 25)), region)

    def _workers(self, region: str, calls: int, dt: float = 1.0, recovered: bool = False,
                 max_calls: int | None = None) -> None:
        """Worker pools behind STT, NLU and TTS: busy workers by Little's law from the call load."""
        rng = self.rng
        turns_per_s = calls / 9.0
        for pool, service_s, per_worker in (("stt", 0.06, 8), ("nlu", 0.007, 50), ("tts", 0.05, 8), ("media", 0.02, 400), ("actions", 0.05, 20)):
            busy = turns_per_s * service_s
            capacity = max(4, int(math.ceil(busy * 1.6 / per_worker)) * per_worker)
            # the autoscaler's max replicas: sized for the region's whole call capacity
            ceiling = capacity if max_calls is None else max(capacity, int(math.ceil(max_calls / 9.0 * service_s * 1.6 / per_worker)) * per_worker)
            self.m("voxwatch_worker_capacity_ceiling", pool).set(ceiling)
            util = busy / capacity
            queue = max(0.0, (util - 0.85) * capacity)
            self.m("voxwatch_worker_busy", pool).set(busy)
            self.m("voxwatch_worker_capacity", pool).set(capacity)
            self.m("voxwatch_worker_utilization_ratio", pool).set(util)
            self.m("voxwatch_worker_queue_depth", pool).set(queue)
            self.m("voxwatch_worker_queue_capacity", pool).set(capacity * 4)
            self._many("voxwatch_worker_queue_wait_seconds", rng.exponential(0.002 + queue * 0.001, 8), pool)
            self._many("voxwatch_worker_task_seconds", rng.lognormal(math.log(service_s), 0.3, 8), pool)
            tasks = int(turns_per_s * dt)
            self._inc("voxwatch_worker_tasks_total", tasks, pool, "ok")
            self._inc("voxwatch_worker_tasks_total", int(rng.binomial(tasks, 0.001)), pool, "error")
            self._inc("voxwatch_worker_queue_rejections_total", int(rng.binomial(tasks, min(1.0, 0.0005 + max(0.0, util - 0.95)))), pool)
            self._expect("voxwatch_worker_restarts_total", 0.005 * dt / 5.0, pool, "crash")
            # the autoscaler follows the load: a change in desired replicas is a scale event
            replicas = capacity // per_worker
            before = self._replicas.get((region, pool))
            self._replicas[(region, pool)] = replicas
            self.m("voxwatch_autoscaler_desired_replicas", pool).set(replicas)
            self.m("voxwatch_autoscaler_ready_replicas", pool).set(replicas if before is None else min(replicas, before))
            if before is not None and replicas != before:
                direction = "up" if replicas > before else "down"
                self.m("voxwatch_autoscaler_scale_events_total", pool, direction).inc()
                if direction == "up":
                    self.m("voxwatch_autoscaler_scale_up_seconds", pool).observe(float(rng.lognormal(math.log(20), 0.3)))
            if recovered:
                # a region coming back restarts its workers (they failed their health checks)
                self._inc("voxwatch_worker_restarts_total", replicas, pool, "health_check")
            if pool in ("stt", "tts"):
                self.m(f"voxwatch_{pool}_streams_active", region).set(busy)
                self.m(f"voxwatch_{pool}_streams_capacity", region).set(capacity)
                self.m(f"voxwatch_{pool}_streams_capacity_ceiling", region).set(ceiling)


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
