"""Speaks one turn's reply while it is being written: text in, clauses to espeak-ng, audio out.

The LLM client hands every token to the turn's speaker (`TurnWork.reply`); a cached or templated
answer is handed over whole by the TTS stage. The speaker cuts the text into clauses (the first one
as short as a couple of words, so the first audio comes early; later ones at sentence ends), and one
task synthesises them in order, queueing each clip on the call's outgoing track the moment it is
ready, so the caller hears the first clause while the rest is still being generated and synthesised.

`cancel()` is barge-in: synthesis stops and the clips not yet played are dropped, at once.
Each synthesis is noted as TTS work of the turn (`pipeline.work`), so the TTS span covers it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time

from pipeline.engines import SpokenReply
from pipeline.media.tracks import Clip
from pipeline.work import note_work

# A clause ends at punctuation followed by a space (a token boundary: "$30.50" is not cut).
_FIRST_BREAK = re.compile(r"[,;:.?!](?=\s)")
_SENTENCE_BREAK = re.compile(r"[.?!;](?=\s)")
FIRST_CLAUSE_MIN_WORDS = 2
LONG_CLAUSE_CHARS = 90  # past this, a comma is a good enough place to cut


class ReplySpeaker:
    def __init__(self, track, tts, label: str = "reply") -> None:
        self.track = track
        self.tts = tts
        self.label = label
        self.text = ""  # everything fed so far
        self._pending = ""  # fed, not yet cut into a clause
        self._clauses: asyncio.Queue[str | None] = asyncio.Queue()
        self._task: asyncio.Task | None = None
        self._finished = False
        self.cancelled = False
        self.clips: list[Clip] = []
        self.clauses: list[str] = []
        self._pcm: list[bytes] = []
        self._first_ready_s = 0.0
        self._started = time.perf_counter()
        self.first_clip_queued = asyncio.Event()

    @property
    def fed(self) -> bool:
        return bool(self.text.strip())

    def feed(self, text: str) -> None:
        """More reply text (a token, or a whole answer)."""
        if self.cancelled or self._finished or not text:
            return
        self.text += text
        self._pending += text
        while True:
            clause = self._cut()
            if clause is None:
                break
            self._enqueue(clause)

    def finish(self) -> None:
        """No more text: whatever is left is the last clause."""
        if self._finished:
            return
        self._finished = True
        if self._pending.strip() and not self.cancelled:
            self._enqueue(self._pending.strip())
        self._pending = ""
        self._clauses.put_nowait(None)
        self._ensure_task()

    async def spoken(self) -> SpokenReply:
        """Wait until every clause is synthesised (and queued to play); the whole reply's audio."""
        self.finish()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._task)
        pcm = b"".join(self._pcm)
        rate = getattr(self.tts, "output_rate", 48_000)
        return SpokenReply(audio=pcm, sample_rate=rate, duration_s=len(pcm) / 2 / rate, first_audio_s=self._first_ready_s)

    def cancel(self) -> int:
        """Barge-in or a failed turn: stop synthesising, drop this reply's clips that have not finished
        playing. Returns how many clauses were never heard in full."""
        if self.cancelled:
            return 0
        self.cancelled = True
        self._finished = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
        # clips not played to the end, and clauses never synthesised
        unheard = sum(1 for c in self.clips if c.finished_at is None) + (len(self.clauses) - len(self.clips))
        self.track.drop(self.clips)
        return unheard

    def heard_text(self) -> str:
        """The reply as far as the caller heard it: clauses played to the end, then the one cut off
        (marked with a dash). Read it before `cancel()`."""
        parts: list[str] = []
        for clause, clip in zip(self.clauses, self.clips):
            if clip.finished_at is not None and clip.done is not None and clip.done.done() and clip.done.result():
                parts.append(clause)
            elif clip.started_at is not None:
                parts.append(clause + " -")
                break
            else:
                break
        return " ".join(parts)

    @property
    def done(self) -> bool:
        """Every clause is synthesised (or the reply was cancelled)."""
        return self.cancelled or (self._finished and (self._task is None or self._task.done()))

    @property
    def first_clip(self) -> Clip | None:
        return self.clips[0] if self.clips else None

    def _cut(self) -> str | None:
        text = self._pending
        if not self.clauses and not self._clauses.qsize():
            for m in _FIRST_BREAK.finditer(text):
                if len(text[: m.end()].split()) >= FIRST_CLAUSE_MIN_WORDS:
                    return self._take(m.end())
            return None
        m = _SENTENCE_BREAK.search(text)
        if m is None and len(text) > LONG_CLAUSE_CHARS:
            m = _FIRST_BREAK.search(text)
        return self._take(m.end()) if m is not None else None

    def _take(self, end: int) -> str | None:
        clause, self._pending = self._pending[:end].strip(), self._pending[end:]
        return clause or None

    def _enqueue(self, clause: str) -> None:
        self.clauses.append(clause)
        self._clauses.put_nowait(clause)
        self._ensure_task()

    def _ensure_task(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            clause = await self._clauses.get()
            if clause is None or self.cancelled:
                return
            started = time.time()
            pcm = await self.tts.synthesize_clause(clause)
            note_work("tts", started, time.time(), chars=len(clause))
            if self.cancelled:
                return
            if not self._pcm:
                self._first_ready_s = time.perf_counter() - self._started
            self._pcm.append(pcm)
            self.clips.append(self.track.play(pcm, f"{self.label}:{len(self.clips)}"))
            self.first_clip_queued.set()
