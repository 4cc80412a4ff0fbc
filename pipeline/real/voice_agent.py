"""The voice agent: runs one WebRTC call from the edge through the pipeline's turn runner and speaks
the replies back on the same connection.

Per call it turns the edge's media events into turns: a pause starts Whisper early (prefetch) and,
once that transcript is back, sets how much silence ends the turn (adaptive endpointing,
`pipeline.media.endpoint`); an utterance becomes a turn (`Pipeline.run_turn`) whose reply is spoken
while it is written (a `ReplySpeaker` on the turn's `TurnWork`: LLM tokens become clauses, clauses
become audio on the call's track); caller speech over the reply stops it at once (barge-in: the edge
calls back on speech onset, the reply's synthesis and queued audio are dropped, the turn is recorded
as interrupted, with an `interruption` span and the barge-in metrics); the wait from the caller's end
of speech to the end of the turn is an `endpoint` span under the turn; a handoff is announced and the
call is handed to the human queue (the runner's handoff stage keeps transcript, intents and context).
It decides the call's outcome from what happened:

    handoff | completed | abandoned (hang-up mid-sentence) | silence (no speech at all)
    | utterance_too_long | failed (turns kept failing) | setup_failed (media never flowed)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from pipeline.engines import Utterance
from pipeline.media.edge import MediaCall, MediaEvent
from pipeline.media.endpoint import COMPLETE, INCOMPLETE, EndpointPolicy, final_pitch_ratio, judge_pause
from pipeline.media.speaker import ReplySpeaker
from pipeline.work import TurnWork, begin_turn_work, end_turn_work

log = logging.getLogger(__name__)

GREETING = "Hi, thanks for calling Northwind. How can I help?"
HANDOFF_LINE = "Let me connect you with a colleague. Please hold."
APOLOGY_LINE = "Sorry, something went wrong on my side. Could you say that again?"
TOO_LONG_LINE = "Sorry, I could only follow part of that. Could you tell me in a few words?"
SILENCE_LINE = "I can't hear you, so I will end the call. Goodbye."


@dataclass
class AgentOptions:
    greet: bool = True
    no_speech_timeout_s: float = 8.0  # caller silent this long (after the greeting): end the call
    setup_timeout_s: float = 10.0
    max_failed_turns: int = 3  # consecutive failed turns before the call is given up as failed
    hang_up_after_goodbye: bool = True
    # Adaptive endpointing: once the transcript of the speech before a pause is back, a complete
    # request ends the turn after a short silence, words left mid-clause lengthen the silence that
    # ends it (pipeline.media.endpoint); otherwise the segmenter's own silence applies.
    # Ending the call (goodbye) never ends early.
    early_endpoint: bool = True
    endpoint: EndpointPolicy = field(default_factory=EndpointPolicy)
    # Speak the reply while it is written (LLM tokens -> clauses -> audio) instead of once complete.
    stream_reply: bool = True
    # Caller speech over the agent's audio stops it (barge-in) at the VAD's speech onset, through the
    # edge's callback; False: when the conversation loop gets to the event (after a running turn).
    barge_in_at_onset: bool = True
    # Look the caller's history up in the CRM at call setup, not in the first turn that needs it.
    prefetch_customer: bool = True


@dataclass
class TurnTiming:
    """One turn's timeline on the agent's side (wall seconds), for the voice benchmark and tests."""

    call_id: str
    turn: int
    speech_end_at: float  # last speech audio arrived at the edge
    endpoint_at: float  # the segmenter decided the turn was over
    transcript_at: float = 0.0
    intent_at: float = 0.0
    reply_ready_at: float = 0.0
    first_audio_at: float = 0.0  # first reply frame handed to the outgoing track
    transcript: str = ""
    intent: str = ""
    intent_confidence: float = 0.0
    reply: str = ""
    reply_source: str = ""
    status: str = ""
    stage_s: dict[str, float] = field(default_factory=dict)
    prefetched: bool = False
    endpoint_judgement: str = ""  # complete | incomplete | unsure | "" (no pause decode in time)
    interrupted_at: float = 0.0  # the caller spoke over this reply and it was stopped
    heard_reply: str | None = None  # what of the reply had been heard then (None: not known)
    work: TurnWork | None = field(default=None, repr=False)  # when each stage's work really ran

    def latencies_ms(self) -> dict[str, float]:
        def ms(t: float) -> float:
            return (t - self.speech_end_at) * 1000.0 if t else float("nan")

        return {
            "endpoint": ms(self.endpoint_at),
            "transcript": ms(self.transcript_at),
            "intent": ms(self.intent_at),
            "reply_ready": ms(self.reply_ready_at),
            "first_audio": ms(self.first_audio_at),
        }


class VoiceAgent:
    """The conversation coroutine the edge runs for every call (`await agent(call)`)."""

    def __init__(self, pipeline, stt, tts, *, options: AgentOptions | None = None, media_metrics=None, region: str | None = None) -> None:
        self.pipeline = pipeline
        self.stt = stt
        self.tts = tts
        self.options = options or AgentOptions()
        self.metrics = media_metrics
        self.region = region
        self.timings: list[TurnTiming] = []
        self.records: dict[str, dict[str, Any]] = {}  # call id -> call record written at the end
        self.media_frames: dict[str, dict[str, Any]] = {}  # call id -> what the edge received
        self._fixed_lines: dict[str, bytes] = {}
        self._early: set[asyncio.Task] = set()
        self.early_endpoints = 0
        self.held_pauses = 0
        self._judged: dict[str, str] = {}  # call id -> judgement of its latest pause
        self._speaking: dict[str, tuple[ReplySpeaker | None, TurnTiming | None]] = {}  # call id -> reply playing
        self.interruptions: list[dict[str, Any]] = []  # barge-ins: call, turn, onset, stopped, reaction

    async def _line(self, text: str) -> bytes:
        """Fixed agent lines are synthesised once per process (they never change mid-call)."""
        if text not in self._fixed_lines:
            self._fixed_lines[text] = (await self.tts.synthesize(text)).audio or b""
        return self._fixed_lines[text]

    async def warm_up(self) -> None:
        for line in (GREETING, HANDOFF_LINE, APOLOGY_LINE, TOO_LONG_LINE, SILENCE_LINE):
            await self._line(line)

    async def __call__(self, call: MediaCall) -> None:
        pipe = self.pipeline
        ctx = pipe.start_call(region=self.region, channel="webrtc", call_id=call.call_id)
        outcome = ""
        try:
            outcome = await self._converse(call, ctx)
        except Exception:
            log.exception("call %s failed", call.call_id)
            outcome = "failed"
        finally:
            if self.metrics is not None:
                with contextlib.suppress(Exception):
                    await self.metrics.call_ended(call, self.region or ctx.origin_region)
            tc = call.transport
            self.media_frames[call.call_id] = {
                "frames_received": tc.frames_received, "frames_missing": tc.frames_missing,
                "first_pts": tc.first_pts, "audio_received_s": tc.audio_received_s, "setup_s": call.setup_s,
            }
            record = pipe.end_call(ctx, outcome or None)
            self.records[call.call_id] = record

    async def _converse(self, call: MediaCall, ctx) -> str:
        opts = self.options
        deadline = time.time() + opts.setup_timeout_s
        while call.connected_at is None and not call.ended.is_set():
            if time.time() > deadline:
                call.end_reason = "setup_timeout"
                return "setup_failed"
            await asyncio.sleep(0.02)
        if call.connected_at is None:
            return "setup_failed"
        if self.metrics is not None:
            self.metrics.call_connected(call, self.region or ctx.origin_region)
        if opts.barge_in_at_onset:
            call.on_speech_started = lambda onset_at: self._barge_in(call, ctx, onset_at)
        if opts.greet:
            call.reply.play(await self._line(GREETING), "greeting")
        if opts.prefetch_customer:
            task = asyncio.create_task(self._prefetch_customer(ctx))
            self._early.add(task)
            task.add_done_callback(self._early.discard)

        turn_no = 0
        pending: list = [None]  # the prefetch of the current pause
        failed_in_a_row = 0
        heard_speech = False
        too_long = False
        last_activity = time.time()
        while True:
            if call.reply.playing or call.segmenter.in_speech:
                # the silence that ends a call is counted from the end of the agent's audio
                last_activity = time.time()
                timeout = 0.25
            else:
                timeout = max(0.05, last_activity + opts.no_speech_timeout_s - time.time())
            try:
                ev: MediaEvent = await asyncio.wait_for(call.events.get(), timeout)
                log.debug("call %s event %s", call.call_id, ev.kind)
            except TimeoutError:
                log.debug("call %s quiet for %.1f s (playing=%s)", call.call_id, timeout, call.reply.playing)
                if call.reply.playing or call.segmenter.in_speech or time.time() - last_activity < opts.no_speech_timeout_s:
                    continue
                clip = call.reply.play(await self._line(SILENCE_LINE), "silence")
                await self._wait_played(call, clip)
                call.end_reason = "agent_ended_silence"
                return "silence" if not heard_speech else ("handoff" if ctx.handoff_reason else "completed")
            if ev.kind == "hangup":
                if ctx.handoff_reason:
                    return "handoff"
                if not heard_speech:
                    return "silence"
                return "utterance_too_long" if too_long else "completed"
            if ev.kind == "speech_started":
                heard_speech = True
                last_activity = time.time()
                if not opts.barge_in_at_onset:
                    self._barge_in(call, ctx, ev.speech_started_at or ev.at)
                continue
            if ev.kind == "pause":
                if ev.pcm:
                    fut = self.stt.prefetch(ev.pcm)
                    pending[0] = fut
                    if opts.early_endpoint and not ctx.handoff_reason:
                        if opts.endpoint.adaptive:
                            # the turn does not end on silence alone before the words are judged
                            call.segmenter.hold_pause(opts.endpoint.incomplete_silence_ms)
                        task = asyncio.create_task(self._adapt_endpoint(call, fut))
                        self._early.add(task)  # held until done (the loop keeps only weak references)
                        task.add_done_callback(self._early.discard)
                continue
            if ev.kind == "resumed":
                if pending[0] is not None:
                    pending[0].cancel()  # not started yet: the worker need not decode a stale pause
                    pending[0] = None
                continue
            if ev.kind == "utterance_cut_by_hangup":
                heard_speech = True
                await self._abandoned_turn(call, ctx, ev, turn_no + 1)
                return "abandoned"
            if ev.kind not in ("utterance", "utterance_too_long"):
                continue
            heard_speech = True
            if ctx.handoff_reason:
                continue  # already waiting for a human: the agent stays quiet
            turn_no += 1
            if ev.kind == "utterance_too_long":
                too_long = True
            result, timing = await self._turn(call, ctx, ev, turn_no)
            last_activity = time.time()
            if result.status == "error":
                failed_in_a_row += 1
                if failed_in_a_row >= opts.max_failed_turns:
                    call.end_reason = "agent_gave_up"
                    return "failed"
            else:
                failed_in_a_row = 0
            if ctx.handoff_reason:
                # the caller waits on the line for a human; this process only carries the audio
                continue
            if result.intent == "goodbye" and opts.hang_up_after_goodbye and call.reply.history:
                await self._wait_played(call, call.reply.history[-1])
                call.end_reason = "agent_said_goodbye"
                return "utterance_too_long" if too_long else "completed"

    async def _adapt_endpoint(self, call: MediaCall, fut) -> None:
        """Adaptive endpointing from the speculative transcript of the speech before this pause."""
        seg = call.segmenter
        policy = self.options.endpoint
        try:
            decoded = await asyncio.wrap_future(fut)
        except BaseException:  # failed or cancelled (the caller resumed): the default silence applies
            if seg.paused:
                seg.hold_pause(seg.options.end_silence_ms)
            return
        if not self._same_pause(seg, decoded):
            return  # the caller went on speaking: this decode is of an older pause
        text = decoded.text.strip()
        intent = await self.pipeline.engines.nlu.classify(text) if text else None
        pitch = None
        if policy.adaptive and policy.falling_pitch_ratio is not None and seg.pause_audio is not None:
            pitch = final_pitch_ratio(seg.pause_audio)
        verdict = judge_pause(text, decoded.audio_s, intent, policy, pitch)
        self._judged[call.call_id] = verdict
        if verdict == INCOMPLETE:
            if seg.hold_pause(policy.incomplete_silence_ms):
                self.held_pauses += 1
            return
        if verdict != COMPLETE:
            seg.hold_pause(seg.options.end_silence_ms)  # no evidence either way: the default silence
            return
        wait_ms = policy.complete_silence_ms - seg.silence_ms
        if wait_ms > 0:
            await asyncio.sleep(wait_ms / 1000.0)
        if not self._same_pause(seg, decoded):
            return
        ev = call.end_turn_now()
        if ev is not None:
            self.early_endpoints += 1
            call.events.put_nowait(ev)

    async def _prefetch_customer(self, ctx) -> None:
        """Look the caller up in the CRM while the greeting plays (as a contact centre does on caller
        ID), so the first turn that needs the customer's history does not wait for it."""
        from pipeline.engines import IntegrationAction

        with contextlib.suppress(Exception):
            result = await self.pipeline.call_integration(
                ctx.region, IntegrationAction("crm", "customer_history", ctx.call_id, {"customer_id": ctx.customer_id}))
            if result.ok and "customer_history" not in ctx.facts:
                ctx.facts["customer_history"] = result.data

    @staticmethod
    def _same_pause(seg, decoded) -> bool:
        pause_audio = seg.pause_audio
        return pause_audio is not None and abs(len(pause_audio) / 16000.0 - decoded.audio_s) <= 1e-3

    def _barge_in(self, call: MediaCall, ctx, onset_at: float) -> None:
        """The caller started speaking while the agent's audio plays: stop it now (edge callback)."""
        speaker, timing = self._speaking.get(call.call_id, (None, None))
        synthesising = speaker is not None and not speaker.cancelled and not speaker.done
        if ctx.handoff_reason or not (call.reply.playing or synthesising):
            return
        heard = speaker.heard_text() if speaker is not None and not speaker.cancelled else None
        unheard = speaker.cancel() if speaker is not None else 0
        call.reply.interrupt()
        stopped_at = time.time()
        region = self.region or ctx.origin_region
        reaction = max(0.0, stopped_at - onset_at)
        entry = {"call_id": call.call_id, "turn": timing.turn if timing else 0, "onset_at": onset_at,
                 "stopped_at": stopped_at, "reaction_s": reaction, "unheard_clauses": unheard}
        self.interruptions.append(entry)
        if self.metrics is not None:
            with contextlib.suppress(Exception):
                self.metrics.barge_in(region, reaction, cancelled_synthesis=synthesising)
        if timing is None:
            return  # a fixed line (the greeting) was interrupted: no turn to mark
        timing.interrupted_at = stopped_at
        timing.heard_reply = heard
        if timing.work is not None:
            timing.work.add_span("interruption", onset_at, stopped_at, "ok",
                                 {"reaction_ms": round(reaction * 1000, 1), "unheard_clauses": unheard})
        self._mark_interrupted(ctx, timing)

    @staticmethod
    def _mark_interrupted(ctx, timing: TurnTiming) -> None:
        """The turn's record says it was interrupted and keeps what the caller heard of the reply
        (the conversation history the LLM sees next turn is what was said, not what was meant)."""
        record = next((t for t in reversed(ctx.turns) if t.turn == timing.turn), None)
        if record is None or record.status not in ("ok", "interrupted"):
            return
        record.status = "interrupted"
        if not record.reply.endswith("[interrupted]"):
            said = timing.heard_reply if timing.heard_reply is not None else record.reply
            record.reply = f"{said} [interrupted]".strip()

    async def _turn(self, call: MediaCall, ctx, ev: MediaEvent, turn_no: int):
        pcm = ev.pcm or b""
        utt = Utterance(
            call_id=call.call_id,
            turn=turn_no,
            audio=pcm,
            duration_s=len(pcm) / 32000.0,
            ended_at=ev.speech_end_at or ev.at,
        )
        timing = TurnTiming(call.call_id, turn_no, speech_end_at=utt.ended_at, endpoint_at=ev.at)
        timing.endpoint_judgement = self._judged.pop(call.call_id, "")
        speaker = ReplySpeaker(call.reply, self.tts, f"turn-{turn_no}") if self.options.stream_reply else None
        work = timing.work = TurnWork(reply=speaker)
        self._speaking[call.call_id] = (speaker, timing)
        hits_before = self.stt.prefetch_hits
        cursor = time.time()
        _, token = begin_turn_work(work)
        try:
            result = await self.pipeline.run_turn(ctx, utt)
        finally:
            end_turn_work(token)
        done_at = time.time()
        if timing.endpoint_at > timing.speech_end_at:
            # the turn's first stretch is the wait for the end of the caller's turn (VAD silence, or the
            # speculative transcript's judgement); no stage works then but the decode, so say what it was
            work.add_span("endpoint", timing.speech_end_at, timing.endpoint_at, "ok",
                          {"judgement": timing.endpoint_judgement or "silence"})
        timing.prefetched = self.stt.prefetch_hits > hits_before
        # stage timings come back as the time the turn waited on each stage: rebuild the timeline
        for stage, took in result.stage_s.items():
            cursor += took
            if stage == "stt":
                timing.transcript_at = cursor
            elif stage == "nlu":
                timing.intent_at = cursor
        stt_work = work.of("stt")
        if stt_work:  # the transcript was ready when the decode finished, maybe before the turn began
            timing.transcript_at = max(n.end for n in stt_work)
        timing.reply_ready_at = done_at
        timing.transcript, timing.intent = result.transcript, result.intent
        timing.intent_confidence, timing.reply, timing.reply_source = result.intent_confidence, result.reply, result.reply_source
        timing.status, timing.stage_s = result.status, result.stage_s
        if self.metrics is not None:
            with contextlib.suppress(Exception):
                self.metrics.turn_media(call, self.stt.last_decoded, timing, self.region or ctx.origin_region)
        clip = None
        spoken_by_speaker = speaker is not None and bool(speaker.clips) and not speaker.cancelled
        if result.handoff_reason or result.status == "error":
            if speaker is not None:
                speaker.cancel()  # a reply begun before the turn failed is not finished
            clip = call.reply.play(await self._line(HANDOFF_LINE if result.handoff_reason else APOLOGY_LINE),
                                   "handoff" if result.handoff_reason else "apology")
        elif spoken_by_speaker:
            clip = speaker.first_clip
        elif timing.interrupted_at:
            clip = None  # the caller spoke over it before a word went out
        elif result.spoken is not None and result.spoken.audio:
            clip = call.reply.play(result.spoken.audio, f"turn-{turn_no}")
        elif ev.kind == "utterance_too_long":
            clip = call.reply.play(await self._line(TOO_LONG_LINE), "too_long")
        if clip is not None:
            await self._first_frame(clip)
            timing.first_audio_at = clip.started_at or 0.0
        if timing.interrupted_at:
            self._mark_interrupted(ctx, timing)  # interrupted before the runner had recorded the turn
        self.timings.append(timing)
        return result, timing

    async def _abandoned_turn(self, call: MediaCall, ctx, ev: MediaEvent, turn_no: int) -> None:
        """The caller hung up mid-sentence: keep what they said in the record, answer nobody."""
        from pipeline.context import TurnRecord

        text = ""
        if ev.pcm:
            with contextlib.suppress(Exception):
                text = (await self.stt.decode(ev.pcm)).text
        ctx.turns.append(TurnRecord(turn_no, text, "", "", 0.0, "abandoned", self.pipeline.controller.policy.level.name))

    @staticmethod
    async def _first_frame(clip, timeout_s: float = 2.0) -> None:
        deadline = time.time() + timeout_s
        while clip.started_at is None and time.time() < deadline and not (clip.done and clip.done.done()):
            await asyncio.sleep(0.002)

    @staticmethod
    async def _wait_played(call: MediaCall, clip, timeout_s: float = 20.0) -> None:
        if clip.done is None:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(clip.done), timeout_s)
