"""Adaptive endpointing: how much silence ends the caller's turn, from what they have said so far.

At the caller's first pause the segmenter hands the audio to Whisper (the speculative decode). When
that transcript is back, `judge_pause` reads it:

- `complete`: a request the classifier is sure of, long enough to be a whole one, not ending on a
  word that announces more ("... and", "... to", "... my"): the turn ends after a short silence;
- `incomplete`: the words stop mid-clause (a trailing conjunction, preposition, article or filler),
  or nothing the classifier can place: the silence that ends the turn is lengthened for this pause;
- `unsure`: neither; the segmenter's default silence applies.

Whisper writes a full stop after almost any fragment (measured: "i want to check the status of"
comes back as "I want to check most of the sun."), so punctuation is not evidence; words and the
classifier's confidence are.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.media.stt import normalize_words

# Words a finished request does not end on (the caller is about to say more).
CONTINUATION_WORDS = frozenset(
    "and but or so because cause since if when while that which who whose than then plus "
    "to of for from with about at into by as the a an my your our their his her its "
    "these those some i i'm im we you could would should want wanted need needed like um uh er erm "
    "well just also".split()
)

COMPLETE, INCOMPLETE, UNSURE = "complete", "incomplete", "unsure"


@dataclass
class EndpointPolicy:
    complete_silence_ms: float = 160.0  # silence that ends a complete request
    incomplete_silence_ms: float = 640.0  # silence that ends a turn left mid-clause
    min_speech_s: float = 0.8  # shorter than this is not judged complete from words alone
    min_confidence: float = 0.6


def judge_pause(text: str, audio_s: float, intent, policy: EndpointPolicy | None = None) -> str:
    """`complete`, `incomplete` or `unsure` for the transcript of the speech before a pause.

    `intent` is the classifier's IntentResult for `text` (or None when it was not asked)."""
    policy = policy or EndpointPolicy()
    words = normalize_words(text).split()
    if not words:
        return UNSURE
    if words[-1] in CONTINUATION_WORDS or text.rstrip().endswith((",", "...", "-")):
        return INCOMPLETE
    if intent is None:
        return UNSURE
    if intent.fallback:
        return INCOMPLETE if len(words) < 4 else UNSURE
    if intent.intent == "goodbye":
        return UNSURE  # ending the call is never rushed
    if intent.confidence >= policy.min_confidence and audio_s >= policy.min_speech_s:
        return COMPLETE
    return UNSURE
