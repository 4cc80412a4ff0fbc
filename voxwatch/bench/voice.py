"""Voice pipeline over real media: word error rate (file vs WebRTC), per-turn latency percentiles,
false cuts on multi-clause utterances with pauses, and barge-in reaction.

The WebRTC part runs twice in the same process, on the same machine state: the baseline (the agent
before streaming replies and adaptive endpointing: fixed 320 ms endpointing with the punctuation rule,
the reply spoken once synthesised whole, barge-in handled when the conversation loop gets to it) and
the current agent; `ratios` divides current by baseline, so a busy shared machine shows in both.
"""

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


# Multi-clause requests spoken with a pause inside (clauses, the intent of the whole). Most pauses fall
# mid-clause (a hesitation); some follow a clause that is a request on its own (the hard case). The
# comma makes espeak-ng speak the clause with continuation intonation, as a caller going on does.
PAUSED_UTTERANCES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("i want to check the status of,", "my order from last week"), "order_status"),
    (("can you tell me,", "what time the store closes on sunday"), "store_hours"),
    (("i would like to return,", "a pair of shoes that do not fit"), "return_request"),
    (("i need to update,", "the phone number on my account"), "account_update"),
    (("i ordered a jacket last week and,", "it still has not arrived"), "order_status"),
    (("i was wondering if,", "you have the blue running jacket in medium"), "product_question"),
    (("hi, i am calling because,", "my order has not arrived yet"), "order_status"),
    (("my credit card was charged twice,", "for the same order"), "billing"),
    (("how much does shipping cost,", "for a package to canada"), "shipping_info"),
    (("please cancel my order,", "the one i placed yesterday"), "cancel_order"),
)
PAUSE_RANGE_S = (0.25, 0.45)  # within-turn pauses of fluent speech

# Questions with long answers, talked over by the caller this long after the reply begins.
BARGE_IN = (
    ("do you have the blue running jacket in a size medium", 0.5),
    ("what is your return policy", 0.8),
    ("what time does the store close on sunday", 0.6),
)
BARGE_IN_LINE = "sorry, where is my order"


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


class _Rows:
    """The pipeline's sink in the bench: rows kept in memory by table (no store to time)."""

    def __init__(self) -> None:
        self.tables: dict[str, list[dict]] = {}

    def write(self, table: str, rows) -> None:
        if isinstance(rows, dict):  # columns (the tracer's span batches): one dict per row
            names = list(rows)
            rows = [dict(zip(names, values, strict=True)) for values in zip(*(rows[n] for n in names), strict=True)]
        self.tables.setdefault(table, []).extend(rows)

    def write_columns(self, table: str, columns: dict) -> None:
        self.write(table, columns)


def _span_check(rows: list[dict], timings) -> dict:
    """pipeline.work.span_problems over every turn of the run: stage spans inside their turn, not
    covering more than it, the stt span at least as long as Whisper's own decode time."""
    from pipeline.work import span_problems

    by_turn: dict[tuple[str, int], list[dict]] = {}
    for r in rows:
        if r["turn"]:
            by_turn.setdefault((r["call_id"], r["turn"]), []).append(r)
    failures, checked = [], 0
    for t in timings:
        spans = by_turn.get((t.call_id, t.turn))
        if not spans:
            continue
        turn = next((s for s in spans if s["name"] == "turn"), None)
        if turn is None:
            continue
        t_a = turn["start_us"] / 1e6
        stages = [(s["name"], s["start_us"] / 1e6, s["start_us"] / 1e6 + s["duration_ms"] / 1000.0)
                  for s in spans if s["name"] not in ("turn", "interruption")]
        notes = t.work.of("stt") if t.work is not None else []
        decode_s = max((n.attrs.get("decode_s", 0.0) for n in notes), default=None)
        checked += 1
        problems = span_problems((t_a, t_a + turn["duration_ms"] / 1000.0), stages, decode_s)
        if problems:
            failures.append({"call_id": t.call_id, "turn": t.turn, "problems": problems})
    return {"turns_checked": checked, "turns_failed": len(failures), "failures": failures[:5]}


class _Server:
    def __init__(self, settings) -> None:
        import uvicorn

        from pipeline.real.voice import VoicePipeline
        from telemetry.clock import WallClock
        from voxwatch.app import create_app
        from voxwatch.context import AppContext

        self.ctx = AppContext(clock=WallClock())
        self.rows = _Rows()  # what the pipeline writes (call records, spans), kept for the span check
        self.voice = VoicePipeline(clock=self.ctx.clock, sink=self.rows, settings=settings)
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


def _paused_speech(seed: int = 15) -> list[tuple[tuple[str, ...], str, float, bytes]]:
    from pipeline.media.caller import synthesize_paused_speech

    rng = np.random.default_rng(seed)
    out = []
    for clauses, intent in PAUSED_UTTERANCES:
        pause = float(rng.uniform(*PAUSE_RANGE_S))
        out.append((clauses, intent, pause, synthesize_paused_speech(list(clauses), [pause] * (len(clauses) - 1))))
    return out


async def _paused_calls(url: str, paused, rounds: int) -> list[dict]:
    """Each multi-clause utterance in its own call: did a turn end while the caller was still speaking?"""
    from pipeline.media.caller import ScriptedCaller

    said = []
    for _ in range(rounds):
        for clauses, intent, pause, pcm in paused:
            caller = ScriptedCaller(url)
            await caller.dial()
            await caller.wait_for_reply(after=0.0, timeout_s=10.0)
            line = await caller.say(pcm, " ".join(clauses))
            await caller.wait_for_reply(after=line.speech_end_at, timeout_s=10.0, settle_s=0.3)
            await caller.hang_up()
            said.append({"call_id": caller.call_id, "text": " ".join(clauses), "intent": intent, "pause_s": pause,
                         "started_at": line.started_at, "speech_end_at": line.speech_end_at})
    return said


async def _barge_in_calls(url: str, speech, rounds: int) -> list[dict]:
    """The caller talks over a long reply; when did the reply audio stop, on both sides of the line."""
    from pipeline.media.caller import ScriptedCaller, voiced_start_offset_s

    out = []
    for _ in range(rounds):
        for text, after_s in BARGE_IN:
            caller = ScriptedCaller(url)
            await caller.dial()
            await caller.wait_for_reply(after=0.0, timeout_s=10.0)
            line = await caller.say(speech(text), text)
            deadline = time.time() + 10
            while caller.reply_onset_after(line.speech_end_at) is None and time.time() < deadline:
                await asyncio.sleep(0.005)
            onset = caller.reply_onset_after(line.speech_end_at)
            if onset is None:
                await caller.hang_up()
                continue
            await asyncio.sleep(max(0.0, onset + after_s - time.time()))
            pcm = speech(BARGE_IN_LINE)
            over = await caller.say(pcm, BARGE_IN_LINE)
            await caller.wait_for_reply(after=over.speech_end_at, timeout_s=10.0, settle_s=0.3)
            await caller.hang_up()
            reply = next((r for r in caller.replies if r.onset_at >= line.speech_end_at), None)
            out.append({"call_id": caller.call_id, "caller_onset_at": over.started_at + voiced_start_offset_s(pcm),
                        "heard_until": reply.ended_at if reply else math.nan})
    return out


def _webrtc(settings, rounds: int, speech, paused) -> dict:
    """One configuration of the agent: latency and WER turns, paused utterances, barge-ins."""
    with _Server(settings) as srv:
        heard = asyncio.run(_webrtc_calls(srv.url, list(UTTERANCES), rounds, speech))
        time.sleep(0.5)
        n_latency = len(srv.voice.agent.timings)
        said = asyncio.run(_paused_calls(srv.url, paused, rounds))
        time.sleep(0.5)
        barged = asyncio.run(_barge_in_calls(srv.url, speech, rounds))
        time.sleep(0.5)
        agent = srv.voice.agent
        timings = list(agent.timings)
        interruptions = list(agent.interruptions)
        tracing = getattr(srv.voice.pipeline, "tracing", None)
        if tracing is not None and hasattr(tracing, "flush"):
            tracing.flush()  # spans still batched in the tracer's processor
        span_check = _span_check(srv.rows.tables.get("spans", []), timings)
        stt = srv.voice.stt
        counters = {"early_endpoints": agent.early_endpoints, "held_pauses": agent.held_pauses,
                    "prefetch_hits": stt.prefetch_hits,
                    "clause_cache_hits": getattr(srv.voice.pipeline.engines.tts, "clause_cache_hits", 0)}
    return {"heard": heard, "timings": timings, "n_latency": n_latency, "said": said, "barged": barged,
            "interruptions": interruptions, "counters": counters, "span_check": span_check}


def _summarise(res: dict) -> dict:
    from pipeline.media.wer import corpus_wer, word_errors

    timings = res["timings"][: res["n_latency"]]
    turns = []
    used: set[int] = set()
    for h in res["heard"]:
        match = next((t for t in timings if t.call_id == h["call_id"] and id(t) not in used
                      and t.speech_end_at <= h["onset_at"] + 1e-3), None)
        if match is not None:
            used.add(id(match))
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

    # false cuts: a turn of that call ended (endpoint) before the caller's last word of the utterance
    cuts, paused_ok = [], 0
    for s in res["said"]:
        ts = [t for t in res["timings"] if t.call_id == s["call_id"]]
        cut = any(s["started_at"] <= t.endpoint_at < s["speech_end_at"] - 0.05 for t in ts)
        if cut:
            cuts.append(s["text"])
        elif ts and ts[0].intent == s["intent"]:
            paused_ok += 1
    by_call = {}
    for i in res["interruptions"]:
        by_call.setdefault(i["call_id"], i)
    stop_ms, heard_ms, agent_ms = [], [], []
    for b in res["barged"]:
        i = by_call.get(b["call_id"])
        if i is None:
            continue
        stop_ms.append((i["stopped_at"] - b["caller_onset_at"]) * 1000.0)
        agent_ms.append(i["reaction_s"] * 1000.0)
        heard_ms.append((b["heard_until"] - b["caller_onset_at"]) * 1000.0)
    return {
        "webrtc_turns": len(turns),
        "wer_webrtc": round(wer_webrtc, 4),
        "intent_accuracy_webrtc": round(intents_ok / max(1, len(turns)), 4),
        "latency_ms": {
            "speech_end_to_endpoint": _pct(lat["endpoint"]),
            "speech_end_to_transcript": _pct(lat["transcript"]),
            "speech_end_to_intent": _pct(lat["intent"]),
            "speech_end_to_reply_ready": _pct(lat["reply_ready"]),
            "speech_end_to_first_reply_audio": _pct(lat["first_audio"]),
            "endpoint_to_first_reply_audio": _pct(after_endpoint),
            "caller_heard_reply_after_ms": _pct(caller_heard),
        },
        "prefetch_hit_ratio": round(res["counters"]["prefetch_hits"] / max(1, len(res["timings"])), 3),
        "false_cuts": {"utterances": len(res["said"]), "cut": len(cuts), "ratio": round(len(cuts) / max(1, len(res["said"])), 4),
                       "cut_texts": cuts, "intent_right_when_not_cut": paused_ok},
        "barge_in_ms": {
            "caller_onset_to_agent_stopped": _pct(stop_ms),
            "agent_heard_onset_to_stopped": _pct(agent_ms),
            "caller_onset_to_last_reply_audio_heard": _pct(heard_ms),
            "talked_over": len(res["barged"]), "stopped": len(stop_ms),
        },
        "counters": res["counters"],
        "span_check": res["span_check"],
        "transcripts_webrtc": [[u["text"], u["timing"].transcript, u["timing"].intent] for u in turns[: len(UTTERANCES)]],
        # every turn, of every round, whose words came out wrong: where the WER comes from
        "misheard_webrtc": [[u["text"], u["timing"].transcript, word_errors(u["text"], u["timing"].transcript)[0]]
                            for u in turns if word_errors(u["text"], u["timing"].transcript)[0]],
    }


def _ratio(after: float, before: float) -> float:
    return round(after / before, 3) if before and before == before and after == after else math.nan


def run(args) -> dict:
    from pipeline.media.caller import synthesize_caller_speech
    from pipeline.media.endpoint import EndpointPolicy
    from pipeline.real.voice import VoiceSettings
    from pipeline.real.voice_agent import AgentOptions

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

    paused = _paused_speech()
    baseline_agent = AgentOptions(stream_reply=False, barge_in_at_onset=False, prefetch_customer=False,
                                  endpoint=EndpointPolicy(adaptive=False, complete_silence_ms=160.0))
    runs = {}
    with tempfile.TemporaryDirectory():
        for name, agent in (("baseline", baseline_agent), ("current", AgentOptions())):
            settings = VoiceSettings(audio_context=audio_context, end_silence_ms=end_silence_ms, agent=agent)
            runs[name] = _summarise(_webrtc(settings, rounds, speech, paused))
    cur, base = runs["current"], runs["baseline"]
    first_audio = cur["latency_ms"]["speech_end_to_first_reply_audio"]
    barge = cur["barge_in_ms"]["caller_onset_to_agent_stopped"]
    targets = {
        "first_reply_audio_p50_le_300ms": bool(first_audio["p50"] <= 300),
        "first_reply_audio_p95_le_600ms": bool(first_audio["p95"] <= 600),
        "wer_webrtc_le_0.08": bool(cur["wer_webrtc"] <= 0.08),
        "intent_accuracy_not_lower": bool(cur["intent_accuracy_webrtc"] >= base["intent_accuracy_webrtc"]),
        "false_cuts_le_5pct": bool(cur["false_cuts"]["ratio"] <= 0.05),
        "barge_in_p95_le_250ms": bool(barge["p95"] <= 250),
        "span_check_every_turn": bool(cur["span_check"]["turns_checked"] and not cur["span_check"]["turns_failed"]),
    }
    lat_c, lat_b = cur["latency_ms"], base["latency_ms"]
    return {
        "utterances": len(UTTERANCES),
        "paused_utterances": len(PAUSED_UTTERANCES),
        "rounds": rounds,
        "wer_direct_full_window": direct["full"]["wer"],
        "wer_direct": direct["tight"]["wer"],
        "decode_ms_full_window": direct["full"]["decode_ms"],
        "decode_ms_tight_window": direct["tight"]["decode_ms"],
        "decode_speedup_ratio": round(direct["full"]["decode_ms"]["p50"] / max(1e-9, direct["tight"]["decode_ms"]["p50"]), 2),
        # the current agent's figures at the top level (as before), the baseline's beside them
        **{k: cur[k] for k in ("webrtc_turns", "wer_webrtc", "intent_accuracy_webrtc", "latency_ms", "prefetch_hit_ratio",
                               "false_cuts", "barge_in_ms", "counters", "span_check", "misheard_webrtc")},
        "baseline": base,
        "ratios": {  # current / baseline, measured in this run
            "first_reply_audio_p50": _ratio(first_audio["p50"], lat_b["speech_end_to_first_reply_audio"]["p50"]),
            "first_reply_audio_p95": _ratio(first_audio["p95"], lat_b["speech_end_to_first_reply_audio"]["p95"]),
            "endpoint_p50": _ratio(lat_c["speech_end_to_endpoint"]["p50"], lat_b["speech_end_to_endpoint"]["p50"]),
            "caller_heard_reply_p50": _ratio(lat_c["caller_heard_reply_after_ms"]["p50"], lat_b["caller_heard_reply_after_ms"]["p50"]),
            "false_cut_ratio": _ratio(cur["false_cuts"]["ratio"], base["false_cuts"]["ratio"]),
            "barge_in_stop_p95": _ratio(barge["p95"], base["barge_in_ms"]["caller_onset_to_agent_stopped"]["p95"]),
        },
        "targets": targets,
        "target_p50_ms": 300, "target_p95_ms": 600,
        "meets_target": all(targets.values()),
        "end_silence_ms": end_silence_ms,
        "audio_context": audio_context,
        "transcripts_webrtc": cur["transcripts_webrtc"],
        "transcripts_direct": direct["tight"]["transcripts"],
        "wall_s": round(time.perf_counter() - t0, 1),
    }
