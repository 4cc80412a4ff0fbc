"""Simulated engines: latency and outcome models behind the same protocols as the real engines.

Each draws its latency from the scenario's lognormal model, sleeps on the injected clock and returns
an outcome drawn from the model (error rates, confidences). They drive `pipeline.runner.Pipeline`
one turn at a time (tests, small live runs); the batch simulator draws from the same models in
arrays (pipeline/simulation/simulator.py).
"""

from __future__ import annotations

import random

from pipeline.engines import (
    FALLBACK_INTENT,
    EngineError,
    Engines,
    IntegrationAction,
    IntegrationResult,
    IntentResult,
    ResponseRequest,
    ResponseText,
    SpokenReply,
    Transcript,
    Utterance,
)
from pipeline.simulation.scenario import ConnectorModel, EngineModel, Latency, LLMModel
from pipeline.simulation.scenario import Engines as EngineModels


def draw(rng: random.Random, lat: Latency, factor: float = 1.0) -> float:
    return rng.lognormvariate(lat.mu, lat.sigma) * factor


class _Simulated:
    def __init__(self, model, clock, rng: random.Random) -> None:
        self.model = model
        self.clock = clock
        self.rng = rng
        self.factor = 1.0  # faults stretch latency through this

    async def _work(self, lat: Latency, error_rate: float, what: str) -> None:
        await self.clock.sleep(draw(self.rng, lat, self.factor))
        if self.rng.random() < error_rate:
            raise EngineError(f"simulated {what} failure")


class SimulatedSpeechToText(_Simulated):
    name = "simulated-stt"
    model: EngineModel

    def __init__(self, model: EngineModel, clock, rng, confidence_mean: float = 0.9) -> None:
        super().__init__(model, clock, rng)
        self.confidence_mean = confidence_mean

    async def transcribe(self, utterance: Utterance) -> Transcript:
        await self._work(self.model.latency, self.model.error_rate, "stt")
        conf = min(1.0, max(0.0, self.rng.gauss(self.confidence_mean, 0.05)))
        return Transcript(utterance.scripted_text or "", conf, utterance.language, self.name, utterance.duration_s)


class SimulatedIntentClassifier(_Simulated):
    """Returns the intent the caller meant, except for `fallback_rate` of turns it cannot place."""

    name = "simulated-nlu"

    def __init__(self, model: EngineModel, clock, rng, fallback_rate: float = 0.04) -> None:
        super().__init__(model, clock, rng)
        self.fallback_rate = fallback_rate
        self.meant: dict[str, str] = {}  # scripted text -> intent (the simulator's script)

    async def classify(self, text: str, *, language: str = "en") -> IntentResult:
        await self._work(self.model.latency, self.model.error_rate, "nlu")
        if self.rng.random() < self.fallback_rate or text not in self.meant:
            return IntentResult(FALLBACK_INTENT, self.rng.uniform(0.2, 0.5), fallback=True)
        return IntentResult(self.meant[text], self.rng.uniform(0.7, 0.99))


class SimulatedLLM(_Simulated):
    name = "simulated-llm"
    provider = "simulated"  # the metrics' provider label, as the batch simulator reports it
    model: LLMModel

    async def generate(self, request: ResponseRequest) -> ResponseText:
        ttft = draw(self.rng, self.model.ttft, self.factor)
        tokens = max(1, int(self.rng.expovariate(1 / self.model.completion_tokens_mean)))
        await self.clock.sleep(ttft)
        if self.rng.random() < self.model.error_rate:
            raise EngineError("simulated llm failure")
        # the runner measures end of speech to first audio, so only time to first token is waited
        return ResponseText(f"[{request.intent}] simulated answer", ttft, int(self.model.prompt_tokens_mean), tokens, self.name)


class SimulatedConnector(_Simulated):
    model: ConnectorModel

    def __init__(self, system: str, model: ConnectorModel, clock, rng) -> None:
        super().__init__(model, clock, rng)
        self.system = system
        self.extra_error_rate = 0.0  # integration_failure faults set these
        self.timeout_rate = 0.0

    async def execute(self, action: IntegrationAction) -> IntegrationResult:
        if self.rng.random() < self.timeout_rate:
            await self.clock.sleep(self.model.timeout_s)
            return IntegrationResult(False, error=f"{self.system} timed out", status=504)
        await self.clock.sleep(draw(self.rng, self.model.latency, self.factor))
        if self.rng.random() < self.model.error_rate + self.extra_error_rate:
            return IntegrationResult(False, error=f"{self.system} error", status=503)
        return IntegrationResult(True, {"system": self.system, "operation": action.operation})


class SimulatedTextToSpeech(_Simulated):
    name = "simulated-tts"

    async def synthesize(self, text: str, *, language: str = "en") -> SpokenReply:
        first = draw(self.rng, self.model.latency, self.factor)
        await self.clock.sleep(first)
        if self.rng.random() < self.model.error_rate:
            raise EngineError("simulated tts failure")
        return SpokenReply(None, 16_000, 0.06 * max(1, len(text.split())), first)


class SimulatedWork(_Simulated):
    """Time spent where there is no engine (the media edge, rendering a canned answer): the batch
    form's `edge` and `template` models, waited on the clock."""

    async def wait(self) -> None:
        await self.clock.sleep(draw(self.rng, self.model.latency, self.factor))


def simulated_engines(models: EngineModels, clock, seed: int = 0) -> Engines:
    rng = random.Random(seed)
    return Engines(
        stt=SimulatedSpeechToText(models.stt, clock, rng, models.stt_confidence_mean),
        nlu=SimulatedIntentClassifier(models.nlu, clock, rng, models.fallback_rate),
        llm=SimulatedLLM(models.llm, clock, rng),
        tts=SimulatedTextToSpeech(models.tts, clock, rng),
        connectors={s: SimulatedConnector(s, m, clock, rng) for s, m in models.connectors.items()},
        edge=SimulatedWork(models.edge, clock, rng),
        render=SimulatedWork(models.template, clock, rng),
    )
