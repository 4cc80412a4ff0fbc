"""ARTime, followed step by step: the detector at the top of NAB's scoreboard (74.9; Mark Hampton,
2021, Julia: ARTimeNAB.jl, built on the dual-vigilance fuzzy ART (DVFA) of AdaptiveResonance.jl).
Written here in numpy from reading that source and fuzzy ART's papers (Carpenter, Grossberg and
Rosen 1991; da Silva, Elnabarawy and Wunsch 2019 for dual vigilance), one series at a time.

What it does, per series:

- Probation: the first `probation` points (NAB hands every detector 15% of the file, at most 750)
  are kept, then processed as one batch at its end.
- Downsampling: every `step` points (probation / (window x 13): 5 on a 4,000-row NAB file) one
  value stands for the block: its extreme on the side away from a running average (a spike up or
  down), or the block's mean when that extreme is within 10% of it.
- Levels: the value is placed on the range [low, high] in 80 levels and, when within 0.075 of the
  range from the running median level, pulled onto the median (small wobble is not a shape).
- Features: the last 8 such values, and the Haar wavelet transform of the same window min-max
  scaled, itself min-max scaled: 16 numbers in [0, 1], complement coded to 32.
- DVFA: a category's match is (|x ^ w| / |w|)^3 x (the same on the newest value alone)^2 (^ is
  the element-wise minimum). Categories at or above the upper vigilance learn (w <- x ^ w); the best
  one between the lower and the upper vigilance makes a new category in the same cluster; none
  above the lower one makes a new cluster: that window is the anomaly.
- Vigilance: set after probation from a fuzzy ART run over the probation's windows (vigilance 0.8,
  least typical windows first): the mean match of its second half. Then every half trend window
  (trend window = probation in downsampled steps) and 1.5 windows after an anomaly: the upper
  vigilance is the mean of all matches so far (at most 0.97); the lower one rises by 19% of the
  way to the lowest recent match, or falls by half the mean recent shortfall (but not below the
  mean match of past anomalies).
- Masking: after an anomaly, and after any new category until 1.5 windows pass without one, a new
  cluster is reported only when its match is below 90% (70%) of the last anomaly's.
- Score: at a reported anomaly, a confidence from how far the match falls below the two
  vigilances and how new the newest value is; 0 elsewhere.

The range is the one deviation a service cannot follow: ARTime is handed each NAB file's minimum
and maximum (which include the file's anomalies). `ARTime(low=..., high=...)` takes a given range
(the NAB comparison); without one, the range is the probation's own widened by `margin` of it on
each side, and later values outside it are held at its edges. Stand-ins for NAB's range measured
for the service (anomaly/README.md, sixth push; all off by default): `min_width` (the range at
least that many robust scales of the probation wide), `level_width` (or that share of its median
level), `relearn` (a value outside the range restarts the probation), and `max_match` (a new
cluster is reported only when it matches every learned category at most this: the one that keeps
the quiet days quiet, `LevelSettings().with_artime("quiet")`).

>>> import numpy as np
>>> det = ARTime(probation=600)
>>> x = (np.arange(2000) % 40) / 40.0  # a sawtooth ...
>>> x[1500:1520] = 2.5  # ... that jumps once
>>> s = np.array([det.process_one(v) for v in x])
>>> [int(i) for i in np.flatnonzero(s)]  # one report, at the first downsampled step of the jump
[1504]
"""

from __future__ import annotations

import copy
import math

import numpy as np

from anomaly.base import NOVEL_PATTERN, Detector, TickScores, as_tick

_SQRT_HALF = math.sqrt(0.5)


def haar(x: np.ndarray) -> np.ndarray:
    """The full Haar wavelet transform of a window whose length is a power of two, as ARTime gets
    it from Wavelets.jl (`dwt(x, wavelet(WT.haar))`): the overall average first, then the details
    from the coarsest to the finest, each the later half minus the earlier (times sqrt 1/2). The
    sign matters: the transform is min-max scaled afterwards, so flipped details are other features
    (with the opposite sign the port scored 72.8 on NAB instead of 74.85)."""
    a = np.asarray(x, dtype=float)
    details = []
    while len(a) > 1:
        even, odd = a[0::2], a[1::2]
        details.append((odd - even) * _SQRT_HALF)  # Wavelets.jl's sign: the later value minus the earlier
        a = (even + odd) * _SQRT_HALF
    return np.concatenate([a, *reversed(details)])


def _unit(x: np.ndarray) -> np.ndarray:
    x = x - x.min()
    top = x.max()
    return x / top if top != 0 else x


class DualVigilanceArt:
    """Fuzzy ART with two vigilances (DVFA), as ARTime uses it: categories grouped in clusters; the
    return value of `train` is the cluster, -1 when the input starts a new one."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.rho_lb = self.rho_ub = 0.0
        self.w = np.empty((0, 2 * dim))
        self.labels: list[int] = []
        self.n_clusters = 0
        self.match = 0.0  # best match of the last input
        self.energy = 0.0  # and that category's match on the newest value alone

    def train(self, features: np.ndarray, learn: bool = True) -> int:
        x = np.concatenate([features, 1.0 - features])
        if not len(self.w):
            # the first input only opens an all-ones category (as AdaptiveResonance.jl does)
            self.w = np.ones((1, 2 * self.dim))
            self.labels, self.n_clusters = [1], 1
            self.match = self.energy = 0.0
            return 1
        common = np.minimum(self.w, x)
        size = self.w.sum(axis=1)
        size[size == 0] = 0.001
        feature_sim = common.sum(axis=1) / size
        ei = self.dim - 1  # the newest value and its complement
        newest = self.w[:, ei] + self.w[:, -1]
        energy = np.where(newest > 0, (common[:, ei] + common[:, -1]) / np.where(newest > 0, newest, 1.0), 0.0)
        m = feature_sim**3 * energy**2
        order = np.argsort(-m, kind="stable")
        best = int(order[0])
        self.match, self.energy = (float(m[best]), float(energy[best])) if m[best] > 0 else (0.0, 0.0)
        undefined = newest <= 0
        if undefined.any():
            # A category that has learned both 0 and 1 as the newest value has no energy (0 / 0 in
            # the source: NaN). Julia sorts NaN first in a descending sortperm, no comparison with
            # it holds, and the search stops there: nothing matches and the input is a new cluster.
            self.match = self.energy = 0.0
            if not learn:
                return -1
            self.n_clusters += 1
            self.labels.append(self.n_clusters)
            self.w = np.vstack([self.w, x])
            return -1
        if not learn:
            return -1
        resonant = m >= self.rho_ub
        if resonant.any():
            self.w[resonant] = common[resonant]
            return self.labels[best]
        if m[best] >= self.rho_lb:
            label = self.labels[best]
            self.labels.append(label)
        else:
            self.n_clusters += 1
            label = -1
            self.labels.append(self.n_clusters)
        self.w = np.vstack([self.w, x])
        return label


def _similarity(f: np.ndarray) -> np.ndarray:
    """ARTime's near-cosine similarity between the columns of `f` (windows as rows here)."""
    norm = np.linalg.norm(f, axis=1)
    dot = f @ f.T
    with np.errstate(invalid="ignore", divide="ignore"):
        sim = dot / np.outer(norm, norm)
    zero_i, zero_j = norm[:, None] == 0, norm[None, :] == 0
    sim = np.where(zero_i & ~zero_j, 1 - norm[None, :], sim)
    sim = np.where(zero_j & ~zero_i, 1 - norm[:, None], sim)
    sim = np.where(zero_i & zero_j, 1.0, sim)
    np.fill_diagonal(sim, 1.0)
    return sim


def learned_range(x: np.ndarray, margin: float, min_width: float = 0.0,
                  level_width: float = 0.0) -> tuple[float, float]:
    """The probation's range widened by `margin` of it each side, and at least `min_width` robust
    scales of the probation wide around its median: NAB's file range holds the file's anomalies,
    so a noise series' wobble fills a small part of it; a probation's own range is all wobble."""
    lo, hi = float(x.min()), float(x.max())
    low, high = lo - margin * (hi - lo), hi + margin * (hi - lo)
    if min_width > 0:
        med = float(np.median(x))
        scale = 1.4826 * float(np.median(np.abs(x - med)))
        if scale == 0:
            scale = float(np.std(x))
        half = 0.5 * min_width * scale
        low, high = min(low, med - half), max(high, med + half)
    if level_width > 0:
        # ... or that share of the level (a latency's wobble is a small part of its level)
        med = float(np.median(x))
        half = 0.5 * level_width * abs(med)
        low, high = min(low, med - half), max(high, med + half)
    return low, high


class ARTime:
    """One series. `process_one(value)` returns the anomaly score of that point (0 but at a
    reported anomaly)."""

    def __init__(self, probation: int = 600, *, low: float | None = None, high: float | None = None,
                 margin: float = 0.5, window: int = 8, windows_per_probation: int = 13,
                 levels: int = 80, chomp: float = 0.075, initial_rho: float = 0.8,
                 min_width: float = 0.0, relearn: bool = False, max_match: float = 1.0,
                 level_width: float = 0.0) -> None:
        self._args = dict(probation=probation, margin=margin, window=window,
                          windows_per_probation=windows_per_probation, levels=levels, chomp=chomp,
                          initial_rho=initial_rho, min_width=min_width, relearn=relearn,
                          max_match=max_match, level_width=level_width)
        self.level_width = float(level_width)
        self.max_match = float(max_match)
        self.min_width, self.relearn, self.relearned = float(min_width), bool(relearn), 0
        self.learned_range = low is None
        probation = int(probation) - int(probation) % 2
        self.probation, self.window, self.levels, self.chomp = probation, window, levels, chomp
        self.initial_rho, self.margin = initial_rho, margin
        self.low, self.high = low, high
        self.step = max(1, probation // (window * windows_per_probation))
        self.trend = max(window + 2, probation // self.step)
        self.mask = int(window * 1.5)
        self.i = 0
        self.buffer: list[float] = []
        self.block: list[float] = []
        self.art = DualVigilanceArt(2 * window)
        self.dsi = 0
        self.moving_average = 0.0
        self.medbin = np.zeros(levels + 1, dtype=np.int64)
        self.medlevel = self.below_med = self.above_med = 0
        self.f_window = np.zeros(window)
        self.trend_features: list[np.ndarray] = []
        self.last_anomaly_i = 0
        self.last_anomaly_sim = 0.0
        self.last_rho_update_i = 0
        self.mask_after_cat = False
        self.no_new_cat = 0
        self.anomaly_sims: list[float] = []
        self.sim_window = np.ones(self.trend // 2 + 1)
        self.sim_diff = np.zeros(self.trend + 1)
        self.match_sum = 0.0
        self.match_n = 0

    # -- the stream ------------------------------------------------------------------------------
    def process_one(self, value: float) -> float:
        self.i += 1
        if self.low is None:
            # the range is not known yet: keep the probation and replay it once it is
            if self.i <= self.probation:
                self.buffer.append(float(value))
                if self.i == self.probation:
                    self.low, self.high = self._learned_range(np.array(self.buffer))
                    for k, v in enumerate(self.buffer, start=1):
                        self._sample(v, k)
                    self.buffer = []
                return 0.0
        if self.relearn and self.learned_range and not (self.low <= value <= self.high):
            # a new regime: start a fresh probation with this value (the departure itself is the
            # level detector's to report), instead of every window at the edge being a new cluster
            relearned = self.relearned + 1
            self.__init__(**self._args)
            self.relearned = relearned
            return self.process_one(value)
        return self._sample(float(value), self.i)

    def _learned_range(self, x: np.ndarray) -> tuple[float, float]:
        return learned_range(x, self.margin, self.min_width, self.level_width)

    def _sample(self, value: float, i: int) -> float:
        self.block.append(value)
        if len(self.block) > self.step:
            self.block.pop(0)
        if i % self.step:
            return 0.0
        block = np.array(self.block)
        mean, top, bottom = block.mean(), block.max(), block.min()
        self.dsi += 1
        if self.dsi == 1:
            self.moving_average = mean
        self.moving_average = (self.moving_average + mean) / 2
        ds = top if abs(top - self.moving_average) >= abs(bottom - self.moving_average) else bottom
        if abs(ds - mean) < 0.1 * mean:  # a spike must be 10% off the block's mean
            ds = mean
        span = self.high - self.low
        ds = (ds - self.low) / span if span != 0 else ds - self.low
        level = int(np.clip(np.round(ds * self.levels), 0, self.levels))
        ds = level / self.levels
        self._track_median(level)
        med = self.medlevel / self.levels
        if abs(ds - med) < self.chomp:
            ds = med
        self.f_window = np.r_[self.f_window[1:], ds]
        features = np.zeros(2 * self.window)
        if self.dsi >= self.window:
            features = np.concatenate([_unit(haar(_unit(self.f_window))), self.f_window])
        return self._features(features, self.dsi)

    def _track_median(self, level: int) -> None:
        """ARTime's running median of the levels (close to one, cheap)."""
        self.medbin[level] += 1
        half = self.dsi // 2
        if self.dsi == 1:
            self.medlevel = level
        if self.medlevel > level:
            self.below_med += 1
        elif self.medlevel < level:
            self.above_med += 1
        if half < self.above_med:
            self.below_med += self.medbin[self.medlevel]
            self.medlevel += 1
            while self.medbin[self.medlevel] == 0:
                self.medlevel += 1
            self.above_med -= self.medbin[self.medlevel]
        elif half < self.below_med:
            self.above_med += self.medbin[self.medlevel]
            self.medlevel -= 1
            while self.medbin[self.medlevel] == 0:
                self.medlevel -= 1
            self.below_med -= self.medbin[self.medlevel]

    def _features(self, f: np.ndarray, i: int) -> float:
        if i > self.trend:
            return self._detect(f, i)
        self.trend_features.append(f)
        if i == self.trend:
            windows = np.array(self.trend_features)
            rho = self._initial_rho(windows[self.window - 1 : self.trend])
            self.art.rho_lb = self.art.rho_ub = rho
            for k, ff in enumerate(windows, start=1):
                self._detect(ff, k)
            self.trend_features = []
        return 0.0

    def _initial_rho(self, windows: np.ndarray) -> float:
        order = np.argsort(_similarity(windows).sum(axis=0), kind="stable")
        art = DualVigilanceArt(2 * self.window)
        art.rho_lb = art.rho_ub = self.initial_rho
        matches = []
        for f in windows[order]:
            art.train(f)
            matches.append(art.match)
        return float(np.mean(matches[self.trend // 2 - 1 :])) if len(matches) >= self.trend // 2 else self.initial_rho

    def _detect(self, f: np.ndarray, i: int) -> float:
        art = self.art
        since = i - self.last_anomaly_i
        update_after_anomaly = since == self.mask
        update_for_trend = i - self.last_rho_update_i >= self.trend // 2
        mask_after_anomaly = since <= self.mask
        if i > self.trend + self.mask and self.mask_after_cat and self.no_new_cat >= self.mask:
            self.mask_after_cat = False
        cat = art.train(f, learn=i >= self.window)
        if i < self.window:
            cat = -1
        self.no_new_cat = 0 if cat == -1 else self.no_new_cat + 1
        a = art.match
        self.match_sum += a
        self.match_n += 1
        self.sim_window = np.r_[self.sim_window[1:], a]
        self.sim_diff = np.r_[self.sim_diff[1:], art.rho_ub - a]
        if since < self.mask and self.anomaly_sims and a < self.anomaly_sims[-1]:
            self.anomaly_sims[-1] = a
        masking = self.mask_after_cat or mask_after_anomaly
        below_last = a < self.last_anomaly_sim * (0.90 if mask_after_anomaly else 0.70)
        anomaly = 0.0
        if i > self.trend and cat == -1 and (not masking or below_last):
            anomaly = self._confidence(a, art.energy)
            self.anomaly_sims.append(a)
            self.last_anomaly_sim, self.last_anomaly_i = a, i
            if a > self.max_match:
                # an episode as ARTime sees it (it masks what follows), but not far enough from every
                # learned category to be news: a noise series' rare window still half-matches one
                anomaly = 0.0
        self.mask_after_cat = cat == -1 or self.mask_after_cat
        if i > self.trend and (update_after_anomaly or update_for_trend):
            self._update_vigilance(i)
        return anomaly

    def _update_vigilance(self, i: int) -> None:
        art = self.art
        low_recent = float(self.sim_window.min())
        ub = min(0.97, self.match_sum / self.match_n)
        lb = art.rho_lb
        if lb <= low_recent:
            lb += (low_recent - lb) * 0.19
        else:
            drop = 0.0
            if i > 2 * self.trend:
                short = self.sim_diff[self.sim_diff > 0.05]
                if len(short):
                    drop = float(np.minimum(short, 0.37).mean())
            lb -= max(0.01, drop) / 2
            if self.anomaly_sims:
                lb = max(float(np.mean(self.anomaly_sims)), lb)
        art.rho_lb, art.rho_ub = min(ub, lb), ub
        self.last_rho_update_i = i
        self.mask_after_cat = True

    def _confidence(self, match: float, energy: float) -> float:
        m = min(0.999, match)
        ub = ((1 - m) - (1 - self.art.rho_ub)) / (1 - m)
        lb = ((1 - m) - (1 - self.art.rho_lb)) / (1 - m)
        return round(min(1.0, ub * 0.35 + lb * 0.65 + (1.0 - energy) * 1.5), 6)


class ARTimeBank:
    """ARTime over many series, one `ARTime` each, in a loop (the reference for
    `anomaly.artime_bank.ARTimeVectorBank`, which gives the same scores; kept where `relearn`
    restarts a series). NaN values are skipped; scores are 0 there."""

    name = "artime"

    def __init__(self, n_series: int = 1, **kwargs) -> None:
        self.series = [ARTime(**kwargs) for _ in range(n_series)]

    def update(self, values, rows: np.ndarray | None = None) -> np.ndarray:
        values = np.asarray(values, dtype=float)
        out = np.zeros(len(self.series))
        for k in np.flatnonzero(np.isfinite(values)) if rows is None else rows:
            out[k] = self.series[k].process_one(float(values[k]))
        return out

    def peek(self, values) -> np.ndarray:
        """Scores without learning (on copies of the series that have a value: slow, rarely used)."""
        values = np.asarray(values, dtype=float)
        out = np.zeros(len(self.series))
        for k in np.flatnonzero(np.isfinite(values)):
            out[k] = copy.deepcopy(self.series[k]).process_one(float(values[k]))
        return out


class LevelWithArtime(Detector):
    """The level bank's detector (the robust level detector, or its ensemble with the novelty view)
    with ARTime beside it: ARTime's confidence is passed to the findings stage as a calibrated score
    (the larger of it and the inner detector's calibrated score), so one cooldown covers both.
    `agree`: ARTime counts only where the level detector's own raw score reached this within the
    last `step` points (0: always). `report_floor`: a report enters the findings stage at
    `report_floor + (1 - report_floor) x confidence`, so with a floor at or above the findings
    threshold every report is a finding and the confidence only orders them (0: the confidence
    itself). `episodic`: ARTime masks its own episodes, so its reports page through the findings
    stage's cooldown (`TickScores.episodic`). Only points the level detector's guard accepts reach
    ARTime (`every_value`: every finite value, as NAB hands ARTime every row)."""

    def __init__(self, inner: Detector, *, agree: float = 0.0, report_floor: float = 0.0, episodic: bool = True,
                 vectorised: bool = True, **artime) -> None:
        super().__init__(inner.n_series)
        self.inner, self.name = inner, inner.name
        self.guard = inner.guard
        # the vectorised bank (anomaly.artime_bank: the same scores, ticking all series at once) but
        # where a series' state restarts (`relearn`), or when the loop is asked for (the benchmark)
        if vectorised and not artime.get("relearn"):
            from anomaly.artime_bank import ARTimeVectorBank  # it imports this module's parts

            self.artime = ARTimeVectorBank(self.n_series, **artime)
            step = int(self.artime.step[0]) if self.n_series else 1
        else:
            self.artime = ARTimeBank(self.n_series, **artime)
            step = self.artime.series[0].step if self.n_series else 1
        self.agree = float(agree)
        self.report_floor = float(report_floor)
        # ARTime reads values, not timestamps: NAB hands it every row, out-of-order stamps included
        self.every_value = False
        self.episodic = bool(episodic)
        self.recent_raw = np.zeros((step, self.n_series))
        # series whose steps are decisions, not symptoms: no ARTime report (shared with the novelty
        # view's, where there is one)
        self.patterns_judged = getattr(inner, "patterns_judged", np.ones(self.n_series, dtype=bool))

    @property
    def resolution(self) -> np.ndarray:
        return self.inner.resolution

    def _combine(self, inner: TickScores, art: np.ndarray) -> TickScores:
        if self.agree > 0:
            art = np.where(self.recent_raw.max(axis=0) >= self.agree, art, 0.0)
        art = np.where((art > 0) & self.patterns_judged, self.report_floor + (1.0 - self.report_floor) * art, 0.0)
        calibrated = art if inner.calibrated is None else np.fmax(inner.calibrated, art)
        kind = inner.kind.copy()
        kind[(art > 0) & ~(np.nan_to_num(inner.score) >= art)] = NOVEL_PATTERN
        episodic = (art > 0) if self.episodic else None
        return TickScores(inner.score, inner.expected_low, inner.expected_high, kind, calibrated=calibrated,
                          episodic=episodic)

    def peek(self, ts, values) -> TickScores:
        ts, values = as_tick(self.n_series, ts, values)
        ok = self.guard.screen(ts, values, commit=False)
        return self._combine(self.inner.peek(ts, values), self.artime.peek(np.where(ok, values, np.nan)))

    def update(self, ts, values) -> TickScores:
        ts, values = as_tick(self.n_series, ts, values)
        ok = self.guard.screen(ts, values, commit=False)  # the points the level detector will use
        inner = self.inner.update(ts, values)
        self.recent_raw = np.vstack([self.recent_raw[1:], np.nan_to_num(inner.score)])
        rows = np.flatnonzero(np.isfinite(values) if self.every_value else ok)
        return self._combine(inner, self.artime.update(values, rows))
