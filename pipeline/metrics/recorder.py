"""The recorder under the pipeline's metrics: catalog instruments looked up once per label set, the
histogram buffer the simulator flushes once per simulated second, rare-event accumulation, and the
names (providers, models, outcome reasons) the recording units share. See `pipeline.metrics`."""

from __future__ import annotations

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


class Recorder(CatalogRecorder):
    """What every recording unit (events, batches, state) shares: the state they keep and the plumbing."""

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
        self._llm_tokens: list[tuple[float, float]] = []  # (second, tokens) for the per-minute quota
        self._turns_good = 0
        self._turns_bad = 0

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

    # hooks for quantities only a media stack or the caller base shows (call setup, ICE/DTLS, VAD,
    # repeat callers): a real pipeline records its own (pipeline/media/metrics.py); the simulator's
    # recorder (pipeline/simulation/models.py) invents them
    def _edge_setup(self, region: str, n: int) -> None:
        pass

    def _vad_turns(self, region: str, n: int) -> None:
        pass

    def _call_end_models(self, region: str, n: int) -> None:
        pass


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
