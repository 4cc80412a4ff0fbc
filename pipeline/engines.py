"""Engine interfaces: what each pipeline stage asks of the thing that does the work.

A stage (speech-to-text, understanding, response, integrations, speech, handoff) owns the rules
(caches first, degradation level, pools, retries, telemetry); an engine only does the work. Real
engines (faster-whisper, the scikit-learn classifier, the OpenAI-compatible HTTP client, HTTP
connectors, espeak-ng) and simulated engines (latency and outcome models) implement the same
protocols, so the stage code is the same in both modes. Every method is async: a real engine runs
blocking work off the event loop (`asyncio.to_thread`), a simulated one sleeps on the injected clock.

Engines report failures by raising `EngineError` (or any exception: the runner turns it into a
failed stage, never a crashed process).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


class EngineError(Exception):
    """An engine could not do its work (timeout, bad response, model failure)."""

    def __init__(self, message: str, *, kind: str = "error", retryable: bool = True) -> None:
        super().__init__(message)
        self.kind = kind  # error | timeout | unavailable | rejected
        self.retryable = retryable


# ---------------------------------------------------------------- what flows between stages


@dataclass
class Utterance:
    """One stretch of caller speech, cut by voice-activity detection (real) or drawn (simulated)."""

    call_id: str
    turn: int
    audio: bytes | None = None  # 16 kHz mono signed 16-bit little-endian PCM; None when simulated
    sample_rate: int = 16_000
    duration_s: float = 0.0
    ended_at: float = 0.0  # clock time (epoch s) of end of speech: the turn's latency starts here
    language: str = "en"
    # Simulated calls know what the caller meant; real calls leave these None.
    scripted_text: str | None = None
    scripted_intent: str | None = None
    partial_transcript: str | None = None  # decoded while the caller was still speaking, if any


@dataclass
class Transcript:
    text: str
    confidence: float  # 0..1 (real: mean token probability; simulated: drawn)
    language: str = "en"
    engine: str = ""
    audio_s: float = 0.0  # seconds of audio decoded


@dataclass
class IntentResult:
    intent: str  # one of the intent catalogue's names, or FALLBACK_INTENT
    confidence: float
    fallback: bool = False  # True when confidence fell under the classifier's threshold
    scores: dict[str, float] = field(default_factory=dict)


FALLBACK_INTENT = "fallback"
HUMAN_INTENT = "talk_to_human"


@dataclass
class ChatMessage:
    role: str  # system | user | assistant
    content: str


@dataclass
class ResponseRequest:
    """What the response engine (the LLM backend) is asked: the call's context and the facts found."""

    call_id: str
    intent: str
    text: str  # the caller's words this turn
    history: list[ChatMessage] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)  # customer history, product info, order data
    language: str = "en"
    max_tokens: int = 160


@dataclass
class ResponseText:
    text: str
    ttft_s: float = 0.0  # time to first token
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str = ""


@dataclass
class IntegrationAction:
    """A request to a CRM, order or ticketing system. Lookups and actions share this shape."""

    system: str  # crm | orders | ticketing | catalog
    operation: str  # customer_history | order_status | create_return | open_ticket | product_info ...
    call_id: str = ""
    payload: dict[str, Any] = field(default_factory=dict)
    idempotency_key: str = ""  # lets the queue retry an action without doing it twice


@dataclass
class IntegrationResult:
    ok: bool
    data: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    status: int = 200  # HTTP-like status (real connectors pass the server's)


@dataclass
class SpokenReply:
    audio: bytes | None  # 16 kHz mono s16le PCM (None when simulated)
    sample_rate: int = 16_000
    duration_s: float = 0.0
    first_audio_s: float = 0.0  # synthesis time until the first audio chunk was ready


# ---------------------------------------------------------------- engine protocols


@runtime_checkable
class SpeechToText(Protocol):
    name: str

    async def transcribe(self, utterance: Utterance) -> Transcript: ...


@runtime_checkable
class IntentClassifier(Protocol):
    name: str

    async def classify(self, text: str, *, language: str = "en") -> IntentResult: ...


@runtime_checkable
class ResponseEngine(Protocol):
    """The LLM backend (OpenAI-compatible chat API in the real path)."""

    name: str

    async def generate(self, request: ResponseRequest) -> ResponseText: ...


@runtime_checkable
class IntegrationConnector(Protocol):
    """One downstream system. The stage wraps every call in that system's connection pool."""

    system: str

    async def execute(self, action: IntegrationAction) -> IntegrationResult: ...


@runtime_checkable
class TextToSpeech(Protocol):
    name: str

    async def synthesize(self, text: str, *, language: str = "en") -> SpokenReply: ...


@runtime_checkable
class ModelledWork(Protocol):
    """Time a turn spends in a part that has no engine of its own: the media edge's transit, or
    rendering a canned answer (cache or template). Simulated engines wait their model's draw; a
    real pipeline has none (its edge's time is measured by the media stack, a template renders in
    microseconds)."""

    async def wait(self) -> None: ...


@dataclass
class Engines:
    """The set of engines one pipeline runs with; `connectors` is keyed by system name."""

    stt: SpeechToText
    nlu: IntentClassifier
    llm: ResponseEngine
    tts: TextToSpeech
    connectors: dict[str, IntegrationConnector] = field(default_factory=dict)
    edge: ModelledWork | None = None  # the media edge's transit of a turn
    render: ModelledWork | None = None  # rendering an answer from the response cache or a template
