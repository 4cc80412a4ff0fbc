"""The detector interface every detector in this room follows (river-style).

A detector watches many series at once. `update(ts, values)` is the hot path: one tick of all
series, numpy arrays in and out, score then learn. `learn_one` / `score_one` / `process_one` are
the streaming form for one series (the first one, unless `series` is given), for tests, examples
and single-series callers. Scores are in [0, 1], higher is more anomalous; NaN means "no opinion"
(missing or bad input, still warming up) and never becomes a finding.

Bad input never crashes a detector and never moves its state: NaN, infinite values and
timestamps that do not move forward are skipped and counted by cause in `skipped`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

# Kinds of finding, as stored in anomaly_findings.kind.
SPIKE = "spike"
LEVEL_SHIFT = "level_shift"
SATURATION_TREND = "saturation_trend"
MULTIVARIATE = "multivariate"
NOVEL_PATTERN = "novel_pattern"  # a sequence of moves the series never made before (context novelty)


@dataclass
class TickScores:
    """What a detector says about one tick of all its series (arrays of length n_series)."""

    score: np.ndarray  # [0, 1], NaN = no opinion
    expected_low: np.ndarray  # what the detector expected the value to be, as a range
    expected_high: np.ndarray
    kind: np.ndarray  # object array of kind names ("" where the score is NaN)
    time_to_exhaustion_s: np.ndarray | None = None  # saturation forecasts only; NaN elsewhere
    confidence: np.ndarray | None = None
    # a score already on the findings scale (threshold 0.4 pages), passed through the findings stage
    # beside the likelihood of `score` (max of the two); None where the detector has none
    calibrated: np.ndarray | None = None
    # bool: the calibrated score comes from a detector that reports once per episode by itself
    # (ARTime's masking), so it pages through the findings stage's cooldown; None: nowhere
    episodic: np.ndarray | None = None


@dataclass
class InputGuard:
    """Screens a tick for bad input and keeps the counts of skipped points by cause."""

    n_series: int
    skipped: Counter = field(default_factory=Counter)
    last_ts: np.ndarray = field(init=False)

    gap_factor: float = 5.0  # a step this many times the usual one is counted as a gap

    def __post_init__(self) -> None:
        self.last_ts = np.full(self.n_series, -np.inf)
        self.step = np.full(self.n_series, np.nan)  # usual spacing between a series' points
        self.started = np.zeros(self.n_series, dtype=bool)

    def screen(self, ts: np.ndarray, values: np.ndarray, commit: bool = True) -> np.ndarray:
        """Mask of the points to use; counts every point left out. NaN values count as `missing`
        (a series that has not started or has stopped), infinities as `infinite`, timestamps that
        do not move forward as `out_of_order`. With commit=False (a peek) nothing is recorded."""
        missing = np.isnan(values)
        infinite = np.isinf(values)
        bad_ts = ~np.isfinite(ts) | (ts <= self.last_ts)
        ok = ~(missing | infinite | bad_ts)
        if not commit:
            return ok
        if not ok.all():
            # a series that has not started yet is not missing anything
            self.skipped["missing"] += int(np.count_nonzero(missing & self.started))
            self.skipped["infinite"] += int(np.count_nonzero(infinite))
            self.skipped["out_of_order"] += int(np.count_nonzero(bad_ts & ~missing & ~infinite))
        dt = ts - self.last_ts
        seen_before = ok & np.isfinite(dt)
        if seen_before.any():
            gaps = seen_before & (dt > self.gap_factor * self.step)
            self.skipped["gap"] += int(np.count_nonzero(gaps))  # counted, the point itself is used
            usual = np.where(np.isnan(self.step), dt, self.step + 0.05 * (np.minimum(dt, 10 * self.step) - self.step))
            self.step = np.where(seen_before, usual, self.step)
        self.started |= ok
        self.last_ts = np.where(ok, ts, self.last_ts)
        return ok


def as_tick(n_series: int, ts, values) -> tuple[np.ndarray, np.ndarray]:
    """Broadcast a tick's timestamps and values to float arrays of length n_series."""
    values = np.asarray(values, dtype=float).reshape(-1)
    if values.shape[0] != n_series:
        raise ValueError(f"tick has {values.shape[0]} values for {n_series} series")
    ts = np.broadcast_to(np.asarray(ts, dtype=float), (n_series,)).astype(float)
    return ts, values


class Detector(ABC):
    """Base of every detector: many series, scored one tick at a time."""

    name: str = "detector"

    def __init__(self, n_series: int = 1) -> None:
        self.n_series = int(n_series)
        self.guard = InputGuard(self.n_series)

    @property
    def skipped(self) -> Counter:
        """Points left out, by cause (missing, infinite, out_of_order), and gaps seen (gap)."""
        return self.guard.skipped

    @abstractmethod
    def update(self, ts, values) -> TickScores:
        """Score one tick of every series against what was learned so far, then learn from it."""

    @abstractmethod
    def peek(self, ts, values) -> TickScores:
        """Score one tick without learning from it."""

    # -- streaming form, one series -------------------------------------------------------------
    def _one(self, x: float, series: int) -> np.ndarray:
        values = np.full(self.n_series, np.nan)
        values[series] = x
        return values

    def score_one(self, x: float, t: float, series: int = 0) -> float:
        """Score one point of one series without learning it."""
        return float(self.peek(t, self._one(x, series)).score[series])

    def learn_one(self, x: float, t: float, series: int = 0) -> None:
        """Learn one point of one series."""
        self.update(t, self._one(x, series))

    def process_one(self, x: float, t: float, series: int = 0) -> float:
        """Score one point of one series, then learn it (the usual streaming step)."""
        return float(self.update(t, self._one(x, series)).score[series])
