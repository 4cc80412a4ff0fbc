"""The simulator's stand-ins for what only a real media stack and its infrastructure measure: WebRTC
edge (ICE/DTLS setup, RTP loss, jitter, MOS), VAD, the STT/NLU/TTS worker pools and their autoscaler,
pool and cache internals. `SimulatedMetrics` is the pipeline's catalog recorder plus these models;
the simulator reports them once per simulated second (`sim_second`), like RTCP does, every
MODEL_INTERVAL_S. A real pipeline uses the plain `PipelineMetrics` and records what its engines
really measure (pipeline/media/metrics.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.degradation import DegradationLevel
from pipeline.metrics import MODEL_INTERVAL_S, PipelineMetrics


@dataclass
class SimulatorSecond:
    """What the simulator hands its recorder once per simulated second (nothing of its own state is
    read or reset by the recorder)."""

    pipeline: Any  # pipeline.runner.Pipeline: regions, pools, caches, controller
    regions: list[str]
    active_by_region: np.ndarray
    capacity_by_region: np.ndarray
    mean_hold_s: dict[str, float]  # typical connection hold per pool now (faults included)
    tick_wall_s: list[float]  # wall seconds of each tick since the last report
    speedup: float | None  # simulated seconds per wall second so far
    faults_active: list[tuple[str, bool]]
    events: dict[str, int]  # arrivals, turns, hang-ups, fault changes since the last report


class SimulatedMetrics(PipelineMetrics):
    """The catalog recorder with the simulated edge, VAD, worker, autoscaler, pool and cache models."""

    def __init__(self, telemetry, *, seed: int = 0) -> None:
        super().__init__(telemetry, seed=seed)
        self._region_was_up: dict[str, bool] = {}
        self._replicas: dict[tuple[str, str], int] = {}
        self._cache_lookups_seen: dict[str, int] = {}
        self._model_dt = MODEL_INTERVAL_S  # report the models on the first second too

    def sim_second(self, sec: SimulatorSecond, now: float) -> None:
        """The simulator's per-second gauges and the simulated edge, VAD and worker models."""
        dt = 1.0 if self._last_second is None else max(0.0, now - self._last_second)
        self._last_second = now
        regions = sec.regions
        pipe = sec.pipeline
        # media and worker models report like RTCP does: once per 5 s interval, covering the interval
        self._model_dt += dt
        report = self._model_dt >= MODEL_INTERVAL_S
        for i, region in enumerate(regions):
            n = int(sec.active_by_region[i])
            self.m("voxwatch_calls_active", region).set(n)
            self.m("voxwatch_calls_capacity", region).set(int(sec.capacity_by_region[i]))
            self.m("voxwatch_context_sessions", region).set(n)
            self.m("voxwatch_context_bytes", region).set(n * 6000)
            up = pipe.regions.is_up(region)
            recovered = up and self._region_was_up.get(region) is False
            self._region_was_up[region] = up
            if report or recovered:
                self._edge_second(region, n, self._model_dt)
                self._workers(region, n, self._model_dt, recovered, max_calls=int(sec.capacity_by_region[i]))
        self.flush_histograms(slow=report)
        if report:
            self.pool_model(pipe.pools, self._model_dt, sec.mean_hold_s)
            self.cache_model(pipe.caches, pipe.controller.level >= DegradationLevel.CACHED_RESPONSES, not all(r.up for r in pipe.regions.regions.values()))
            self._model_dt = 0.0
        self._business(regions, now)
        # simulator self-metrics
        if sec.tick_wall_s:
            self._many("voxwatch_simulator_tick_seconds", sec.tick_wall_s)
        if sec.speedup is not None:
            self.m("voxwatch_simulator_speedup_factor").set(sec.speedup)
        for kind, active in sec.faults_active:
            self.m("voxwatch_simulator_fault_active", kind).set(1.0 if active else 0.0)
        for kind, k in sec.events.items():
            self._inc("voxwatch_simulator_events_total", k, kind)

    def pool_model(self, pools, dt: float, mean_hold: dict[str, float]) -> None:
        """Per-second model quantities of the pools: hold times as the connector model draws them,
        connection churn by max lifetime, connect errors."""
        for p in pools:
            name = p.service
            h = mean_hold.get(name, 0.05)
            self._many("voxwatch_pool_hold_seconds", self.rng.lognormal(math.log(max(h, 1e-4)), 0.45, 16), name)
            key = ("churn", name)
            acc = self._expected.get(key, 0.0) + p.size / 1800.0 * dt  # 30 min max lifetime
            churn = int(acc)
            self._expected[key] = acc - churn
            self._inc("voxwatch_pool_connections_closed_total", churn, name, "max_lifetime")
            self._inc("voxwatch_pool_connections_opened_total", churn, name)
            self._inc("voxwatch_pool_connect_errors_total", int(self.rng.binomial(churn, 0.01)), name)

    def cache_model(self, caches, degraded: bool, region_down: bool = False) -> None:
        for c in caches:
            lookups = sum(c.hits.values()) + sum(c.misses.values())
            recent = lookups - self._cache_lookups_seen.get(c.name, 0)
            self._cache_lookups_seen[c.name] = lookups
            self._expect("voxwatch_cache_invalidations_total", 0.02, c.name, "update")
            if degraded:
                self._inc("voxwatch_cache_stale_served_total", int(self.rng.poisson(2)), c.name)
            self._inc("voxwatch_cache_errors_total", int(self.rng.binomial(recent, 2e-5)), c.name, "timeout")
            if region_down:
                # the failed region's cache replicas are unreachable until failover settles
                self._inc("voxwatch_cache_errors_total", max(1, int(self.rng.binomial(recent, 0.01))), c.name, "backend_down")

    def _call_end_models(self, region: str, n: int) -> None:
        # repeat callers: a share of callers rang within the last day (first-call resolution failed)
        self._inc("voxwatch_business_repeat_callers_total", int(self.rng.binomial(n, 0.08)), region)
        self._many("voxwatch_vad_speech_ratio", np.clip(self.rng.normal(0.38, 0.08, min(n, 50)), 0, 1), region)

    def _edge_setup(self, region: str, n: int) -> None:
        rng = self.rng
        self._many("voxwatch_call_setup_seconds", rng.lognormal(math.log(0.9), 0.3, min(n, 50)), region)
        k = min(n, 64)
        ice = rng.lognormal(math.log(0.25), 0.4, k)
        dtls = rng.lognormal(math.log(0.08), 0.3, k)
        self._many("voxwatch_edge_ice_setup_seconds", ice, region)
        self._many("voxwatch_edge_dtls_handshake_seconds", dtls, region)
        self._many("voxwatch_edge_session_setup_seconds", ice + dtls + 0.05, region)
        relay = int(rng.binomial(n, 0.08))
        srflx = int(rng.binomial(n - relay, 0.6))
        self._inc("voxwatch_edge_ice_connections_total", relay, region, "relay")
        self._inc("voxwatch_edge_ice_connections_total", srflx, region, "srflx")
        self._inc("voxwatch_edge_ice_connections_total", n - relay - srflx, region, "host")
        self._inc("voxwatch_edge_sessions_by_codec_total", n, region, "opus")
        self._expect("voxwatch_edge_one_way_audio_total", n * 0.002, region)  # per session, NAT/firewall trouble
        self._inc("voxwatch_edge_signalling_requests_total", n, region, "offer", "2xx")
        self._inc("voxwatch_edge_signalling_requests_total", 2 * n, region, "candidate", "2xx")
        self._many("voxwatch_edge_signalling_seconds", rng.lognormal(math.log(0.03), 0.4, k), region, "offer")
        fails = int(rng.binomial(n, 0.004))
        self._inc("voxwatch_edge_session_setup_failures_total", fails, region, "ice_failed")
        self._inc("voxwatch_edge_signalling_requests_total", fails, region, "offer", "4xx")

    def _edge_second(self, region: str, n: int, dt: float) -> None:
        if n <= 0 or dt <= 0:
            return
        rng = self.rng
        self.m("voxwatch_edge_sessions_active", region).set(n)
        self.m("voxwatch_edge_relay_sessions_active", region).set(int(n * 0.08))
        self.m("voxwatch_edge_udp_ports_in_use", region).set(n)
        self.m("voxwatch_edge_udp_ports_capacity", region).set(40_000)
        frames = 50.0 * n * dt
        loss = float(np.clip(rng.lognormal(math.log(0.004), 0.5), 0, 0.2))
        lost = int(frames * loss)
        self._inc("voxwatch_edge_audio_frames_received_total", frames, region)
        self._inc("voxwatch_edge_audio_frames_sent_total", frames, region)
        self._inc("voxwatch_edge_rtp_packets_received_total", frames - lost, region)
        self._inc("voxwatch_edge_rtp_packets_sent_total", frames, region)
        self._inc("voxwatch_edge_rtp_packets_lost_total", lost, region, "inbound")
        self._inc("voxwatch_edge_rtp_packets_lost_total", int(frames * loss * 0.8), region, "outbound")
        self._inc("voxwatch_edge_received_bytes_total", (frames - lost) * 92, region)
        self._inc("voxwatch_edge_sent_bytes_total", frames * 92, region)
        self._inc("voxwatch_edge_nacks_sent_total", lost // 2, region)
        self._inc("voxwatch_edge_fec_recovered_packets_total", lost // 3, region)
        self._inc("voxwatch_edge_out_of_order_packets_total", int(frames * 0.001), region)
        self._inc("voxwatch_edge_jitter_buffer_discards_total", int(frames * 0.0005), region)
        self._inc("voxwatch_edge_concealed_audio_seconds_total", lost * 0.02, region)
        self._expect("voxwatch_edge_playout_underruns_total", n * dt * 0.0005, region)
        self._expect("voxwatch_edge_ice_restarts_total", n * dt * 5e-5, region)
        self._expect("voxwatch_edge_decode_errors_total", n * dt * 1e-4, region, "opus")
        self._expect("voxwatch_edge_dtmf_events_total", n * dt * 2e-4, region)
        k = 32
        rtt = rng.lognormal(math.log(0.045), 0.35, k)
        jitter = rng.lognormal(math.log(0.006), 0.5, k)
        self._many("voxwatch_edge_packet_loss_ratio", np.clip(rng.lognormal(math.log(loss + 1e-4), 0.6, k), 0, 1), region)
        self._many("voxwatch_edge_jitter_seconds", jitter, region)
        self._many("voxwatch_edge_jitter_buffer_delay_seconds", 0.02 + 2 * jitter, region)
        self._many("voxwatch_edge_round_trip_time_seconds", rtt, region)
        self._inc("voxwatch_edge_rtt_budget_exceeded_total", int((rtt > 0.1).sum()), region)
        self._many("voxwatch_edge_audio_level_dbfs", rng.normal(-26, 6, k), region)
        self._many("voxwatch_edge_frame_processing_seconds", rng.lognormal(math.log(0.0002), 0.3, k), region)
        self._many("voxwatch_edge_playout_buffer_seconds", rng.lognormal(math.log(0.06), 0.3, k), region)
        mos = np.clip(4.4 - 60 * loss - 8 * jitter - 2 * np.maximum(rtt - 0.15, 0), 1, 5)
        self._many("voxwatch_edge_mos_estimate", mos, region)
        self._inc("voxwatch_vad_frames_processed_total", frames, region)
        self._many("voxwatch_vad_processing_seconds", rng.lognormal(math.log(0.0003), 0.3, 16), region)
        self._many("voxwatch_vad_noise_floor_dbfs", rng.normal(-58, 5, 16), region)

    def _vad_turns(self, region: str, n: int) -> None:
        if n <= 0:
            return
        rng = self.rng
        k = min(n, 128)
        utter = rng.lognormal(math.log(2.6), 0.35, k)
        self._inc("voxwatch_vad_speech_segments_total", n, region)
        self._inc("voxwatch_vad_speech_seconds_total", float(utter.mean() * n), region)
        self._many("voxwatch_vad_utterance_seconds", utter, region)
        self._many("voxwatch_vad_endpointing_delay_seconds", rng.lognormal(math.log(0.2), 0.2, k), region)
        self._inc("voxwatch_vad_false_starts_total", int(rng.binomial(n, 0.03)), region)
        self._many("voxwatch_vad_barge_in_reaction_seconds", rng.lognormal(math.log(0.12), 0.3, max(1, k // 25)), region)

    def _workers(self, region: str, calls: int, dt: float = 1.0, recovered: bool = False,
                 max_calls: int | None = None) -> None:
        """Worker pools behind STT, NLU and TTS: busy workers by Little's law from the call load."""
        rng = self.rng
        turns_per_s = calls / 9.0
        for pool, service_s, per_worker in (("stt", 0.06, 8), ("nlu", 0.007, 50), ("tts", 0.05, 8), ("media", 0.02, 400), ("actions", 0.05, 20)):
            busy = turns_per_s * service_s
            capacity = max(4, int(math.ceil(busy * 1.6 / per_worker)) * per_worker)
            # the autoscaler's max replicas: sized for the region's whole call capacity
            ceiling = capacity if max_calls is None else max(capacity, int(math.ceil(max_calls / 9.0 * service_s * 1.6 / per_worker)) * per_worker)
            self.m("voxwatch_worker_capacity_ceiling", pool).set(ceiling)
            util = busy / capacity
            queue = max(0.0, (util - 0.85) * capacity)
            self.m("voxwatch_worker_busy", pool).set(busy)
            self.m("voxwatch_worker_capacity", pool).set(capacity)
            self.m("voxwatch_worker_utilization_ratio", pool).set(util)
            self.m("voxwatch_worker_queue_depth", pool).set(queue)
            self.m("voxwatch_worker_queue_capacity", pool).set(capacity * 4)
            self.m("voxwatch_worker_queue_capacity_ceiling", pool).set(ceiling * 4)
            self._many("voxwatch_worker_queue_wait_seconds", rng.exponential(0.002 + queue * 0.001, 8), pool)
            self._many("voxwatch_worker_task_seconds", rng.lognormal(math.log(service_s), 0.3, 8), pool)
            tasks = int(turns_per_s * dt)
            self._inc("voxwatch_worker_tasks_total", tasks, pool, "ok")
            self._inc("voxwatch_worker_tasks_total", int(rng.binomial(tasks, 0.001)), pool, "error")
            self._inc("voxwatch_worker_queue_rejections_total", int(rng.binomial(tasks, min(1.0, 0.0005 + max(0.0, util - 0.95)))), pool)
            self._expect("voxwatch_worker_restarts_total", 0.005 * dt / 5.0, pool, "crash")
            # the autoscaler follows the load: a change in desired replicas is a scale event
            replicas = capacity // per_worker
            before = self._replicas.get((region, pool))
            self._replicas[(region, pool)] = replicas
            self.m("voxwatch_autoscaler_desired_replicas", pool).set(replicas)
            self.m("voxwatch_autoscaler_ready_replicas", pool).set(replicas if before is None else min(replicas, before))
            if before is not None and replicas != before:
                direction = "up" if replicas > before else "down"
                self.m("voxwatch_autoscaler_scale_events_total", pool, direction).inc()
                if direction == "up":
                    self.m("voxwatch_autoscaler_scale_up_seconds", pool).observe(float(rng.lognormal(math.log(20), 0.3)))
            if recovered:
                # a region coming back restarts its workers (they failed their health checks)
                self._inc("voxwatch_worker_restarts_total", replicas, pool, "health_check")
            if pool in ("stt", "tts"):
                self.m(f"voxwatch_{pool}_streams_active", region).set(busy)
                self.m(f"voxwatch_{pool}_streams_capacity", region).set(capacity)
                self.m(f"voxwatch_{pool}_streams_capacity_ceiling", region).set(ceiling)
