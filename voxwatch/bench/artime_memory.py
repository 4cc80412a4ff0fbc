"""ARTime bank memory over a long run: bytes per series of `ARTimeVectorBank` after many ticks,
with one outlier series that grows many categories, against the padded layout's bytes.

ARTime's categories grow without bound (the reference's too): a long-lived service bank must not
make every series hold room for the worst series' categories. The baseline is the padded layout
the bank had before (every series' weights padded to the largest count, doubling from 16),
computed in the same run from the same counts."""

from __future__ import annotations

import time

import numpy as np


def add_arguments(parser) -> None:
    parser.add_argument("--series", type=int, default=1000, help="series ticking together (default 1000)")
    parser.add_argument("--ticks", type=int, default=8000, help="ticks (default 8000)")


def _data(n_ticks: int, n_series: int, seed: int = 0) -> np.ndarray:
    """The detect bench's noise (lognormal levels, a few spikes), and series 0 a slow chirp: its
    windows keep changing shape, so it keeps opening categories (413 in 8,000 points)."""
    from voxwatch.bench.detect import _data as noise

    values = noise(n_ticks, n_series, seed)
    t = np.arange(n_ticks)
    values[:, 0] = np.sin(2 * np.pi * t * t / (n_ticks * 400.0))
    return values


def padded_bytes(counts: np.ndarray, dim2: int, start: int = 16) -> int:
    """What the padded layout held for these category counts: every series room for the largest
    count (capacity doubling from `start`), 2 dim weights and 3 per-category values each."""
    cap = start
    while cap < int(counts.max(initial=0)):
        cap *= 2
    return len(counts) * cap * (dim2 + 3) * 8


def run(args) -> dict:
    from anomaly.artime_bank import ARTimeVectorBank, warm_up

    n, ticks = args.series, args.ticks
    values = _data(ticks, n)
    warm_up()
    bank = ARTimeVectorBank(n)  # the service's ARTime settings (probation 600, margin 0.5)
    t0 = time.process_time()
    for i in range(ticks):
        bank.update(values[i])
    cpu_s = time.process_time() - t0
    art = bank.art
    counts = art.count
    weights = art.nbytes  # the category pool and the DVFA bank's per-series arrays
    padded = padded_bytes(counts, 2 * art.dim)
    total = bank.nbytes
    return {
        "series": n,
        "ticks": ticks,
        "categories_mean": round(float(counts.mean()), 1),
        "categories_max": int(counts.max()),
        "categories_outlier": int(counts[0]),
        "category_bytes_per_series": round(weights / n),
        "padded_category_bytes_per_series": round(padded / n),
        "category_bytes_ratio_padded_over_now": round(padded / weights, 2),
        "artime_bank_bytes_per_series": round(total / n),
        "bank_points_per_s": round(n * ticks / cpu_s),
    }
