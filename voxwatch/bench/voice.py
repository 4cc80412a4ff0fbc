"""Voice pipeline over real media: word error rate (file vs WebRTC) and per-turn latency percentiles."""

from __future__ import annotations

import asyncio
import math
import tempfile
import threading
import time

import numpy as np

# Spoken test utterances (text the caller says, the intent it should get). Short, as callers speak.
UTTERANCES: tuple[tuple[str, str], ...] = (
    ("hello there", "greeting"),
    ("where is my order", "order_status"),
    ("can you tell me the status of my order please", "order_status"),
    ("what time does the store close on sunday", "store_hours"),
    ("are you open on sundays", "store_hours"),
    ("i want to return a pair of shoes", "return_request"),
    ("what is your return policy", "return_policy"),
    ("how much is shipping", "shipping_info"),
    ("my credit card was charged twice for the same order", "billing"),
    ("do you have the blue running jacket in a size medium", "product_question"),
    ("please cancel my order", "cancel_order"),
    ("i need to update my phone number", "account_update"),
    ("i want to make a complaint", "complaint"),
    ("i need to talk to a real person", "talk_to_human"),
    ("thanks, that's all, goodbye", "goodbye"),
)


def add_arguments(parser) -> None:
    parser.add_argument("--rounds", type=int, default=2, help="times each utterance is spoken over WebRTC (default 2)")
    parser.add_argument("--end-silence-ms", type=int, default=320, help="silence that ends a turn (VAD endpointing)")
    parser.add_argument("--audio-context", choices=("tight", "full"), default="tight", help="Whisper window for the WebRTC run")


def _pct(values: list[float]) -> dict[str, float]:
    v = np.asarray([x for x in values if x == x], dtype=np.float64)
    if not v.size:
        return {"p50": math.nan, "p95": math.nan, "p99": math.nan, "n": 0}
    p50, p95, p99 = np.percentile(v, [50, 95, 99])
    return {"p50": round(float(p50), 1), "p95": round(float(p95), 1), "p99": round(float(p99), 1), "n": int(v.size)}


def _direct(texts: list[str]) -> dict:
    """Whisper on the synthesized file directly: our tight window against the stock 30 s window."""
    from pipeline.media.caller import synthesize_caller_speech
    from pipeline.media.stt import WhisperDecoder
    from pipeline.media.wer import corpus_wer

    audio = [np.frombuffer(synthesize_caller_speech(t, rate=16000), dtype=np.int16).astype(np.float32) / 32768.0 for t in texts]
    out = {}
    for mode in ("full", "tight"):
        dec = WhisperDecoder(mode)
        dec.decode(np.zeros(16000, dtype=np.float32))  # first call allocates
        results = [dec.decode(a) for a in audio]
        out[mode] = {
            "wer": round(corpus_wer(list(zip(texts, [r.text for r in results]))), 4),
            "decode_ms": _pct([r.decode_s * 1000 for r in results]),
            "real_time_factor_p50": round(float(np.median([r.real_time_factor for r in results])), 4),
            "transcripts": [r.text for r in results],
        }
    return out


class _Server:
    def __init__(self, settings) -> None:
        import uvicorn

        from pipeline.real.voice import VoicePipeline
        from telemetry.clock import WallClock
        from voxwatch.app import create_app
        from voxwatch.context import AppContext

        self.ctx = AppContext(clock=WallClock())
        self.voice = VoicePipeline(clock=self.ctx.clock, settings=settings)
        self.ctx.extras["voice"] = self.voice
        self.server = uvicorn.Server(uvicorn.Config(create_app(self.ctx), host="127.0.0.1", port=0, log_level="warning"))
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self.server.serve())

    def __enter__(self):
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{self.server.servers[0].sockets[0].getsockname()[1]}"
        asyncio.run_coroutine_threadsafe(self.voice.start(), self.loop).result(120)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


async def _webrtc_calls(url: str, script: list[tuple[str, str]], rounds: int, speech) -> list[dict]:
    """One call per round; the caller speaks every utterance and waits for the spoken answer."""
    from pipeline.media.caller import ScriptedCaller

    heard: list[dict] = []
    for _ in range(rounds):
        caller = ScriptedCaller(url)
        await caller.dial()
        await caller.wait_for_reply(after=0.0, timeout_s=10.0)  # the greeting
        for text, intent in script:
            if intent in ("talk_to_human", "goodbye"):
                continue  # these end the call; they are spoken in their own short calls below
            line = await caller.say(speech(text), text)
            reply = await caller.wait_for_reply(after=line.speech_end_at, timeout_s=20.0)
            heard.append({"call_id": caller.call_id, "text": text, "speech_end_at": line.speech_end_at,
                          "onset_at": reply.onset_at if reply else math.nan})
        await caller.hang_up()
        for text, intent in script:
            if intent not in ("talk_to_human", "goodbye"):
                continue
            caller = ScriptedCaller(url)
            await caller.dial()
            await caller.wait_for_reply(after=0.0, timeout_s=10.0)
            line = await caller.say(speech(text), text)
            reply = await caller.wait_for_reply(after=line.speech_end_at, timeout_s=10.0, settle_s=0.3)
            heard.append({"call_id": caller.call_id, "text": text, "speech_end_at": line.speech_end_at,
                          "onset_at": reply.onset_at if reply else math.nan})
            await caller.hang_up()
    return heard


def run(args) -> dict:
    from pipeline.media.caller import synthesize_caller_speech
    from pipeline.media.wer import corpus_wer
    from pipeline.real.voice import VoiceSettings

    rounds = getattr(args, "rounds", 2)
    end_silence_ms = getattr(args, "end_silence_ms", 320)
    audio_context = getattr(args, "audio_context", "tight")
    texts = [t for t, _ in UTTERANCES]
    t0 = time.perf_counter()
    direct = _direct(texts)

    cache: dict[str, bytes] = {}

    def speech(text: str) -> bytes:
        if text not in cache:
            cache[text] = synthesize_caller_speech(text)
        return cache[text]

    settings = VoiceSettings(audio_context=audio_context, end_silence_ms=end_silence_ms)
    with tempfile.TemporaryDirectory():
        with _Server(settings) as srv:
            heard = asyncio.run(_webrtc_calls(srv.url, list(UTTERANCES), rounds, speech))
            time.sleep(0.5)
            timings = list(srv.voice.agent.timings)
            stt = srv.voice.stt

    by_key = {(t.call_id, i): t for i, t in enumerate(timings)}
    turns = []
    for h in heard:
        match = next((t for (cid, _), t in by_key.items() if cid == h["call_id"] and t.speech_end_at <= h["onset_at"] + 1e-3
                      and not any(t is u["timing"] for u in turns)), None)
        if match is not None:
            turns.append({**h, "timing": match})
    intent_of = dict(UTTERANCES)
    wer_webrtc = corpus_wer([(u["text"], u["timing"].transcript) for u in turns])
    intents_ok = sum(1 for u in turns if u["timing"].intent == intent_of[u["text"]])
    lat = {k: [] for k in ("endpoint", "transcript", "intent", "reply_ready", "first_audio")}
    caller_heard = []
    for u in turns:
        for k, v in u["timing"].latencies_ms().items():
            lat[k].append(v)
        caller_heard.append((u["onset_at"] - u["speech_end_at"]) * 1000.0)
    after_endpoint = [(u["timing"].first_audio_at - u["timing"].endpoint_at) * 1000.0 for u in turns if u["timing"].first_audio_at]
    first_audio = _pct(lat["first_audio"])
    return {
        "utterances": len(UTTERANCES),
        "webrtc_turns": len(turns),
        "wer_direct_full_window": direct["full"]["wer"],
        "wer_direct": direct["tight"]["wer"],
        "wer_webrtc": round(wer_webrtc, 4),
        "intent_accuracy_webrtc": round(intents_ok / max(1, len(turns)), 4),
        "decode_ms_full_window": direct["full"]["decode_ms"],
        "decode_ms_tight_window": direct["tight"]["decode_ms"],
        "decode_speedup_ratio": round(direct["full"]["decode_ms"]["p50"] / max(1e-9, direct["tight"]["decode_ms"]["p50"]), 2),
        "latency_ms": {
            "speech_end_to_endpoint": _pct(lat["endpoint"]),
            "speech_end_to_transcript": _pct(lat["transcript"]),
            "speech_end_to_intent": _pct(lat["intent"]),
            "speech_end_to_reply_ready": _pct(lat["reply_ready"]),
            "speech_end_to_first_reply_audio": first_audio,
            "endpoint_to_first_reply_audio": _pct(after_endpoint),
            "caller_heard_reply_after_ms": _pct(caller_heard),
        },
        "prefetch_hit_ratio": round(stt.prefetch_hits / max(1, len(turns)), 3),
        "target_p50_ms": 300, "target_p95_ms": 600,
        "meets_target": bool(first_audio["p50"] <= 300 and first_audio["p95"] <= 600),
        "end_silence_ms": end_silence_ms,
        "audio_context": audio_context,
        "transcripts_webrtc": [[u["text"], u["timing"].transcript, u["timing"].intent] for u in turns[: len(UTTERANCES)]],
        "transcripts_direct": direct["tight"]["transcripts"],
        "wall_s": round(time.perf_counter() - t0, 1),
    }
