"""The real-media voice pipeline, assembled: WebRTC edge -> Whisper -> intent classifier -> response
(caches, then the OpenAI-compatible LLM) -> integrations (HTTP connectors behind pools, retry queue)
-> espeak-ng reply on the same connection -> human handoff.

The stage code is the pipeline core's (`pipeline.runner.Pipeline`); this module plugs the real
engines into it and puts the edge in front. `VoicePipeline.start()` must run on the event loop that
will carry the calls (aiortc binds its sockets to it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from pipeline.engines import Engines
from pipeline.media.edge import MediaCall, WebRtcEdge, validate_offer
from pipeline.media.vad import SegmenterOptions
from pipeline.real.llm_server import LatencyProfile
from pipeline.real.voice_agent import AgentOptions, VoiceAgent

log = logging.getLogger(__name__)


@dataclass
class VoiceSettings:
    audio_context: str = "tight"  # Whisper window: "tight" (fast) or "full" (stock 30 s)
    end_silence_ms: int = 320  # silence that ends a caller's turn
    max_utterance_s: float = 15.0
    llm_url: str | None = None  # None: start the local OpenAI-compatible stand-in
    llm_model: str = "voxwatch-template-1"
    llm_api_key: str | None = None
    integrations_url: str | None = None  # None: start the local CRM/orders/ticketing stand-in
    llm_profile: LatencyProfile = field(default_factory=LatencyProfile)
    intent_threshold: float = 0.40
    tts_voice: str = "en-us"
    tts_speed_wpm: int = 185
    region: str | None = None
    max_calls: int = 32
    agent: AgentOptions = field(default_factory=AgentOptions)


class VoicePipeline:
    def __init__(self, *, clock, sink=None, metrics=None, media_metrics=None, controller=None, settings: VoiceSettings | None = None, pipeline_config=None) -> None:
        self.clock = clock
        self.sink = sink
        self.metrics = metrics
        self.media_metrics = media_metrics
        self.controller = controller
        self.settings = settings or VoiceSettings()
        self.pipeline_config = pipeline_config
        self.services = None
        self.pipeline = None
        self.agent: VoiceAgent | None = None
        self.edge: WebRtcEdge | None = None
        self.stt = None
        self._clients: list = []
        self._started = False
        self._lock = asyncio.Lock()

    async def start(self) -> VoicePipeline:
        async with self._lock:
            if self._started:
                return self
            await asyncio.to_thread(self._start_blocking)
            await self.agent.warm_up()
            # first requests pay for connection setup and lazy imports; callers should not
            await self.pipeline.engines.nlu.classify("where is my order")
            try:
                from pipeline.engines import ResponseRequest

                await self.pipeline.engines.llm.generate(ResponseRequest("warm-up", "greeting", "hello"))
            except Exception as exc:  # the backend may be remote and down: calls will report it
                log.warning("LLM backend warm-up failed: %s", exc)
            self._started = True
            return self

    def _start_blocking(self) -> None:
        from pipeline.media.stt import WhisperSpeechToText
        from pipeline.media.tts import EspeakTextToSpeech
        from pipeline.real.connectors import http_connectors
        from pipeline.real.intent_classifier import SklearnIntentClassifier
        from pipeline.real.llm_client import OpenAIChatEngine
        from pipeline.real.services import LocalServices
        from pipeline.runner import Pipeline

        s = self.settings
        if s.llm_url is None or s.integrations_url is None:
            self.services = LocalServices(llm_profile=s.llm_profile).start()
        llm_url = s.llm_url or self.services.llm_url
        integrations_url = s.integrations_url or self.services.integrations_url
        t0 = time.perf_counter()
        self.stt = WhisperSpeechToText(audio_context=s.audio_context)
        if self.media_metrics is not None:
            self.media_metrics.model_loaded(time.perf_counter() - t0)
        # one decode of silence: CTranslate2 allocates its buffers on the first call, not on the first caller
        self.stt.decoder.decode(__import__("numpy").zeros(16000, dtype="float32"))
        nlu = SklearnIntentClassifier(threshold=s.intent_threshold)
        llm = OpenAIChatEngine(llm_url, model=s.llm_model, api_key=s.llm_api_key)
        tts = EspeakTextToSpeech(voice=s.tts_voice, speed_wpm=s.tts_speed_wpm)
        connectors, client = http_connectors(integrations_url)
        self._clients = [llm, client]
        engines = Engines(stt=self.stt, nlu=nlu, llm=llm, tts=tts, connectors=connectors)
        kwargs = {"clock": self.clock, "sink": self.sink, "controller": self.controller}
        if self.metrics is not None:
            kwargs["metrics"] = self.metrics
        if self.pipeline_config is not None:
            kwargs["config"] = self.pipeline_config
        self.pipeline = Pipeline(engines, **kwargs)
        self.agent = VoiceAgent(self.pipeline, self.stt, tts, options=s.agent, media_metrics=self.media_metrics, region=s.region)
        self.edge = WebRtcEdge(
            self.agent,
            segmenter_options=SegmenterOptions(end_silence_ms=s.end_silence_ms, max_utterance_s=s.max_utterance_s),
            max_calls=s.max_calls,
        )

    async def answer(self, sdp: str, sdp_type: str = "offer") -> MediaCall:
        validate_offer(sdp, sdp_type)  # a bad offer is refused before models load on a first call
        await self.start()
        return await self.edge.answer(sdp, sdp_type)

    async def close(self) -> None:
        if self.edge is not None:
            await self.edge.close()
        for c in self._clients:
            try:
                await c.aclose()
            except Exception:  # closing on shutdown: nothing left to save
                pass
        if self.services is not None:
            await asyncio.to_thread(self.services.close)
