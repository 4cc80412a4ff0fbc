"""Turns raw detector scores into sparse, trustworthy findings: every false one costs an on-call
engineer, so a score alone never pages.

Per series, the recent raw scores (a short EWMA) are compared with their own long history (EWMA
mean and variance): how unlikely is it that a series that usually scores like *this* scores like
*that* now? The tail probability p becomes a score on a log scale, log(p) / log(1e-10) in [0, 1]
(the anomaly likelihood of Numenta's detectors). A finding fires when that score reaches
`threshold` and the series is not cooling down after its previous finding.

>>> import numpy as np
>>> gate = LikelihoodGate(n_series=1, threshold=0.5, cooldown_s=600, warmup=50)
>>> rng = np.random.default_rng(1)
>>> fired = [gate.update(60.0 * i, [rng.uniform(0, 0.2)]).fired[0] for i in range(400)]
>>> any(fired)
False
>>> bool(gate.update(60.0 * 400, [1.0]).fired[0])
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import log_ndtr

from anomaly.base import as_tick

_LOG_1E10 = math.log(1e-10)


@dataclass
class GateResult:
    score: np.ndarray  # likelihood score in [0, 1]; NaN where the raw score was NaN or warming up
    fired: np.ndarray  # bool: a finding is due now
    cooling: np.ndarray  # bool: above threshold but held back by the cooldown


class LikelihoodGate:
    """The findings stage. One instance per detector, across all of that detector's series."""

    def __init__(
        self,
        n_series: int = 1,
        *,
        short: int = 5,  # points averaged for "now"
        alpha_long: float = 0.0005,  # history of raw scores: about 2000 points
        threshold: float = 0.4,
        cooldown_s: float = 21600.0,
        warmup: int = 100,
        # ... or this much of the series' own time, with at least `warmup_min` points: 100 points are
        # 25 minutes at a 15 s step but four days of an hourly series
        warmup_s: float | None = 86_400.0,
        warmup_min: int = 24,
        min_std: float = 0.02,  # a history of near-identical scores must not make every blip a finding
        raw_passthrough: float = 1.0,  # a raw score at least this high passes as it is (off: > 1)
        # "direct": the raw score itself, for calibrated detectors; "persistent": its short average,
        # for calibrated scores whose single-tick outliers are ordinary
        mode: str = "likelihood",
        # the point itself must be this unusual: a series whose scores never move otherwise makes
        # its first small bump look infinitely unlikely
        min_raw: float = 0.2,
        record_decay: float | None = None,  # per point decay of the running maximum of raw scores
        record_power: float = 4.0,
        # the likelihood score counts only from this (0: always): a detector beside the level view
        # that already reports the ordinary level moves leaves the level view only its clearest ones
        likelihood_floor: float = 0.0,
    ) -> None:
        self.record_decay, self.record_power = record_decay, record_power
        self.likelihood_floor = likelihood_floor
        self.min_raw = min_raw
        if mode not in ("likelihood", "direct", "persistent"):
            raise ValueError(f"unknown gate mode {mode!r}")
        self.mode = mode
        n = int(n_series)
        self.n_series = n
        self.alpha_short = 2.0 / (short + 1.0)
        self.alpha_long = alpha_long
        self.threshold, self.cooldown_s, self.warmup = threshold, cooldown_s, warmup
        self.warmup_s, self.warmup_min = warmup_s, warmup_min
        self.first_ts = np.full(n, np.nan)
        self.min_std, self.raw_passthrough = min_std, raw_passthrough
        self.count = np.zeros(n, dtype=np.int64)
        self.recent = np.zeros(n)
        self.mean = np.zeros(n)
        self.var = np.zeros(n)
        self.last_fired_ts = np.full(n, -np.inf)
        self.record = np.zeros(n)  # decaying maximum of past raw scores

    def update(self, ts, raw, calibrated=None, episodic=None) -> GateResult:
        """One tick: `raw` scores are judged against their own history; `calibrated` scores (already
        on the findings scale, NaN or 0 for none) pass beside them: the larger of the two is
        compared with the threshold, under the same cooldown, except where `episodic` (bool) says
        the calibrated score's detector reports once per episode by itself: it fires through the
        cooldown (and starts a new one)."""
        ts, raw = as_tick(self.n_series, ts, raw)
        ok = np.isfinite(raw)
        r = np.where(ok, raw, 0.0)
        first = ok & (self.count == 0)
        recent = np.where(first, r, self.recent + self.alpha_short * (r - self.recent))
        std = np.maximum(np.sqrt(self.var), self.min_std)
        z = (recent - self.mean) / std
        score = np.clip(log_ndtr(-z) / _LOG_1E10, 0.0, 1.0)
        score = np.where(r >= self.min_raw, score, 0.0)
        score = np.maximum(score, np.where(r >= self.raw_passthrough, r, 0.0))
        if self.record_decay is not None:
            # a burst no bigger than the series' recent worst is ordinary for this series
            ratio = np.clip(r / np.maximum(self.record, 1e-12), 0.0, 1.0)
            score = score * ratio**self.record_power
        if self.mode == "direct":
            score = r
        elif self.mode == "persistent":
            score = recent
        self.first_ts = np.where(ok & np.isnan(self.first_ts), ts, self.first_ts)
        warm = self.count >= self.warmup
        if self.warmup_s is not None:
            warm |= (self.count >= self.warmup_min) & (ts - self.first_ts >= self.warmup_s)
        ready = ok & (warm | (self.mode != "likelihood"))
        score = np.where(ready, score, np.nan)
        if self.likelihood_floor > 0:
            score = np.where(score >= self.likelihood_floor, score, np.where(ready, 0.0, np.nan))
        if calibrated is not None:
            _, extra = as_tick(self.n_series, ts, calibrated)
            score = np.where(np.isfinite(extra), np.fmax(score, extra), score)
        above = ready & (score >= self.threshold)
        cooling = above & (ts - self.last_fired_ts < self.cooldown_s)
        if calibrated is not None and episodic is not None:
            _, own = as_tick(self.n_series, ts, calibrated)
            cooling &= ~(np.asarray(episodic, dtype=bool) & (np.nan_to_num(own) >= self.threshold))
        fired = above & ~cooling
        self.last_fired_ts = np.where(fired, ts, self.last_fired_ts)
        # learn: the long history moves with the raw score itself, not the short average
        # running mean/variance until the EWMA's memory is filled, so early history is not biased to 0
        a = np.maximum(self.alpha_long, 1.0 / (self.count + 1.0))
        d = r - self.mean
        self.mean = np.where(ok, np.where(first, r, self.mean + a * d), self.mean)
        self.var = np.where(ok & ~first, (1 - a) * (self.var + a * d * d), self.var)
        self.recent = np.where(ok, recent, self.recent)
        if self.record_decay is not None:
            self.record = np.where(ok, np.maximum(self.record * self.record_decay, r), self.record)
        self.count += ok
        return GateResult(score, fired, cooling)
