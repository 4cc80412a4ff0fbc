"""Audio tracks for the WebRTC leg: paced 20 ms frames of 48 kHz mono PCM.

`PcmPlayoutTrack` is the outgoing side of a call: it plays whatever PCM is queued (the spoken reply)
and silence otherwise, paced by the wall clock as a real microphone or TTS device would be. Both the
agent (reply audio) and the test/bench caller (scripted speech) use it. It records when each queued
clip's first frame went out, which is where a turn's "first reply audio" latency ends.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from collections import deque
from dataclasses import dataclass

import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame

RATE = 48_000
PTIME = 0.020
FRAME_SAMPLES = int(RATE * PTIME)  # 960
FRAME_BYTES = FRAME_SAMPLES * 2


@dataclass
class Clip:
    pcm: bytes
    label: str = ""
    queued_at: float = 0.0
    started_at: float | None = None  # wall time its first frame was handed to the sender
    finished_at: float | None = None
    done: asyncio.Future | None = None


class PcmPlayoutTrack(MediaStreamTrack):
    """An audio track that plays queued 48 kHz mono s16 clips back to back, silence in between."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._clips: deque[Clip] = deque()
        self._current: Clip | None = None
        self._offset = 0
        self._start: float | None = None
        self._timestamp = 0
        self.frames_sent = 0
        self.speech_frames_sent = 0
        self.history: list[Clip] = []

    def play(self, pcm: bytes, label: str = "") -> Clip:
        """Queue a clip; returns it (its `done` future resolves when the last frame has gone out)."""
        if len(pcm) % 2:
            pcm = pcm[:-1]
        clip = Clip(pcm=pcm, label=label, queued_at=time.time(), done=asyncio.get_running_loop().create_future())
        self._clips.append(clip)
        return clip

    def interrupt(self) -> None:
        """Stop what is playing and drop what is queued (barge-in, or the call ends)."""
        for clip in [self._current, *self._clips]:
            if clip is not None and clip.done is not None and not clip.done.done():
                clip.done.set_result(False)
        self._clips.clear()
        self._current = None
        self._offset = 0

    def drop(self, clips: list[Clip]) -> None:
        """Stop these clips (one reply's, on barge-in) if playing or queued; others keep their place."""
        ids = {id(c) for c in clips}
        for clip in clips:
            if clip.done is not None and not clip.done.done():
                clip.done.set_result(False)
        if self._current is not None and id(self._current) in ids:
            self._current.finished_at = self._current.finished_at or time.time()
            self._current = None
            self._offset = 0
        self._clips = deque(c for c in self._clips if id(c) not in ids)

    @property
    def playing(self) -> bool:
        return self._current is not None or bool(self._clips)

    def _next_chunk(self) -> tuple[bytes, bool]:
        if self._current is None and self._clips:
            self._current = self._clips.popleft()
            self._offset = 0
        clip = self._current
        if clip is None:
            return bytes(FRAME_BYTES), False
        if clip.started_at is None:
            clip.started_at = time.time()
            self.history.append(clip)
        chunk = clip.pcm[self._offset : self._offset + FRAME_BYTES]
        self._offset += FRAME_BYTES
        if self._offset >= len(clip.pcm):
            clip.finished_at = time.time()
            if clip.done is not None and not clip.done.done():
                clip.done.set_result(True)
            self._current = None
        if len(chunk) < FRAME_BYTES:
            chunk = chunk + bytes(FRAME_BYTES - len(chunk))
        return chunk, True

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.time()
        else:
            self._timestamp += FRAME_SAMPLES
            wait = self._start + self._timestamp / RATE - time.time()
            if wait > 0:
                await asyncio.sleep(wait)
        chunk, speech = self._next_chunk()
        frame = AudioFrame(format="s16", layout="mono", samples=FRAME_SAMPLES)
        frame.planes[0].update(chunk)
        frame.pts = self._timestamp
        frame.sample_rate = RATE
        frame.time_base = fractions.Fraction(1, RATE)
        self.frames_sent += 1
        self.speech_frames_sent += int(speech)
        return frame


def frame_to_mono16k(resampler, frame) -> np.ndarray:
    """One received frame as 16 kHz mono int16 samples (the resampler keeps state across frames)."""
    out = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    return np.concatenate(out).astype(np.int16) if out else np.zeros(0, dtype=np.int16)


def rms_dbfs(pcm: np.ndarray) -> float:
    if len(pcm) == 0:
        return -120.0
    x = pcm.astype(np.float64) / 32768.0
    return float(20 * np.log10(max(np.sqrt(np.mean(x * x)), 1e-6)))
