"""Anomaly detection throughput: vectorised ticks over many series against the one-point streaming path.

Rates are per CPU second of this process (`time.process_time`), so a busy shared machine does not
skew them; wall-clock rates are reported beside them."""

from __future__ import annotations

import time

import numpy as np


def add_arguments(parser) -> None:
    parser.add_argument("--series", type=int, default=1000, help="series ticking together (default 1000)")
    parser.add_argument("--ticks", type=int, default=2000, help="ticks for the vectorised path (default 2000)")
    parser.add_argument("--streaming-points", type=int, default=5000,
                        help="points for the streaming path (default 5000)")


def _data(n_ticks: int, n_series: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.05, 2.0, n_series)
    values = base * np.exp(rng.normal(0, 0.1, (n_ticks, n_series)))
    values[rng.random((n_ticks, n_series)) < 0.001] *= 8  # a few spikes
    return values


def _level_pipeline(n_series: int):
    from anomaly.likelihood import LikelihoodGate
    from anomaly.robust_level import RobustLevel

    return RobustLevel(n_series), LikelihoodGate(n_series)


def _artime_mode(settings, values: np.ndarray, step: float, n: int, vectorised: bool) -> tuple[float, int]:
    """Points per CPU second of the level bank with ARTime beside it, findings stage included, and
    the vectorised ARTime bank's bytes per series at the end (0 for the loop)."""
    det, gate = settings.detector(n, artime_vectorised=vectorised), settings.gate(n)
    t0 = time.process_time()
    for i in range(len(values)):
        tick = det.update(step * i, values[i, :n])
        gate.update(step * i, tick.score, calibrated=tick.calibrated, episodic=tick.episodic)
    pps = n * len(values) / (time.process_time() - t0)
    return pps, round(det.artime.nbytes / n) if vectorised else 0


def run(args) -> dict:
    from anomaly.likelihood import LikelihoodGate
    from anomaly.saturation_trend import SaturationTrend

    n, ticks = args.series, args.ticks
    values = _data(ticks, n)
    step = 10.0

    det, gate = _level_pipeline(n)
    w0, t0 = time.perf_counter(), time.process_time()
    for i in range(ticks):
        gate.update(step * i, det.update(step * i, values[i]).score)
    level_s = time.process_time() - t0
    level_wall = time.perf_counter() - w0
    level_pps = n * ticks / level_s

    # the contextual novelty view beside the level detector, its warm-up replay included: 'quiet' is
    # the service's level bank (`AnomalySettings().level`), 'nab' the one-grid mode
    from anomaly.service import SERVICE_NOVELTY, LevelSettings

    novelty_pps = {}
    for name in ("nab", "quiet"):
        mode = LevelSettings.novelty_mode(name)
        ens, egate = mode.detector(n), mode.gate(n)
        t0 = time.process_time()
        for i in range(ticks):
            tick = ens.update(step * i, values[i])
            egate.update(step * i, tick.score, calibrated=tick.calibrated)
        novelty_pps[name] = n * ticks / (time.process_time() - t0)

    # ARTime beside the level detector (`LevelSettings(artime=True)`, off in the service), its
    # probation replay included: the vectorised bank over all the series, and the per-series loop
    # (the same scores) on a slice (a tenth of the series, at least 10: its cost per point does not
    # depend on how many series tick)
    from anomaly.artime_bank import warm_up

    warm_up()  # the bank's numba kernels compile once (cached on disk): not part of the rate
    art = LevelSettings(artime=True)
    artime_pps, artime_bytes = _artime_mode(art, values, step, n, vectorised=True)
    art_n = max(10, n // 10)
    artime_loop_pps, _ = _artime_mode(art, values, step, art_n, vectorised=False)

    sat_ticks = max(ticks // 4, 200)
    ratio = np.clip(values[:sat_ticks] / 4.0, 0, 1)
    sat, sgate = SaturationTrend(n, capacity=1.0, window=30), LikelihoodGate(n, mode="direct")
    t0 = time.process_time()
    for i in range(sat_ticks):
        sgate.update(step * i, sat.update(step * i, ratio[i]).score)
    sat_s = time.process_time() - t0
    sat_pps = n * sat_ticks / sat_s

    # the streaming path: one series, one point per call (the river-style interface)
    m = args.streaming_points
    one, one_gate = _level_pipeline(1)
    series = values[:m, 0] if m <= ticks else _data(m, 1)[:, 0]
    t0 = time.process_time()
    for i, x in enumerate(series):
        s = one.process_one(float(x), step * i)
        one_gate.update(step * i, [s])
    stream_s = time.process_time() - t0
    stream_us = 1e6 * stream_s / len(series)

    return {
        "series": n,
        "ticks": ticks,
        "vectorised_points_per_s": round(level_pps),
        "vectorised_us_per_tick": round(1e6 * level_s / ticks, 1),
        "vectorised_points_per_wall_s": round(n * ticks / level_wall),
        "saturation_points_per_s": round(sat_pps),
        "novelty_mode_points_per_s": round(novelty_pps["nab"]),
        "quiet_novelty_mode_points_per_s": round(novelty_pps["quiet"]),
        "quiet_novelty_mode_series_at_15s_step": int(novelty_pps["quiet"] * 15),
        "artime_mode_points_per_s": round(artime_pps),
        "artime_mode_series_at_15s_step": int(artime_pps * 15),
        "artime_bank_bytes_per_series": artime_bytes,  # long runs: `voxwatch bench artime_memory`
        "artime_loop_mode_points_per_s": round(artime_loop_pps),
        "artime_loop_mode_series": art_n,
        "speedup_artime_bank_over_loop": round(artime_pps / artime_loop_pps, 1),
        "streaming_us_per_point": round(stream_us, 2),
        "streaming_points_per_s": round(1e6 / stream_us),
        "speedup_vectorised_over_streaming": round(level_pps / (1e6 / stream_us), 1),
        # the live detector: the service's level bank (level view + quiet novelty view, findings stage)
        "service_points_per_s": round(novelty_pps[SERVICE_NOVELTY]),
        "target_points_per_s": 1_000_000,
        "meets_target": bool(novelty_pps[SERVICE_NOVELTY] >= 1_000_000),
    }
