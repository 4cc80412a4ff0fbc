"""The catalog metrics only real media produces: WebRTC transport (setup, frames, RTP packets, loss,
jitter), voice-activity detection (frames, utterances, endpointing wait) and Whisper's own figures
(real-time factor, inference time, time from end of speech to the final transcript).

What the turn runner already records through `pipeline.metrics.PipelineMetrics` (STT requests,
confidence, words, audio seconds; TTS; stage and turn latency; call outcomes and disconnects) is not
recorded again here: each measurement is recorded once. Per-call ids never become labels.
"""

from __future__ import annotations

from pipeline.media.stt import Decoded
from pipeline.metrics import CatalogRecorder

STT_MODEL = "whisper-tiny.en"


class MediaMetrics(CatalogRecorder):
    def __init__(self, telemetry, region: str = "primary", language: str = "en") -> None:
        super().__init__(telemetry)
        self.region = region
        self.language = language
        self._active = 0

    # ---- signalling
    def offer_answered(self, seconds: float) -> None:
        self.m("voxwatch_edge_signalling_requests_total", self.region, "offer", "2xx").inc()
        self.m("voxwatch_edge_signalling_seconds", self.region, "offer").observe(seconds)

    def offer_rejected(self, reason: str, seconds: float) -> None:
        self.m("voxwatch_edge_signalling_requests_total", self.region, "offer", "4xx").inc()
        self.m("voxwatch_edge_signalling_seconds", self.region, "offer").observe(seconds)
        self.m("voxwatch_edge_session_setup_failures_total", self.region, "sdp_invalid").inc()

    # ---- sessions
    def call_connected(self, call, region: str | None = None) -> None:
        region = region or self.region
        self._active += 1
        self.m("voxwatch_edge_sessions_active", region).set(self._active)
        if call.setup_s is not None:
            self.m("voxwatch_edge_session_setup_seconds", region).observe(call.setup_s)
        self.m("voxwatch_edge_sessions_by_codec_total", region, "opus").inc()
        self.m("voxwatch_edge_ice_connections_total", region, "host").inc()

    async def call_ended(self, call, region: str | None = None) -> None:
        region = region or self.region
        if call.connected_at is not None:
            self._active = max(0, self._active - 1)
            self.m("voxwatch_edge_sessions_active", region).set(self._active)
        tc = call.transport
        self.m("voxwatch_edge_audio_frames_received_total", region).inc(tc.frames_received)
        self.m("voxwatch_edge_audio_frames_sent_total", region).inc(call.reply.frames_sent)
        self.m("voxwatch_edge_concealed_audio_seconds_total", region).inc(tc.frames_missing * 0.020)
        stats = await call.transport_stats()
        received, lost = stats["packets_received"], stats["packets_lost"]
        self.m("voxwatch_edge_rtp_packets_received_total", region).inc(received)
        self.m("voxwatch_edge_rtp_packets_lost_total", region, "inbound").inc(lost)
        if received + lost > 0:
            self.m("voxwatch_edge_packet_loss_ratio", region).observe(lost / (received + lost))
        self.m("voxwatch_edge_jitter_seconds", region).observe(stats["jitter_s"])
        probs = call.segmenter.speech_probabilities
        self.m("voxwatch_vad_frames_processed_total", region).inc(len(probs))
        if probs:
            speech = sum(1 for p in probs if p >= call.segmenter.options.threshold)
            self.m("voxwatch_vad_speech_ratio", region).observe(speech / len(probs))

    # ---- turns
    def turn_media(self, call, decoded: Decoded | None, timing, region: str | None = None) -> None:
        region = region or self.region
        lang = self.language
        self.m("voxwatch_vad_speech_segments_total", region).inc()
        self.m("voxwatch_vad_endpointing_delay_seconds", region).observe(max(0.0, timing.endpoint_at - timing.speech_end_at))
        if decoded is not None:
            self.m("voxwatch_vad_utterance_seconds", region).observe(decoded.audio_s)
            self.m("voxwatch_vad_speech_seconds_total", region).inc(decoded.audio_s)
            self.m("voxwatch_stt_real_time_factor", lang).observe(decoded.real_time_factor)
            self.m("voxwatch_stt_inference_seconds", STT_MODEL).observe(decoded.decode_s)
        if timing.transcript_at:
            self.m("voxwatch_stt_final_latency_seconds", lang).observe(max(0.0, timing.transcript_at - timing.speech_end_at))

    def barge_in(self, region: str | None = None, reaction_s: float | None = None, cancelled_synthesis: bool = False) -> None:
        """The caller spoke over the agent and its audio was stopped (an interruption)."""
        region = region or self.region
        self.m("voxwatch_turn_barge_ins_total", region).inc()
        if reaction_s is not None:
            self.m("voxwatch_vad_barge_in_reaction_seconds", region).observe(reaction_s)
        if cancelled_synthesis:
            self.m("voxwatch_tts_cancelled_total", "barge_in").inc()

    def model_loaded(self, seconds: float) -> None:
        self.m("voxwatch_stt_model_load_seconds", STT_MODEL).observe(seconds)
