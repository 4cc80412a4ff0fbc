"""A scripted caller: an aiortc peer that dials the edge over HTTP signalling, speaks prepared audio
and listens to what comes back. The media tests and `voxwatch bench voice` are its users.

It measures from the caller's side of the line: when the last voiced sample of each utterance left,
and when the agent's reply audio started arriving (the voice-to-voice latency a person would feel).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

import httpx
import numpy as np

from pipeline.media.tracks import RATE, PcmPlayoutTrack

VOICED_DBFS = -40.0  # frame level above which received audio counts as speech


@dataclass
class HeardReply:
    onset_at: float  # wall time the first voiced frame arrived
    ended_at: float
    voiced_frames: int
    peak_dbfs: float

    @property
    def duration_s(self) -> float:
        return self.voiced_frames * 0.020


@dataclass
class SpokenLine:
    label: str
    started_at: float
    speech_end_at: float  # wall time the last voiced sample was sent
    frames: int


def voiced_start_offset_s(pcm48: bytes, threshold: float = 0.01) -> float:
    """Seconds from a clip's start to its first sample above threshold."""
    x = np.frombuffer(pcm48, dtype=np.int16).astype(np.float32) / 32768.0
    idx = np.nonzero(np.abs(x) > threshold)[0]
    return int(idx[0]) / RATE if len(idx) else 0.0


def voiced_end_offset_s(pcm48: bytes, threshold: float = 0.01) -> float:
    """Seconds from a clip's start to its last sample above threshold (espeak ends with a little silence)."""
    x = np.frombuffer(pcm48, dtype=np.int16).astype(np.float32) / 32768.0
    idx = np.nonzero(np.abs(x) > threshold)[0]
    return (int(idx[-1]) + 1) / RATE if len(idx) else 0.0


@dataclass
class ScriptedCaller:
    base_url: str
    frames_received: int = 0
    replies: list[HeardReply] = field(default_factory=list)
    lines: list[SpokenLine] = field(default_factory=list)
    call_id: str = ""
    setup_s: float = 0.0

    def __post_init__(self) -> None:
        self.mic = PcmPlayoutTrack()
        self.pc = None
        self._listen_task: asyncio.Task | None = None
        self._connected = asyncio.Event()
        self._reply_event = asyncio.Event()
        self.remote_ended = asyncio.Event()

    async def dial(self, path: str = "/v1/calls", timeout_s: float = 10.0) -> str:
        from aiortc import RTCPeerConnection, RTCSessionDescription

        t0 = time.time()
        self.pc = pc = RTCPeerConnection()
        pc.addTrack(self.mic)

        @pc.on("track")
        def on_track(track) -> None:
            if track.kind == "audio":
                self._listen_task = asyncio.create_task(self._listen(track))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState == "connected":
                self._connected.set()
            elif pc.connectionState in ("failed", "closed"):
                self.remote_ended.set()

        await pc.setLocalDescription(await pc.createOffer())
        async with httpx.AsyncClient(base_url=self.base_url, timeout=timeout_s) as client:
            resp = await client.post(path, json={"sdp": pc.localDescription.sdp, "type": "offer"})
            resp.raise_for_status()
            body = resp.json()
        self.call_id = body["call_id"]
        await pc.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type=body["type"]))
        await asyncio.wait_for(self._connected.wait(), timeout_s)
        self.setup_s = time.time() - t0
        return self.call_id

    async def say(self, pcm48: bytes, label: str = "", then_silence_s: float = 0.0) -> SpokenLine:
        clip = self.mic.play(pcm48, label)
        # a clip plays in real time; far longer means the connection stopped pulling audio
        await asyncio.wait_for(asyncio.shield(clip.done), len(pcm48) / 2 / RATE + 5.0)
        line = SpokenLine(
            label=label,
            started_at=clip.started_at or time.time(),
            speech_end_at=(clip.started_at or time.time()) + voiced_end_offset_s(pcm48),
            frames=(len(pcm48) // 2 + 959) // 960,
        )
        self.lines.append(line)
        if then_silence_s > 0:
            await asyncio.sleep(then_silence_s)
        return line

    async def say_until(self, pcm48: bytes, cut_after_s: float, label: str = "") -> None:
        """Start a sentence and stop sending after `cut_after_s` (a caller who hangs up mid-sentence)."""
        self.mic.play(pcm48, label)
        await asyncio.sleep(cut_after_s)
        self.mic.interrupt()

    async def wait_for_reply(self, after: float, timeout_s: float = 8.0, settle_s: float = 0.8) -> HeardReply | None:
        """The first reply whose audio began after `after`, once it has finished (or None on timeout)."""
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            done = [r for r in self.replies if r.onset_at >= after and time.time() - r.ended_at >= settle_s]
            if done:
                return done[0]
            self._reply_event.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._reply_event.wait(), 0.1)
        return None

    def reply_onset_after(self, after: float) -> float | None:
        for r in self.replies:
            if r.onset_at >= after:
                return r.onset_at
        return None

    async def _listen(self, track) -> None:
        import av
        from aiortc.mediastreams import MediaStreamError

        resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
        current: HeardReply | None = None
        quiet = 0
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                break
            now = time.time()
            self.frames_received += 1
            pcm = np.concatenate([f.to_ndarray().reshape(-1) for f in resampler.resample(frame)] or [np.zeros(1)])
            x = pcm.astype(np.float64) / 32768.0
            level = float(20 * np.log10(max(np.sqrt(np.mean(x * x)), 1e-6)))
            if level > VOICED_DBFS:
                quiet = 0
                if current is None:
                    current = HeardReply(onset_at=now, ended_at=now, voiced_frames=0, peak_dbfs=level)
                    self.replies.append(current)
                current.voiced_frames += 1
                current.ended_at = now
                current.peak_dbfs = max(current.peak_dbfs, level)
            elif current is not None:
                quiet += 1
                if quiet >= 35:  # 700 ms of silence separates two replies (sentence pauses are shorter)
                    current = None
            self._reply_event.set()
        self.remote_ended.set()

    async def hang_up(self) -> None:
        if self.pc is not None:
            self.mic.interrupt()
            await asyncio.wait_for(self.pc.close(), 10)
        if self._listen_task is not None:
            self._listen_task.cancel()
            with contextlib.suppress(BaseException):
                await self._listen_task


CALLER_VOICE = ("en-us+m3", 150)  # espeak voice and speed the scripted caller speaks with


def synthesize_caller_speech(text: str, voice: str = CALLER_VOICE[0], speed_wpm: int = CALLER_VOICE[1], rate: int = RATE) -> bytes:
    """Mono s16 PCM of espeak-ng saying `text` at `rate` (48 kHz for WebRTC, 16 kHz for direct STT)."""
    import subprocess

    from pipeline.media.tts import parse_wav, resample_pcm16

    out = subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed_wpm), "--stdout", text], capture_output=True, check=True).stdout
    pcm, src = parse_wav(out)
    return resample_pcm16(pcm, src, rate)


def synthesize_paused_speech(clauses: list[str], pauses_s: list[float], voice: str = CALLER_VOICE[0],
                             speed_wpm: int = CALLER_VOICE[1], rate: int = RATE) -> bytes:
    """One utterance spoken in clauses with silences between them (a caller pausing mid-request):
    each clause from espeak-ng, joined by sox with `pauses_s[i]` of silence after clause i.

    espeak-ng's own leading/trailing silence is trimmed first (sox `silence`), so a pause is the
    silence asked for, not that plus espeak's padding."""
    import os
    import subprocess
    import tempfile

    from pipeline.media.tts import parse_wav, resample_pcm16

    if len(pauses_s) != len(clauses) - 1:
        raise ValueError(f"{len(clauses)} clauses need {len(clauses) - 1} pauses, got {len(pauses_s)}")
    with tempfile.TemporaryDirectory(prefix="voxwatch-speech-") as tmp:
        parts: list[str] = []
        for i, clause in enumerate(clauses):
            raw, trimmed = os.path.join(tmp, f"c{i}.wav"), os.path.join(tmp, f"t{i}.wav")
            subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed_wpm), "-w", raw, clause], check=True, capture_output=True)
            # trim leading and trailing silence (reverse, trim, reverse)
            subprocess.run(["sox", raw, trimmed, "silence", "1", "0.01", "0.5%", "reverse", "silence", "1", "0.01", "0.5%", "reverse"],
                           check=True, capture_output=True)
            parts.append(trimmed)
            if i < len(pauses_s):
                gap = os.path.join(tmp, f"p{i}.wav")
                subprocess.run(["sox", "-n", "-r", "22050", "-c", "1", "-b", "16", gap, "trim", "0", f"{pauses_s[i]:.3f}"],
                               check=True, capture_output=True)
                parts.append(gap)
        out = os.path.join(tmp, "utterance.wav")
        subprocess.run(["sox", *parts, out, "pad", "0.2", "0.3"], check=True, capture_output=True)
        with open(out, "rb") as f:
            pcm, src = parse_wav(f.read())
    return resample_pcm16(pcm, src, rate)
