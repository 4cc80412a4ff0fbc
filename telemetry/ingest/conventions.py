"""The written-down conventions that map other voice stacks' OpenTelemetry onto Voxwatch's rows.

One table per question, read by the span mapper (telemetry/ingest/spans.py) and printed in
docs/ingest.md. Names come from the frameworks' own source: Pipecat 1.14 (`pipecat/utils/tracing/`:
`turn_trace_observer.py`, `service_decorators.py`, `service_attributes.py`) and LiveKit Agents 1.8
(`livekit/agents/telemetry/trace_types.py`, `voice/agent_activity.py`, `voice/generation.py`), and
Voxwatch's own pipeline (telemetry/traces.py). The first attribute present wins.
"""

from __future__ import annotations

# span name -> what it is to Voxwatch
CONVERSATION_SPANS = frozenset({
    "conversation",  # Pipecat TurnTraceObserver; Voxwatch's own pipeline
    "agent_session",  # LiveKit AgentSession
})
TURN_SPANS = frozenset({
    "turn",  # Pipecat: user starts speaking -> bot stops speaking; Voxwatch
    "agent_turn",  # LiveKit: one reply of the agent, carrying the user turn's stage delays
})
# stage spans -> the `stage` label of voxwatch_stage_latency_seconds
STAGE_SPANS: dict[str, str] = {
    "stt": "stt", "llm": "llm", "tts": "tts",  # Pipecat service decorators (and Voxwatch)
    "nlu": "nlu", "tool": "integration",  # Voxwatch
    "llm_node": "llm", "tts_node": "tts", "function_tool": "integration",  # LiveKit
    "eou_detection": "vad",  # LiveKit end-of-utterance model
}

# every span name the mapper measures or closes a call on (any other span is stored and not measured)
MEASURED_SPANS = CONVERSATION_SPANS | TURN_SPANS | frozenset(STAGE_SPANS)

# attribute keys, first present wins
TURN_LATENCY = ("turn.user_bot_latency_seconds", "lk.e2e_latency", "voxwatch.turn_latency_s")
LLM_TTFT = ("metrics.ttfb", "lk.response.ttft", "gen_ai.response.time_to_first_token",
            "gen_ai.response.time_to_first_chunk")
TTS_TTFB = ("metrics.ttfb", "lk.response.ttfb")
STT_LATENCY = ("metrics.ttfb",)  # on the stt span: end of user speech -> final transcript
TURN_STT_LATENCY = ("lk.transcription_delay",)  # on the turn span
END_OF_UTTERANCE = ("lk.end_of_turn_delay",)  # on the turn span: end of speech -> end-of-turn decision
INTERRUPTED = ("turn.was_interrupted", "lk.interrupted", "tts.interrupted")
# Pipecat marks the turn still open when the conversation ends as interrupted, and says so here
NOT_A_BARGE_IN = "turn.ended_by_conversation_end"
PROVIDER = ("gen_ai.provider.name", "gen_ai.system")
MODEL = ("gen_ai.request.model", "gen_ai.response.model")
LANGUAGE = ("language", "lk.eou.language", "voxwatch.language")
INPUT_TOKENS = ("gen_ai.usage.input_tokens",)
OUTPUT_TOKENS = ("gen_ai.usage.output_tokens",)
CACHED_INPUT_TOKENS = ("gen_ai.usage.cache_read.input_tokens",)
CHARACTERS = ("metrics.character_count",)
TRANSCRIPT = ("transcript", "lk.pii.user_transcript")  # stt span / user turn text, for the call record
CONVERSATION_ID = ("conversation.id", "gen_ai.conversation.id")

# resource attributes -> labels (so several pipelines are watched side by side)
SOURCE = "service.name"
ENVIRONMENT = ("deployment.environment", "deployment.environment.name")
REGION = ("cloud.region", "voxwatch.region")
UNKNOWN_SOURCE = "unknown_service"

CHANNEL = "otlp"  # the calls.channel of every ingested call


def first(attrs: dict, keys: tuple[str, ...]):
    """The value of the first key of `keys` present in `attrs`, else None."""
    for k in keys:
        v = attrs.get(k)
        if v is not None:
            return v
    return None
