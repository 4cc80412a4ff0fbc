"""Voice-activity detection for a live call: Silero VAD (the model faster-whisper ships) run frame by
frame, and an utterance segmenter that turns speech probabilities into turn events.

faster-whisper's `SileroVADModel` scores a whole file at once and resets its state on every call;
a call needs the recurrent state carried from one 32 ms window to the next, so this module drives the
same ONNX model directly, one window at a time, keeping `h`/`c` and the 64-sample context per call.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

SAMPLE_RATE = 16_000
WINDOW = 512  # samples per Silero window at 16 kHz (32 ms)
CONTEXT = 64  # samples of the previous window the model sees


@functools.lru_cache(maxsize=1)
def _session():
    """One ONNX session per process, shared by every call (the model is stateless; state lives per call)."""
    import onnxruntime
    from faster_whisper.utils import get_assets_path

    opts = onnxruntime.SessionOptions()
    opts.inter_op_num_threads = 1
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 4
    path = os.path.join(get_assets_path(), "silero_vad_v6.onnx")
    return onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"], sess_options=opts)


class SileroStream:
    """Speech probability for each successive 32 ms window of one audio stream."""


    def __init__(self) -> None:
        self._session = _session()
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)

    def push(self, samples: np.ndarray) -> list[float]:
        """Feed float32 samples in [-1, 1]; returns one probability per completed window."""
        buf = np.concatenate([self._pending, samples.astype(np.float32, copy=False)])
        n = len(buf) // WINDOW
        probs: list[float] = []
        for i in range(n):
            window = buf[i * WINDOW : (i + 1) * WINDOW]
            x = np.concatenate([self._context, window])[None, :]
            out, self._h, self._c = self._session.run(None, {"input": x, "h": self._h, "c": self._c})
            self._context = window[-CONTEXT:]
            probs.append(float(np.asarray(out).reshape(-1)[0]))
        self._pending = buf[n * WINDOW :]
        return probs


class TurnEvent(StrEnum):
    SPEECH_STARTED = "speech_started"
    PAUSE = "pause"  # first silent window after speech: a final decode can start speculatively
    RESUMED = "resumed"  # speech came back before the end-of-turn silence elapsed
    UTTERANCE_ENDED = "utterance_ended"  # enough silence: the caller finished the turn
    UTTERANCE_TOO_LONG = "utterance_too_long"  # cut at the maximum utterance length


@dataclass
class SegmenterEvent:
    kind: TurnEvent
    audio: np.ndarray | None = None  # utterance audio (16 kHz float32) up to the end of speech
    speech_end_sample: int = 0  # stream position (samples) of the last speech window's end
    speech_start_sample: int = 0


@dataclass
class SegmenterOptions:
    threshold: float = 0.5
    neg_threshold: float = 0.35  # hysteresis: below this, a window is silence
    end_silence_ms: int = 320  # silence that ends a turn (endpointing)
    min_speech_ms: int = 96  # shorter bursts are clicks, not speech
    pre_roll_ms: int = 192  # audio kept before the first speech window (Whisper needs the onset)
    post_roll_ms: int = 160  # audio kept after the last speech window
    max_utterance_s: float = 15.0


@dataclass
class UtteranceSegmenter:
    """Turns a stream of 16 kHz samples into utterances, with a speculative 'pause' hint.

    The PAUSE event carries the audio up to the end of speech as soon as the first silent window is
    seen, so a decoder can start while the segmenter is still waiting out `end_silence_ms`; if speech
    resumes (RESUMED) the speculative result is discarded.
    """

    options: SegmenterOptions = field(default_factory=SegmenterOptions)

    def __post_init__(self) -> None:
        self._vad = SileroStream()
        self._history = np.zeros(0, dtype=np.float32)  # audio of the current utterance (+pre-roll)
        self._history_start = 0  # stream position of _history[0]
        self._position = 0  # stream position (samples) of the end of windows scored so far
        self._in_speech = False
        self._speech_start = 0
        self._speech_windows = 0
        self._last_speech_end = 0
        self._silent_windows = 0
        self._paused = False
        self._pause_audio: np.ndarray | None = None
        self._end_silence_override_ms: float | None = None  # this pause's endpointing (hold_pause)
        self.speech_probabilities: list[float] = []

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    @property
    def position(self) -> int:
        return self._position

    def push(self, samples: np.ndarray) -> list[SegmenterEvent]:
        o = self.options
        self._history = np.concatenate([self._history, samples])
        events: list[SegmenterEvent] = []
        for p in self._vad.push(samples):
            self.speech_probabilities.append(p)
            start = self._position
            self._position += WINDOW
            if not self._in_speech:
                if p >= o.threshold:
                    self._in_speech = True
                    self._speech_start = start
                    self._speech_windows = 1
                    self._last_speech_end = self._position
                    self._silent_windows = 0
                    self._paused = False
                    events.append(SegmenterEvent(TurnEvent.SPEECH_STARTED, speech_start_sample=start))
                else:
                    self._trim_pre_roll()
                continue
            speech = p >= o.neg_threshold if not self._paused else p >= o.threshold
            if speech:
                self._speech_windows += 1
                self._last_speech_end = self._position
                if self._paused:
                    self._paused = False
                    self._pause_audio = None
                    self._end_silence_override_ms = None
                    events.append(SegmenterEvent(TurnEvent.RESUMED))
                self._silent_windows = 0
            else:
                self._silent_windows += 1
                if not self._paused and self._speech_windows * WINDOW >= o.min_speech_ms * 16:
                    self._paused = True
                    # the same array is handed out again at end of turn, so a decode started now
                    # (keyed by the audio) is the one the turn uses
                    self._pause_audio = self._utterance_audio()
                    events.append(
                        SegmenterEvent(
                            TurnEvent.PAUSE,
                            audio=self._pause_audio,
                            speech_end_sample=self._last_speech_end,
                            speech_start_sample=self._speech_start,
                        )
                    )
            end_silence_ms = o.end_silence_ms if self._end_silence_override_ms is None else self._end_silence_override_ms
            if self._silent_windows * WINDOW >= end_silence_ms * 16:
                if self._speech_windows * WINDOW >= o.min_speech_ms * 16:
                    events.append(self._close(TurnEvent.UTTERANCE_ENDED))
                else:
                    self._reset_after_utterance()
            elif (self._position - self._speech_start) >= o.max_utterance_s * SAMPLE_RATE:
                events.append(self._close(TurnEvent.UTTERANCE_TOO_LONG))
        return events

    @property
    def paused(self) -> bool:
        """True between a PAUSE and the end of the turn (or RESUMED)."""
        return self._in_speech and self._paused and self._pause_audio is not None

    @property
    def silence_ms(self) -> float:
        """Silence since the last speech window of the current utterance."""
        return self._silent_windows * WINDOW / 16.0 if self._in_speech else 0.0

    @property
    def pause_audio(self) -> np.ndarray | None:
        return self._pause_audio if self.paused else None

    def hold_pause(self, end_silence_ms: float) -> bool:
        """Wait `end_silence_ms` of silence (instead of `options.end_silence_ms`) before this pause ends
        the turn: the caller stopped mid-clause. Applies to the current pause only; False when there
        is no pause to hold."""
        if not self.paused:
            return False
        self._end_silence_override_ms = float(end_silence_ms)
        return True

    def end_turn_now(self) -> SegmenterEvent | None:
        """End the turn at the current pause without waiting out `end_silence_ms` (the caller of this
        decided the turn is complete from what was said); None when there is no pause to end at."""
        if not self.paused:
            return None
        return self._close(TurnEvent.UTTERANCE_ENDED)

    def flush(self) -> SegmenterEvent | None:
        """End of stream (hang-up): the utterance in progress, if there is one worth decoding."""
        if self._in_speech and self._speech_windows * WINDOW >= self.options.min_speech_ms * 16:
            return self._close(TurnEvent.UTTERANCE_ENDED)
        return None

    def _utterance_audio(self) -> np.ndarray:
        o = self.options
        begin = max(self._speech_start - o.pre_roll_ms * 16, self._history_start) - self._history_start
        end = min(self._last_speech_end + o.post_roll_ms * 16, self._history_start + len(self._history))
        return self._history[begin : end - self._history_start].copy()

    def _close(self, kind: TurnEvent) -> SegmenterEvent:
        audio = self._pause_audio if (self._paused and self._pause_audio is not None) else None
        ev = SegmenterEvent(
            kind,
            audio=audio if audio is not None else self._utterance_audio(),
            speech_end_sample=self._last_speech_end,
            speech_start_sample=self._speech_start,
        )
        self._reset_after_utterance()
        return ev

    def _reset_after_utterance(self) -> None:
        self._in_speech = False
        self._paused = False
        self._end_silence_override_ms = None
        self._pause_audio = None
        self._speech_windows = 0
        self._silent_windows = 0
        self._trim_pre_roll()

    def _trim_pre_roll(self) -> None:
        keep = self.options.pre_roll_ms * 16 + WINDOW
        total_end = self._history_start + len(self._history)
        if len(self._history) > keep:
            cut = len(self._history) - keep
            self._history = self._history[cut:]
            self._history_start = total_end - len(self._history)
