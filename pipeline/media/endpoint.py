"""Adaptive endpointing: how much silence ends the caller's turn, from what they have said so far.

At the caller's first pause the segmenter hands the audio to Whisper (the speculative decode). When
that transcript is back, `judge_pause` reads it:

- `complete`: a request the classifier is sure of, long enough to be a whole one, not ending on a
  word that announces more ("... and", "... to", "... my"): the turn ends after a short silence;
- `incomplete`: the words stop mid-clause (a trailing conjunction, preposition, article or filler),
  or the classifier cannot place them (its fallback): the silence that ends the turn is lengthened
  for this pause;
- `unsure`: neither; the segmenter's default silence applies.

Whisper writes a full stop after almost any fragment (measured: "i want to check the status of"
comes back as "I want to check most of the sun."), so punctuation is not evidence; words, the
classifier's confidence and the voice are. A statement that is finished ends on a falling pitch; a
speaker who is going on holds it level or raises it (continuation intonation). Measured on espeak-ng
(the bench's caller): the last 50 ms of voiced pitch against the utterance's median is 0.75-0.82 for
finished statements, 1.00-1.03 for the same words followed by a comma. So a request that reads
complete but does not fall is held like one left mid-clause (a rising yes/no question too: it
waits longer, but is not cut off), and so is speech the words leave undecided (a fragment the
classifier places with low confidence, "I want to check my status on" for "...the status of,")
when its voice is held level: a better recogniser turns gibberish fragments, which the classifier
rejects and which are held anyway, into half-plausible requests, so the voice must carry that case. `final_pitch_ratio` measures it from the pause audio (autocorrelation pitch, numpy).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
    complete_silence_ms: float = 96.0  # silence that ends a complete request (three VAD windows)
    incomplete_silence_ms: float = 640.0  # silence that ends a turn left mid-clause (and the most
    # a pause waits for its judgement: until the transcript is back, silence alone ends nothing)
    min_speech_s: float = 0.8  # shorter than this is not judged complete from words alone
    min_confidence: float = 0.6
    # False: the rule before adaptive endpointing (a sentence Whisper closed with .?! and the
    # classifier is sure of ends early; nothing lengthens a pause), kept as the benchmark's baseline
    adaptive: bool = True
    # a finished statement's final pitch is below this share of its median pitch (None: not used)
    falling_pitch_ratio: float | None = 0.9


def final_pitch_ratio(audio: np.ndarray, rate: int = 16_000, tail_s: float = 0.05) -> float | None:
    """Median pitch of the last `tail_s` of voiced audio over the utterance's median pitch, from a
    frame-wise autocorrelation (40 ms frames, 10 ms hop, 60-400 Hz). None when too little is voiced."""
    audio = np.asarray(audio, dtype=np.float32)
    win, hop = int(0.040 * rate), int(0.010 * rate)
    if len(audio) < win * 4:
        return None
    starts = np.arange(0, len(audio) - win, hop)
    frames = audio[starts[:, None] + np.arange(win)[None, :]]
    frames = frames - frames.mean(axis=1, keepdims=True)
    energy = np.sqrt(np.mean(frames * frames, axis=1))
    spec = np.fft.rfft(frames, n=2 * win, axis=1)
    ac = np.fft.irfft(spec * np.conj(spec), axis=1)[:, :win]
    lo, hi = rate // 400, rate // 60
    lag = lo + np.argmax(ac[:, lo:hi], axis=1)
    peak = ac[np.arange(len(lag)), lag]
    voiced = (energy >= max(0.02, 0.1 * float(energy.max()))) & (peak > 0.3 * np.maximum(ac[:, 0], 1e-9))
    f0 = rate / lag[voiced]
    if len(f0) < 10:
        return None
    tail = max(3, int(tail_s / 0.010))
    return float(np.median(f0[-tail:]) / np.median(f0))


def judge_pause(text: str, audio_s: float, intent, policy: EndpointPolicy | None = None,
                pitch_ratio: float | None = None) -> str:
    """`complete`, `incomplete` or `unsure` for the transcript of the speech before a pause.

    `intent` is the classifier's IntentResult for `text` (or None when it was not asked);
    `pitch_ratio` is `final_pitch_ratio` of the audio (None when unknown)."""
    policy = policy or EndpointPolicy()
    words = normalize_words(text).split()
    if not words:
        return UNSURE
    if not policy.adaptive:
        sure = intent is not None and not intent.fallback and intent.confidence >= policy.min_confidence
        ended = text.rstrip()[-1] in ".?!" and audio_s >= policy.min_speech_s
        return COMPLETE if sure and ended and intent.intent != "goodbye" else UNSURE
    if words[-1] in CONTINUATION_WORDS or text.rstrip().endswith((",", "...", "-")):
        return INCOMPLETE
    if len(words) >= 2 and words[-2] == "to":
        return INCOMPLETE  # an infinitive still waiting for its object: "i would like to return"
    if intent is None:
        return UNSURE
    if intent.fallback:
        return INCOMPLETE  # not a request the agent can place (yet): give the caller time to finish
    if intent.intent == "goodbye":
        return UNSURE  # ending the call is never rushed
    level = (policy.falling_pitch_ratio is not None and pitch_ratio is not None
             and pitch_ratio >= policy.falling_pitch_ratio)
    if intent.confidence >= policy.min_confidence and audio_s >= policy.min_speech_s:
        if level:
            # reads finished, but the voice says more is coming; a yes/no question that rises waits
            # too (cutting a caller off costs more than half a second of waiting)
            return INCOMPLETE
        return COMPLETE
    # the words cannot tell (a fragment the classifier half-places, too short to judge): the voice can
    return INCOMPLETE if level else UNSURE
