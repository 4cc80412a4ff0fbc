"""Batch recording: what the batch simulator reports for many turns at once, as numpy arrays (the
histograms take them in one `observe_many`, buffered per simulated second)."""

from __future__ import annotations

import math

import numpy as np

from pipeline.metrics.recorder import (
    ACTION_NAMES,
    COST_PER_1K_INPUT,
    COST_PER_1K_OUTPUT,
    ENTITY_BY_INTENT,
    LLM_MODEL,
    NLU_MODEL,
    OUTCOME_REASON,
    PROVIDER,
    STT_MODEL,
    Recorder,
)


class BatchRecording(Recorder):
    """Many turns at once, as arrays: the batch simulator's stages, calls, pools and queue attempts."""

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
        self._call_end_models(region, n)
        cost = durations / 60.0 * 0.004 + turns * 0.0006
        self._many("voxwatch_business_cost_per_call_dollars", cost[:200])
        self._ended_window.append((self._last_second or 0.0, region, outcome, n))

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

    def llm_batch(self, ttft: np.ndarray, request_s: np.ndarray, tokens: np.ndarray, prompt_tokens: int, n_err: int, n_timeout: int, waits: np.ndarray, *, provider: str = PROVIDER, model: str = LLM_MODEL) -> None:
        k = len(ttft) + n_timeout
        if not k:
            return
        rng = self.rng
        self._inc("voxwatch_llm_requests_total", k, provider, model)
        self._many("voxwatch_llm_time_to_first_token_seconds", ttft, provider, model)
        self._many("voxwatch_llm_request_seconds", request_s, provider, model)
        if len(ttft):
            self._many("voxwatch_llm_inter_token_seconds", (request_s - ttft) / np.maximum(tokens, 1), provider)
            self._many("voxwatch_llm_output_tokens_per_request", tokens, provider)
            self._many("voxwatch_llm_queue_wait_seconds", waits, provider)
        out_tokens = float(tokens.sum())
        in_tokens = float(prompt_tokens) * len(ttft)
        cached = in_tokens * 0.6
        self._inc("voxwatch_llm_input_tokens_total", in_tokens, provider, model)
        self._inc("voxwatch_llm_output_tokens_total", out_tokens, provider, model)
        self._inc("voxwatch_llm_cached_input_tokens_total", cached, provider, model)
        self._inc("voxwatch_llm_prompt_cache_hits_total", int(len(ttft) * 0.8), provider)
        self._inc("voxwatch_llm_cost_dollars_total", (in_tokens - cached) / 1000 * COST_PER_1K_INPUT + out_tokens / 1000 * COST_PER_1K_OUTPUT, provider, model)
        self._inc("voxwatch_llm_finish_reasons_total", len(ttft) - n_err, provider, "stop")
        self._inc("voxwatch_llm_finish_reasons_total", int(rng.binomial(max(len(ttft), 0), 0.01)), provider, "length")
        # a stream stalls more often when the provider is slow (generation time per token grows)
        per_token = (request_s - ttft) / np.maximum(tokens, 1)
        self._inc("voxwatch_llm_stream_stalls_total", int(rng.binomial(len(ttft), min(1.0, 0.002 * float(per_token.mean() / 0.011)))) if len(ttft) else 0, provider)
        self._llm_tokens.append((self._last_second or 0.0, in_tokens + out_tokens))
        if n_err:
            self._inc("voxwatch_llm_errors_total", n_err - n_timeout, provider, "server_error")
            self._inc("voxwatch_llm_retries_total", n_err, provider)
            self._inc("voxwatch_llm_fallback_requests_total", n_err, "sim-llm-fallback")
        if n_timeout:
            self._inc("voxwatch_llm_errors_total", n_timeout, provider, "timeout")

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

    def customer_lookups(self, ok: np.ndarray) -> None:
        k_ok = int(ok.sum())
        found = int(self.rng.binomial(k_ok, 0.93))
        self._inc("voxwatch_integration_customer_lookups_total", found, "found")
        self._inc("voxwatch_integration_customer_lookups_total", k_ok - found, "not_found")
        self._inc("voxwatch_integration_customer_lookups_total", int((~ok).sum()), "failed")

    def pool_acquire_batch(self, pool, waits: np.ndarray, timeouts: int) -> None:
        name = pool.service
        self._inc("voxwatch_pool_acquires_total", len(waits), name)
        self._inc("voxwatch_pool_releases_total", len(waits), name)
        self._many("voxwatch_pool_wait_seconds", waits, name)
        self._inc("voxwatch_pool_acquire_timeouts_total", timeouts, name)

    def queue_attempts(self, operations: list[str], seconds: np.ndarray) -> None:
        by: dict[str, list[float]] = {}
        for op, s in zip(operations, seconds.tolist(), strict=True):
            by.setdefault(ACTION_NAMES.get(op, "update_crm"), []).append(s)
        for action, vals in by.items():
            self._many("voxwatch_action_queue_execution_seconds", vals, action)

    def intents_outcome(self, intent_names, intents: np.ndarray, resolved: bool) -> None:
        if len(intents):
            counts = np.bincount(intents, minlength=len(intent_names))
            name = "voxwatch_business_intents_resolved_total" if resolved else "voxwatch_business_intents_unresolved_total"
            for i in np.flatnonzero(counts):
                self._inc(name, int(counts[i]), intent_names[i])
