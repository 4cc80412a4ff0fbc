"""When a turn's work really ran: engines note it here, the runner's stage spans are drawn from it.

The runner times a stage from the moment it calls the stage until the stage returns. In the real
media path that is not when the work happens: Whisper starts decoding at the caller's first pause,
before the turn exists, so the STT stage only collects a finished result; the order lookup is an HTTP
call made inside the response stage; a streamed reply is synthesised while the LLM is still sending
tokens. A span drawn from the runner's timer then says 0.2 ms for a 40 ms decode.

So an engine that knows when its work started and ended says so: `note_work("stt", start, end)`.
The notes go to the turn that is current in this task (a context variable the runner sets), and the
runner draws the stage's span over them: a stage with notes gets a span from its first note's start
to its last note's end; integration calls, which can happen during another stage (lookups inside the
response stage), get one span each. A stage without notes (the simulator's engines, the classifier,
a cache hit) keeps the runner's own timing. Times are wall-clock seconds (the runner's clock).

The voice agent also reads the notes (the turn's timeline) and adds spans after the turn has ended
(an interruption of the reply) through `TurnWork.add_span`.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from typing import Any

# Stages whose notes are drawn as one span per piece of work, wherever in the turn it happened.
PER_CALL_KINDS = frozenset({"integrations"})


@dataclass
class WorkNote:
    kind: str  # the stage name the work belongs to: stt | response | integrations | tts
    start: float
    end: float
    during: str = ""  # the stage that was running when it was noted ("" before the turn's stages)
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return max(0.0, self.end - self.start)


@dataclass
class TurnWork:
    """The notes of one turn, and (once the runner has started it) the turn's span to add spans to."""

    notes: list[WorkNote] = field(default_factory=list)
    stage: str = ""  # the stage running now
    trace: Any = None
    turn_span: Any = None
    # where a streamed reply goes while it is written (the voice agent's ReplySpeaker: feed(text),
    # finish()); None when the turn's reply is spoken only once it is complete
    reply: Any = None

    def note(self, kind: str, start: float, end: float, **attrs: Any) -> None:
        self.notes.append(WorkNote(kind, float(start), float(max(start, end)), self.stage, attrs))

    def of(self, kind: str) -> list[WorkNote]:
        return [n for n in self.notes if n.kind == kind]

    def spans(self, stage: str, start: float, duration_s: float) -> list[tuple[float, float, dict[str, Any]]]:
        """(start, duration, extra attributes) of the span(s) to record for `stage`, which the runner
        timed as starting at `start` and lasting `duration_s`."""
        notes = self.of(stage)
        if not notes:
            return [(start, duration_s, {})]
        if stage in PER_CALL_KINDS:
            return [(n.start, n.duration_s, {**n.attrs, "during": n.during or stage}) for n in notes]
        first = min(n.start for n in notes)
        last = max(n.end for n in notes)
        # the pieces' own figures, summed (Whisper's decode time within a span that includes its queue,
        # the characters synthesised): what a reader needs to tell work from waiting
        totals: dict[str, float] = {}
        for n in notes:
            for k, v in n.attrs.items():
                if isinstance(v, int | float) and not isinstance(v, bool):
                    totals[k] = round(totals.get(k, 0) + v, 4)
        return [(first, last - first, {"work_items": len(notes), **totals})]

    def add_span(self, name: str, start: float, end: float, status: str = "ok", attrs: dict | None = None) -> bool:
        """A span under this turn after the runner is done with it (False when there is no trace)."""
        if self.turn_span is None:
            return False
        self.turn_span.record_stage(name, start, max(start, end), attrs, error=None if status == "ok" else status)
        return True


_current: contextvars.ContextVar[TurnWork | None] = contextvars.ContextVar("voxwatch_turn_work", default=None)


def current_work() -> TurnWork | None:
    return _current.get()


def begin_turn_work(work: TurnWork | None = None) -> tuple[TurnWork, contextvars.Token]:
    """Make `work` (or a new one) the current turn's; reset with `end_turn_work(token)`."""
    work = work if work is not None else TurnWork()
    return work, _current.set(work)


def end_turn_work(token: contextvars.Token) -> None:
    _current.reset(token)


def note_work(kind: str, start: float, end: float, **attrs: Any) -> None:
    """Say when a piece of a stage's work ran; a no-op outside a turn."""
    work = _current.get()
    if work is not None:
        work.note(kind, start, end, **attrs)


def covered_s(intervals: list[tuple[float, float]]) -> float:
    """Seconds covered by the union of (start, end) intervals (overlaps counted once)."""
    total, cur_a, cur_b = 0.0, None, None
    for a, b in sorted(intervals):
        if cur_b is None or a > cur_b:
            if cur_b is not None:
                total += cur_b - cur_a
            cur_a, cur_b = a, b
        else:
            cur_b = max(cur_b, b)
    return total + ((cur_b - cur_a) if cur_b is not None else 0.0)


def span_problems(turn: tuple[float, float], stages: list[tuple[str, float, float]], decode_s: float | None = None,
                  slack_s: float = 0.002) -> list[str]:
    """What is structurally wrong with one turn's stage spans (empty when nothing): a stage span
    outside its turn span, stage spans covering more than the turn, or an stt span shorter than the
    decode it stands for (`decode_s`, the decoder's own timing)."""
    t_a, t_b = turn
    problems = [f"{name} span outside the turn ({a - t_a:+.4f} s, {b - t_b:+.4f} s)"
                for name, a, b in stages if a < t_a - slack_s or b > t_b + slack_s]
    covered = covered_s([(a, b) for _, a, b in stages])
    if covered > (t_b - t_a) + slack_s:
        problems.append(f"stage spans cover {covered:.4f} s of a {t_b - t_a:.4f} s turn")
    stt = [(a, b) for name, a, b in stages if name == "stt"]
    if decode_s is not None and stt and (stt[0][1] - stt[0][0]) < decode_s - slack_s:
        problems.append(f"stt span {stt[0][1] - stt[0][0]:.4f} s is shorter than its decode ({decode_s:.4f} s)")
    return problems
