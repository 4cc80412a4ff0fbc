"""A real Pipecat bot for the ingest tests: audio from a WAV file -> Pipecat's Whisper STT (tiny.en, the
shipped model) -> Pipecat's OpenAI LLM service against the project's OpenAI-compatible stand-in ->
a small Pipecat TTS service over espeak-ng -> a speaker that plays the audio at real-time pace and
says when the bot starts and stops speaking (what an output transport does), with Pipecat's own
tracing exporting to Voxwatch through `voxwatch.integrations.pipecat`.

The caller's turns are cut by the WAV's silences, as a VAD would; each next utterance starts once the
bot has finished answering the previous one.
"""

from __future__ import annotations

import asyncio
import io
import subprocess
import wave
from collections.abc import AsyncGenerator
from pathlib import Path

import numpy as np
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    EndFrame,
    Frame,
    InputAudioRawFrame,
    StartFrame,
    TTSAudioRawFrame,
    TTSStoppedFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.runner import PipelineRunner
from pipecat.pipeline.task import PipelineParams, PipelineTask
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.openai.llm import OpenAILLMService
from pipecat.services.tts_service import TTSService
from pipecat.services.whisper.stt import WhisperSTTService
from pipecat.utils.tracing.service_decorators import traced_tts

RATE = 16_000
CHUNK = RATE // 50  # 20 ms


def write_wav(path: Path, utterances: list[bytes], gap_s: float = 1.0) -> None:
    """Mono s16 16 kHz WAV: the utterances separated by silence."""
    silence = b"\x00\x00" * int(RATE * gap_s)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(silence + silence.join(utterances) + silence)


def utterances_of(path: Path, threshold: int = 500, min_gap_s: float = 0.5) -> list[bytes]:
    """Cut a WAV at its silences (the job of a VAD): the speech segments, in order."""
    with wave.open(str(path), "rb") as w:
        assert w.getframerate() == RATE and w.getnchannels() == 1
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    loud = np.abs(pcm.astype(np.int32)).reshape(-1, CHUNK).max(axis=1) > threshold if len(pcm) % CHUNK == 0 else \
        np.abs(pcm[: len(pcm) // CHUNK * CHUNK].astype(np.int32)).reshape(-1, CHUNK).max(axis=1) > threshold
    segments, start, quiet = [], None, 0
    for i, v in enumerate(loud):
        if v:
            start = i if start is None else start
            quiet = 0
        elif start is not None:
            quiet += 1
            if quiet * 0.02 >= min_gap_s:
                segments.append(pcm[start * CHUNK:(i - quiet + 1) * CHUNK].tobytes())
                start, quiet = None, 0
    if start is not None:
        segments.append(pcm[start * CHUNK:].tobytes())
    return segments


class EspeakTTSService(TTSService):
    """Pipecat TTS over the espeak-ng command line (22.05 kHz WAV on stdout)."""

    def __init__(self, voice: str = "en-us", **kwargs) -> None:
        super().__init__(push_start_frame=True, push_stop_frames=True, **kwargs)
        self._voice = voice

    def can_generate_metrics(self) -> bool:
        return True

    @traced_tts
    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame, None]:
        await self.start_tts_usage_metrics(text)
        proc = await asyncio.create_subprocess_exec("espeak-ng", "-v", self._voice, "--stdout", text,
                                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        wav_bytes, _ = await proc.communicate()
        with wave.open(io.BytesIO(wav_bytes), "rb") as w:
            rate, pcm = w.getframerate(), w.readframes(w.getnframes())

        async def chunks():
            step = rate // 10 * 2
            for i in range(0, len(pcm), step):
                yield pcm[i:i + step]

        async for frame in self._stream_audio_frames_from_iterator(chunks(), in_sample_rate=rate, context_id=context_id):
            await self.stop_ttfb_metrics()
            yield frame


class Speaker(FrameProcessor):
    """The end of the pipeline: 'plays' the bot's audio at real-time pace and announces the bot speaking."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.speaking = False
        self.done_speaking = asyncio.Event()
        self.audio_s = 0.0

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, TTSAudioRawFrame):
            if not self.speaking:
                self.speaking = True
                await self.push_frame(BotStartedSpeakingFrame(), FrameDirection.UPSTREAM)
                await self.push_frame(BotStartedSpeakingFrame())
            secs = len(frame.audio) / 2 / frame.sample_rate
            self.audio_s += secs
            await asyncio.sleep(secs / 4)  # played 4x faster than real time: keeps the test short
        elif isinstance(frame, TTSStoppedFrame) and self.speaking:
            self.speaking = False
            await self.push_frame(BotStoppedSpeakingFrame(), FrameDirection.UPSTREAM)
            await self.push_frame(BotStoppedSpeakingFrame())
            self.done_speaking.set()
        await self.push_frame(frame, direction)


class WavCaller(FrameProcessor):
    """The start of the pipeline: speaks the WAV's utterances one turn at a time, with VAD's frames."""

    def __init__(self, wav: Path, speaker: Speaker, **kwargs) -> None:
        super().__init__(**kwargs)
        self.utterances = utterances_of(wav)
        self.speaker = speaker
        self.turns_spoken = 0
        self.finished = asyncio.Event()

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)
        if isinstance(frame, StartFrame):
            self.create_task(self._speak(), name="wav-caller")

    async def _speak(self) -> None:
        await asyncio.sleep(0.2)
        for pcm in self.utterances:
            self.speaker.done_speaking.clear()
            await self.push_frame(VADUserStartedSpeakingFrame())
            await self.push_frame(UserStartedSpeakingFrame())
            for i in range(0, len(pcm), CHUNK * 2):
                await self.push_frame(InputAudioRawFrame(audio=pcm[i:i + CHUNK * 2], sample_rate=RATE, num_channels=1))
                await asyncio.sleep(0.002)
            await self.push_frame(VADUserStoppedSpeakingFrame())
            await self.push_frame(UserStoppedSpeakingFrame())
            self.turns_spoken += 1
            await asyncio.wait_for(self.speaker.done_speaking.wait(), 60)
            await asyncio.sleep(0.3)
        # hang up after Pipecat's turn-end timeout (2.5 s): a turn still open when the pipeline ends is
        # reported interrupted by Pipecat, and this caller did not interrupt
        await asyncio.sleep(3.0)
        self.finished.set()


async def run_bot(wav: Path, llm_url: str, *, conversation_id: str, extra: list[FrameProcessor] = (),
                  whisper_model: str) -> dict:
    """Run one call through the bot; returns what the bot did (turns spoken, transcripts, replies)."""
    speaker = Speaker()
    caller = WavCaller(wav, speaker)
    stt = WhisperSTTService(model=whisper_model, device="cpu", compute_type="int8")
    llm = OpenAILLMService(api_key="not-needed", base_url=f"{llm_url}/v1", model="voxwatch-template-1")
    tts = EspeakTTSService()
    context = LLMContext([{"role": "system", "content": "You are the pizza shop's phone agent."}])
    pair = LLMContextAggregatorPair(context)
    pipeline = Pipeline([caller, stt, pair.user(), *extra, llm, tts, speaker, pair.assistant()])
    task = PipelineTask(pipeline, params=PipelineParams(enable_metrics=True, enable_usage_metrics=True),
                        enable_tracing=True, conversation_id=conversation_id, idle_timeout_secs=120)

    async def end_when_done():
        await caller.finished.wait()
        await task.queue_frame(EndFrame())

    runner = PipelineRunner(handle_sigint=False)
    ender = asyncio.create_task(end_when_done())
    await asyncio.wait_for(runner.run(task), 300)
    ender.cancel()
    return {"turns": caller.turns_spoken, "utterances": len(caller.utterances), "messages": context.get_messages(),
            "audio_s": speaker.audio_s}


def main() -> None:
    """Run the bot as its own process (as a bot runs), exporting to Voxwatch; write what it did as JSON."""
    import argparse
    import json

    from opentelemetry import trace
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from pipeline.media.stt import model_path
    from voxwatch.integrations.pipecat import DegradationProcessor, export_traces

    p = argparse.ArgumentParser()
    p.add_argument("--wav", required=True)
    p.add_argument("--llm-url", required=True)
    p.add_argument("--voxwatch-url", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--service-name", default="pizza-bot")
    p.add_argument("--conversation-id", required=True)
    p.add_argument("--out", required=True)
    a = p.parse_args()

    assert export_traces(a.voxwatch_url, a.token, service_name=a.service_name)  # the README's one line
    ran = InMemorySpanExporter()  # what the bot's own tracing produced, to compare with what Voxwatch stored
    trace.get_tracer_provider().add_span_processor(SimpleSpanProcessor(ran))
    degradation = DegradationProcessor(a.voxwatch_url, a.token, cached_reply="Our menu is on the website.", wait_s=5.0)
    result = asyncio.run(run_bot(Path(a.wav), a.llm_url, conversation_id=a.conversation_id, extra=[degradation],
                                 whisper_model=model_path()))
    trace.get_tracer_provider().shutdown()  # flushes the batch exporter to Voxwatch
    spans = [{"name": s.name, "trace_id": format(s.context.trace_id, "032x"), "span_id": format(s.context.span_id, "016x"),
              "duration_ms": (s.end_time - s.start_time) / 1e6,
              "attributes": {k: v for k, v in (s.attributes or {}).items() if isinstance(v, (int, float, str, bool))}}
             for s in ran.get_finished_spans()]
    result.update(spans=spans, level=degradation.level, applied=dict(degradation.applied))
    Path(a.out).write_text(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
