"""Text-to-speech with espeak-ng: the reply text becomes 48 kHz mono PCM for the outgoing WebRTC track.

espeak-ng runs as a subprocess (`--stdout` gives a WAV on stdout at 22.05 kHz); the audio is resampled
to 48 kHz, the rate of Opus on the WebRTC leg. A long reply is synthesized sentence by sentence so the
first sentence can be on the wire while the rest is still being made (`synthesize_stream`).

In a call, the turn's `ReplySpeaker` (pipeline.media.speaker) does the speaking: `synthesize` hands
the reply to it, so a cached or templated answer starts playing after one clause's synthesis, and an
LLM answer that was streamed into it clause by clause is only waited for. Clause audio is cached
(the same voice says the same clause the same way), so common answers start at once.
"""

from __future__ import annotations

import asyncio
import io
import re
import shutil
import time
import wave
from collections import OrderedDict
from collections.abc import AsyncIterator

import numpy as np

from pipeline.engines import EngineError, SpokenReply
from pipeline.work import current_work, note_work

OUTPUT_RATE = 48_000


def resample_pcm16(pcm: bytes, src_rate: int, dst_rate: int) -> bytes:
    """Resample mono s16 PCM with libswresample (through PyAV), the resampler aiortc itself uses."""
    if src_rate == dst_rate or not pcm:
        return pcm
    import av

    frame = av.AudioFrame.from_ndarray(np.frombuffer(pcm, dtype=np.int16)[None, :], format="s16", layout="mono")
    frame.sample_rate = src_rate
    resampler = av.AudioResampler(format="s16", layout="mono", rate=dst_rate)
    out = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    out += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(out).astype(np.int16).tobytes() if out else b""


def parse_wav(data: bytes) -> tuple[bytes, int]:
    """PCM and rate of a WAV that espeak-ng wrote to a pipe (its header leaves the data size unset)."""
    if len(data) < 44 or data[:4] != b"RIFF":
        raise EngineError("espeak-ng did not produce a WAV", retryable=False)
    rate = int.from_bytes(data[24:28], "little")
    try:
        with wave.open(io.BytesIO(data)) as w:
            return w.readframes(w.getnframes()), w.getframerate()
    except (wave.Error, EOFError):
        return data[44:], rate


_SENTENCES = re.compile(r"[^.?!;]+[.?!;]*")


def split_sentences(text: str) -> list[str]:
    parts = [s.strip() for s in _SENTENCES.findall(text) if s.strip()]
    return parts or ([text.strip()] if text.strip() else [])


class EspeakTextToSpeech:
    """`TextToSpeech` engine: espeak-ng, output at 48 kHz (SpokenReply.sample_rate says so)."""

    name = "espeak-ng"
    output_rate = OUTPUT_RATE

    def __init__(self, voice: str = "en-us", speed_wpm: int = 170, binary: str = "espeak-ng", cache_clauses: int = 512) -> None:
        path = shutil.which(binary)
        if path is None:
            raise EngineError(f"{binary} is not installed (apt-get install espeak-ng)", kind="unavailable")
        self.binary = path
        self.voice = voice
        self.speed_wpm = speed_wpm
        self._clause_cache: OrderedDict[str, bytes] = OrderedDict()
        self._cache_size = cache_clauses
        self.clause_cache_hits = 0

    async def synthesize_clause(self, text: str) -> bytes:
        """48 kHz PCM of one clause, from the clause cache when this voice has said it before."""
        key = " ".join(text.split())
        pcm = self._clause_cache.get(key)
        if pcm is not None:
            self._clause_cache.move_to_end(key)
            self.clause_cache_hits += 1
            return pcm
        pcm = await self._espeak(key)
        if self._cache_size > 0:
            self._clause_cache[key] = pcm
            while len(self._clause_cache) > self._cache_size:
                self._clause_cache.popitem(last=False)
        return pcm

    async def _espeak(self, text: str) -> bytes:
        proc = await asyncio.create_subprocess_exec(
            self.binary, "-v", self.voice, "-s", str(self.speed_wpm), "-z", "--stdout", "--stdin",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate(text.encode("utf-8"))
        if proc.returncode != 0:
            raise EngineError(f"espeak-ng exited {proc.returncode}: {err.decode(errors='replace')[:200]}")
        pcm, rate = parse_wav(out)
        return await asyncio.to_thread(resample_pcm16, pcm, rate, OUTPUT_RATE)

    async def synthesize_stream(self, text: str) -> AsyncIterator[bytes]:
        """48 kHz PCM, one chunk per sentence; the first chunk comes after one short espeak run."""
        for sentence in split_sentences(text):
            yield await self._espeak(sentence)

    async def synthesize(self, text: str, *, language: str = "en") -> SpokenReply:
        work = current_work()
        speaker = None if work is None else work.reply
        if speaker is not None and getattr(speaker, "tts", None) is self:
            if not speaker.fed:
                speaker.feed(text)  # a cached or templated answer: spoken clause by clause from now
            return await speaker.spoken()
        t0 = time.perf_counter()
        chunks: list[bytes] = []
        first = 0.0
        async for chunk in self.synthesize_stream(text):
            if not chunks:
                first = time.perf_counter() - t0
            chunks.append(chunk)
        if work is not None:
            note_work("tts", time.time() - (time.perf_counter() - t0), time.time(), chars=len(text))
        pcm = b"".join(chunks)
        return SpokenReply(
            audio=pcm, sample_rate=OUTPUT_RATE, duration_s=len(pcm) / 2 / OUTPUT_RATE, first_audio_s=first
        )
