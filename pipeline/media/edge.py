"""The WebRTC edge: terminates callers' peer connections (aiortc), turns their Opus audio into 16 kHz
utterances, and plays the agent's replies back on the same connection.

Signalling is one HTTP exchange (the API's `POST /v1/calls` hands the offer to `WebRtcEdge.answer`).
Per call the edge keeps a `MediaCall`: the peer connection, the outgoing reply track, the utterance
segmenter and the transport counters (frames received against the RTP timestamps they carry, so a
lost frame shows as a gap; RTP packets received/lost and jitter from the receiver's statistics).
Everything a conversation needs arrives as `MediaEvent`s on the call's queue; the conversation (a
coroutine given to the edge) decides what to do with them.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np

from pipeline.media.tracks import PcmPlayoutTrack, frame_to_mono16k
from pipeline.media.vad import SAMPLE_RATE, SegmenterOptions, TurnEvent, UtteranceSegmenter

log = logging.getLogger(__name__)


class OfferRejected(ValueError):
    """The SDP offer cannot be answered; the message is the reason given to the caller (HTTP 400)."""


@dataclass
class MediaEvent:
    kind: str  # speech_started | pause | resumed | utterance | utterance_too_long | hangup
    at: float  # wall time the edge saw it
    pcm: bytes | None = None  # 16 kHz mono s16le utterance audio (pause / utterance)
    speech_end_at: float = 0.0  # wall time the last speech audio arrived: where turn latency starts
    speech_started_at: float = 0.0
    reason: str = ""  # hangup: remote_ended | connection_failed | closed_by_agent


@dataclass
class TransportCounters:
    frames_received: int = 0
    frames_missing: int = 0  # gaps in the RTP timestamps of decoded frames
    samples_16k: int = 0
    first_frame_at: float | None = None
    last_frame_at: float | None = None
    last_pts: int | None = None
    first_pts: int | None = None
    frame_samples: int = 960

    @property
    def audio_received_s(self) -> float:
        return self.samples_16k / SAMPLE_RATE


@dataclass
class MediaCall:
    call_id: str
    pc: object  # aiortc.RTCPeerConnection
    reply: PcmPlayoutTrack
    segmenter: UtteranceSegmenter
    offer_at: float
    answer_sdp: str = ""
    connected_at: float | None = None
    ended_at: float | None = None
    end_reason: str = ""
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    transport: TransportCounters = field(default_factory=TransportCounters)
    # (stream position in 16 kHz samples at the end of a frame, wall time it arrived)
    _arrival_pos: list[int] = field(default_factory=list)
    _arrival_at: list[float] = field(default_factory=list)
    _receiver_task: asyncio.Task | None = None
    _conversation_task: asyncio.Task | None = None
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    # called with the wall time the caller's speech began, as soon as the VAD hears it (before the
    # event reaches the conversation's queue): barge-in must not wait behind a turn in progress
    on_speech_started: Callable[[float], None] | None = None

    @property
    def setup_s(self) -> float | None:
        return None if self.connected_at is None else self.connected_at - self.offer_at

    def arrival_time(self, sample_pos: int) -> float:
        """Wall time at which the audio at this stream position reached the edge."""
        i = bisect.bisect_left(self._arrival_pos, sample_pos)
        if i >= len(self._arrival_at):
            return self._arrival_at[-1] if self._arrival_at else time.time()
        return self._arrival_at[i]

    def _note_arrival(self, end_pos: int, at: float) -> None:
        self._arrival_pos.append(end_pos)
        self._arrival_at.append(at)
        if len(self._arrival_pos) > 3000:  # keep a minute: utterances are cut at max_utterance_s anyway
            del self._arrival_pos[:1000]
            del self._arrival_at[:1000]

    async def transport_stats(self) -> dict:
        """Receiver-side RTP statistics: packets received/lost, interarrival jitter, peer's sent count."""
        out = {"packets_received": 0, "packets_lost": 0, "jitter_s": 0.0, "peer_packets_sent": 0}
        with contextlib.suppress(Exception):
            report = await self.pc.getStats()
            for stats in report.values():
                if stats.type == "inbound-rtp" and getattr(stats, "kind", "audio") == "audio":
                    out["packets_received"] += int(stats.packetsReceived or 0)
                    out["packets_lost"] += max(0, int(stats.packetsLost or 0))
                    out["jitter_s"] = max(out["jitter_s"], float(stats.jitter or 0.0))
                elif stats.type == "remote-outbound-rtp" and getattr(stats, "kind", "audio") == "audio":
                    out["peer_packets_sent"] += int(stats.packetsSent or 0)
        return out

    def end_turn_now(self) -> MediaEvent | None:
        """Close the caller's turn at the current pause (see UtteranceSegmenter.end_turn_now)."""
        ev = self.segmenter.end_turn_now()
        return None if ev is None else WebRtcEdge._event(self, ev, time.time())

    async def hang_up(self, reason: str = "closed_by_agent") -> None:
        if not self.end_reason:
            self.end_reason = reason
        self.reply.interrupt()
        with contextlib.suppress(Exception):
            await self.pc.close()


Conversation = Callable[[MediaCall], Awaitable[None]]


def validate_offer(sdp: str, sdp_type: str) -> None:
    """Reject what is plainly not a usable audio offer before any media resource is spent on it."""
    if sdp_type != "offer":
        raise OfferRejected(f"expected an SDP offer, got type {sdp_type!r}")
    if not isinstance(sdp, str) or not sdp.strip():
        raise OfferRejected("empty SDP offer")
    lines = [ln.strip() for ln in sdp.strip().splitlines()]
    if not lines[0].startswith("v=0"):
        raise OfferRejected("SDP must start with 'v=0'")
    media = [ln for ln in lines if ln.startswith("m=")]
    if not any(ln.startswith("m=audio") for ln in media):
        raise OfferRejected("SDP offer has no audio media section (m=audio)")
    if not any(ln.startswith("a=fingerprint:") for ln in lines):
        raise OfferRejected("SDP offer has no DTLS fingerprint (a=fingerprint)")
    if not any(ln.startswith("a=ice-ufrag:") for ln in lines):
        raise OfferRejected("SDP offer has no ICE credentials (a=ice-ufrag)")


class WebRtcEdge:
    """Answers offers and runs one conversation coroutine per connected call."""

    def __init__(
        self,
        conversation: Conversation,
        segmenter_options: SegmenterOptions | None = None,
        on_call_ended: Callable[[MediaCall], None] | None = None,
        max_calls: int = 32,
    ) -> None:
        self.conversation = conversation
        self.segmenter_options = segmenter_options or SegmenterOptions()
        self.on_call_ended = on_call_ended
        self.max_calls = max_calls
        self.calls: dict[str, MediaCall] = {}
        self.offers_rejected = 0

    async def answer(self, sdp: str, sdp_type: str = "offer") -> MediaCall:
        """Set the caller's offer, return the call with its answer SDP (ICE candidates included)."""
        from aiortc import RTCPeerConnection, RTCSessionDescription

        validate_offer(sdp, sdp_type)
        if len(self.calls) >= self.max_calls:
            raise OfferRejected(f"edge is at capacity ({self.max_calls} calls)")
        offer_at = time.time()
        pc = RTCPeerConnection()
        call = MediaCall(
            call_id=uuid.uuid4().hex[:16],
            pc=pc,
            reply=PcmPlayoutTrack(),
            segmenter=UtteranceSegmenter(self.segmenter_options),
            offer_at=offer_at,
        )

        @pc.on("track")
        def on_track(track) -> None:
            if track.kind == "audio" and call._receiver_task is None:
                call._receiver_task = asyncio.create_task(self._receive(call, track))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            state = pc.connectionState
            if state == "connected" and call.connected_at is None:
                call.connected_at = time.time()
            elif state in ("failed", "closed"):
                self._end(call, "connection_failed" if state == "failed" else "remote_ended")

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            audio = [t for t in pc.getTransceivers() if t.kind == "audio"]
            if not audio:
                raise OfferRejected("SDP offer has no audio transceiver")
            audio[0].sender.replaceTrack(call.reply)
            audio[0].direction = "sendrecv"
            await pc.setLocalDescription(await pc.createAnswer())
        except OfferRejected:
            self.offers_rejected += 1
            await pc.close()
            raise
        except Exception as exc:  # aiortc says why the SDP is unusable (ValueError and friends)
            self.offers_rejected += 1
            await pc.close()
            raise OfferRejected(f"cannot answer the offer: {exc}") from exc
        call.answer_sdp = pc.localDescription.sdp
        self.calls[call.call_id] = call
        call._conversation_task = asyncio.create_task(self._run_conversation(call))
        return call

    async def _run_conversation(self, call: MediaCall) -> None:
        try:
            await self.conversation(call)
        except Exception:
            log.exception("conversation of call %s crashed", call.call_id)
            call.end_reason = call.end_reason or "failed"
        finally:
            await call.hang_up(call.end_reason or "closed_by_agent")
            self._end(call, call.end_reason or "closed_by_agent")
            self.calls.pop(call.call_id, None)
            if self.on_call_ended is not None:
                self.on_call_ended(call)

    def _end(self, call: MediaCall, reason: str) -> None:
        if call.ended.is_set():
            return
        call.end_reason = call.end_reason or reason
        call.ended_at = time.time()
        call.ended.set()
        call.events.put_nowait(MediaEvent("hangup", at=call.ended_at, reason=call.end_reason))

    async def _receive(self, call: MediaCall, track) -> None:
        """Frames in -> 16 kHz mono -> VAD segmenter -> events; runs until the caller's track ends."""
        import av
        from aiortc.mediastreams import MediaStreamError

        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        tc = call.transport
        position = 0
        try:
            while True:
                try:
                    frame = await track.recv()
                except MediaStreamError:
                    break
                now = time.time()
                if tc.first_frame_at is None:
                    tc.first_frame_at = now
                    tc.frame_samples = frame.samples
                tc.last_frame_at = now
                tc.frames_received += 1
                if frame.pts is not None:
                    if tc.last_pts is not None and frame.pts > tc.last_pts + frame.samples:
                        tc.frames_missing += (frame.pts - tc.last_pts) // frame.samples - 1
                    if tc.first_pts is None:
                        tc.first_pts = frame.pts
                    tc.last_pts = frame.pts
                pcm = frame_to_mono16k(resampler, frame)
                if len(pcm) == 0:
                    continue
                position += len(pcm)
                tc.samples_16k = position
                call._note_arrival(position, now)
                for ev in call.segmenter.push(pcm.astype(np.float32) / 32768.0):
                    event = self._event(call, ev, now)
                    if event.kind == "speech_started" and call.on_speech_started is not None:
                        try:
                            call.on_speech_started(event.speech_started_at or now)
                        except Exception:
                            log.exception("speech-onset callback of call %s failed", call.call_id)
                    call.events.put_nowait(event)
        except Exception:
            log.exception("receive loop of call %s failed", call.call_id)
        finally:
            last = call.segmenter.flush()
            if last is not None:
                ev = self._event(call, last, time.time())
                ev.kind = "utterance_cut_by_hangup"
                call.events.put_nowait(ev)
            self._end(call, "remote_ended")

    @staticmethod
    def _event(call: MediaCall, ev, now: float) -> MediaEvent:
        pcm = None
        if ev.audio is not None:
            pcm = (np.clip(ev.audio, -1.0, 1.0) * 32767.0).astype(np.int16).tobytes()
        kind = {
            TurnEvent.SPEECH_STARTED: "speech_started",
            TurnEvent.PAUSE: "pause",
            TurnEvent.RESUMED: "resumed",
            TurnEvent.UTTERANCE_ENDED: "utterance",
            TurnEvent.UTTERANCE_TOO_LONG: "utterance_too_long",
        }[ev.kind]
        return MediaEvent(
            kind,
            at=now,
            pcm=pcm,
            speech_end_at=call.arrival_time(ev.speech_end_sample) if ev.speech_end_sample else 0.0,
            speech_started_at=call.arrival_time(ev.speech_start_sample) if ev.speech_start_sample else 0.0,
        )

    async def close(self) -> None:
        for call in list(self.calls.values()):
            await call.hang_up("server_shutdown")
        tasks = [c._conversation_task for c in self.calls.values() if c._conversation_task]
        if tasks:
            await asyncio.wait(tasks, timeout=5)
