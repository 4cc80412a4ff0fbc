"""The anomaly service: runs the detectors continuously over new samples and records findings.

Samples come from the store (`poll_store` reads metric_samples joined with metric_series since the
last watermark; `run` does that on a clock) or are fed live (`observe`). Each tick is derived into
watched series (`anomaly.series`), then scored in vectorised banks of detectors: saturation metrics
(those the catalog gives a capacity) by the saturation trend detector, every other series by the
robust level detector. The findings stage (`LikelihoodGate`) keeps findings sparse; each finding is
written to anomaly_findings through the Sink and handed to every callable in `on_finding` (the
alert engine subscribes there).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from anomaly.artime import LevelWithArtime
from anomaly.base import Detector
from anomaly.context_novelty import ContextNovelty
from anomaly.finding import Finding
from anomaly.isolation_forest import MultivariateIsolation
from anomaly.level_ensemble import LevelEnsemble
from anomaly.likelihood import LikelihoodGate
from anomaly.robust_level import RobustLevel
from anomaly.saturation_trend import SaturationTrend
from anomaly.series import Sample, SeriesDeriver, SeriesKey, labels_key
from telemetry.clock import Clock, WallClock
from telemetry.store.series_reads import stepped_samples

log = logging.getLogger(__name__)


class SaturationSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    window: int = Field(40, ge=6)  # points: 10 minutes at the default 15 s step
    horizon_s: float = Field(2700.0, gt=0)  # forecasts within this horizon are urgent (45 min)
    min_rise_sigmas: float = Field(3.0, gt=0)
    threshold: float = Field(0.4, gt=0, le=1)  # confidence x urgency needed for a finding
    cooldown_s: float = Field(900.0, ge=0)
    # metrics whose capacity is their normal state (an LRU cache is meant to be full): watched for
    # level changes instead. An autoscaled pool's utilisation is held near the autoscaler's target
    # while replicas are added; what runs out is its busy workers against the ceiling (the
    # autoscaler's maximum, `<capacity metric>_ceiling`), forecast on voxwatch_worker_busy
    exclude: list[str] = ["voxwatch_cache_entries", "voxwatch_cache_fill_ratio", "voxwatch_worker_utilization_ratio"]


class LevelSettings(BaseModel):
    """One parameter set for the level detector and its findings stage, shared by the service and
    the NAB run (`anomaly.nab.run`), so what is measured there is what runs here."""

    model_config = ConfigDict(extra="forbid")
    alpha: float = Field(0.05, gt=0, le=1)
    alpha_err: float = Field(0.01, gt=0, le=1)
    err_clip_sigma: float = Field(1000.0, gt=0)
    slot_s: float = Field(300.0, gt=0)
    periods_s: tuple[float, ...] = (86_400.0, 604_800.0)  # daily and weekly profiles
    tail: str = Field("laplace", pattern="^(laplace|gaussian)$")
    log10_p_full: float = Field(12.0, gt=0)  # raw score 1.0 at this tail probability, 10^-x
    alpha_season: float = Field(0.3, gt=0, le=1)
    relative_floor: float = Field(0.01, ge=0)
    warmup: int = Field(30, ge=1)
    # adaptive tail: each series learns the 2% quantile of its |z| (above and below apart) and the
    # mean excess beyond it, so its ordinary bursts do not page; 2% leaves enough exceedances to
    # learn from in a few hundred points. 0: off (the fixed Laplace tail alone)
    tail_quantile: float = Field(0.02, ge=0, lt=1)
    # the mean excess remembers about 50 exceedances: a burst regime is learned within a day or two
    # at a 5-minute step, one wild point moves it only a bounded step
    alpha_tail: float = Field(0.02, gt=0, le=1)
    # a value beyond the whole range seen so far by 10% of that range scores 1.0 (a clear new
    # record is news even on a bursty series); None: off
    new_extreme_margin: float | None = Field(0.1, ge=0)
    # ... and by 3 sigmas of the current scale: a noise series' running maximum creeps up for ever,
    # at 2 sigmas a 4.9-sigma lognormal record paged on flat latency
    new_extreme_sigmas: float = Field(3.0, ge=0)
    threshold: float = Field(0.4, gt=0, le=1)  # likelihood score for a finding
    gate_warmup: int = Field(100, ge=1)
    gate_warmup_s: float | None = Field(86_400.0, gt=0)  # or a day of the series' own time (long steps)
    gate_warmup_min: int = Field(24, ge=1)  # ... with at least this many points
    alpha_long: float = Field(0.0005, gt=0, le=1)
    short: int = Field(5, ge=1)
    cooldown_s: float = Field(21600.0, ge=0)  # one finding per series per incident, not one per minute
    raw_passthrough: float = Field(1.0, gt=0)  # a raw score this high is a finding by itself (> 1: off)
    min_raw: float = Field(0.2, ge=0, le=1)  # the point itself must score at least this (about 4.4 sigma)
    record_decay: float | None = Field(None, gt=0, le=1)
    record_power: float = Field(4.0, ge=0)
    # contextual novelty (CAD OSE's idea, `anomaly.context_novelty`) beside the level detector: off in
    # these bare settings (the level view alone); the service runs `novelty_mode("quiet")`
    # (`AnomalySettings.level`), whose rules keep noise's new moves from paging (anomaly/README.md)
    novelty: bool = False
    novelty_levels: int = Field(8, ge=2, le=16)
    novelty_orders: int = Field(5, ge=1, le=6)
    novelty_margin: float = Field(0.6875, ge=0)  # the warm-up's edges fall mid-level, not on a cut
    novelty_grid_points: int = Field(600, ge=10)
    novelty_grid_s: float = Field(172_800.0, gt=0)  # warm-up as a duration: two days, or the points above
    # ... and never shorter than this (0: no floor): a grid learned on a few hours of a 15 s series
    # has not seen the day's peak, and the climb to it is a run of moves never made
    novelty_grid_min_s: float = Field(0.0, ge=0)
    novelty_rest_points: int = Field(30, ge=0)
    novelty_full: float = Field(0.8, gt=0, le=1)  # share of new contexts that makes a move novel
    novelty_score: float = Field(0.5, gt=0, le=1)  # ... and its score on the findings scale
    novelty_grids: int = Field(1, ge=1, le=4)  # grids offset by 1/grids of a level; novel on all of them
    novelty_new_levels: bool = True  # False: a never-visited level is left to the new-extreme rule
    # a novelty level at least this many steps of the series' resolution wide (one event of a
    # counter's rate, a bucket's width; 0: off)
    novelty_level_resolutions: float = Field(0.0, ge=0)
    # a move never made counts only where the series sits in both its levels so often that it would
    # have made it this many times were its points unrelated (0: off)
    novelty_min_expected: float = Field(0.0, ge=0)
    # ARTime (`anomaly.artime`, ported from ARTimeNAB.jl) beside the level detector: 75.99 on NAB
    # when told each file's range as NAB tells ARTime (`nab --artime --artime-input nab`), 60.8 in
    # the service form, where it pages on noise (195 quiet-day findings); off by default. It runs
    # vectorised (`anomaly.artime_bank`): about 0.84 million points per CPU second beside the level
    # detector, 12x the per-series loop (anomaly/README.md, seventh push). `with_artime("quiet")`:
    # far clusters only, 62.07 on NAB in the service form and quiet on the quiet days (sixth push)
    artime: bool = False
    artime_probation: int = Field(600, ge=32)  # points learned as one batch before anything is judged
    artime_margin: float = Field(0.5, ge=0)  # the probation's range widened by this much of it each side
    artime_agree: float = Field(0.0, ge=0, le=1)  # level raw score needed within ARTime's block (0: none)
    # a report enters the findings stage at 0.9 + 0.1 x its confidence: every report pages at the
    # service's threshold, and above the level view's likelihoods where NAB's sweep cuts
    artime_report_floor: float = Field(0.9, ge=0, le=1)
    # ... and the level view's own likelihood pages only from 0.9 (tail probability about 1e-9):
    # ARTime reports the ordinary level moves (anomaly/README.md, fifth push)
    artime_level_threshold: float = Field(0.9, ge=0, le=1)
    # ARTime masks its own episodes (one report each), so its reports page through the findings
    # stage's cooldown: a report held back by the level view's cooldown was a window lost on NAB
    artime_episodic: bool = True
    # the learned range at least this many robust scales (MAD) of the probation wide (0: off)
    artime_min_width: float = Field(0.0, ge=0)
    # a value outside the learned range restarts ARTime's probation (a new regime, not a new cluster)
    artime_relearn: bool = False
    # ... or at least this share of the probation's median level (0: off)
    artime_level_width: float = Field(0.0, ge=0)
    # a new cluster is reported only when its best match with a learned category is at most this (1: all)
    artime_max_match: float = Field(1.0, ge=0, le=1)

    def with_artime(self, mode: str = "nab") -> LevelSettings:
        """These settings with ARTime beside the level detector, as measured in anomaly/README.md:
        "nab" (the `artime_*` defaults: tuned with NAB's input, where they score 75.99; in the
        service form they page on noise) or "quiet" (a new cluster is reported only when its best
        match with every learned category is at most 0.4, and the level view pages on its own
        likelihood as without ARTime: no finding on the quiet-day series, +1.5 on NAB in the service
        form; sixth push)."""
        modes = {"nab": {}, "quiet": {"artime_max_match": 0.4, "artime_level_threshold": 0.0}}
        if mode not in modes:
            raise ValueError(f"unknown ARTime mode {mode!r} (known: {', '.join(modes)})")
        return type(self)(**{**self.model_dump(), "artime": True, **modes[mode]})

    @classmethod
    def novelty_mode(cls, mode: str) -> LevelSettings:
        """The level settings with the novelty view on, as measured in anomaly/README.md: "nab" (one
        grid of 8 levels: the best NAB score, but it pages on noise) or "quiet" (two offset grids of 6
        levels, new moves between familiar levels only, not out of a level just visited for the first
        time: no finding on the quiet-day series)."""
        modes = {
            "nab": {},
            # no rest inside the grids: a rest started by one grid's own alarm hid the other's; the
            # findings stage's cooldown already keeps one finding per episode. Levels no finer than two
            # steps of the measurement's resolution, and a new move only between levels the series
            # sits in often (ninth push): what kept a replayed service day quiet
            "quiet": {"novelty_grids": 2, "novelty_levels": 6, "novelty_new_levels": False, "novelty_rest_points": 0,
                      "novelty_level_resolutions": 2.0, "novelty_min_expected": 1.0},
        }
        if mode == "off":
            return cls()
        if mode not in modes:
            raise ValueError(f"unknown novelty mode {mode!r} (known: {', '.join(modes)}, off)")
        return cls(novelty=True, **modes[mode])

    def detector(self, n_series: int, artime_vectorised: bool = True) -> RobustLevel | LevelEnsemble | LevelWithArtime:
        """The level detector for `n_series` series with these settings (with the novelty detector
        beside it unless `novelty` is off, and ARTime unless `artime` is off; ARTime ticks all series
        at once unless `artime_vectorised` is off: the per-series loop, same scores, for comparison)."""
        inner = self._novelty_detector(n_series)
        if not self.artime:
            return inner
        return LevelWithArtime(inner, agree=self.artime_agree, report_floor=self.artime_report_floor,
                               episodic=self.artime_episodic, vectorised=artime_vectorised,
                               probation=self.artime_probation,
                               margin=self.artime_margin, min_width=self.artime_min_width,
                               relearn=self.artime_relearn, max_match=self.artime_max_match,
                               level_width=self.artime_level_width)

    def _novelty_detector(self, n_series: int) -> RobustLevel | LevelEnsemble:
        level = self.level_detector(n_series)
        if not self.novelty:
            return level
        grids = [
            ContextNovelty(
                n_series, levels=self.novelty_levels, orders=self.novelty_orders, margin=self.novelty_margin,
                grid_points=self.novelty_grid_points, grid_s=self.novelty_grid_s, grid_min_s=self.novelty_grid_min_s,
                rest_points=self.novelty_rest_points, shift=k / self.novelty_grids,
                min_expected=self.novelty_min_expected, min_resolutions=self.novelty_level_resolutions,
            )
            for k in range(self.novelty_grids)
        ]
        return LevelEnsemble(n_series, level=level, novelty=grids, novelty_full=self.novelty_full,
                             novelty_score=self.novelty_score, new_levels=self.novelty_new_levels)

    def level_detector(self, n_series: int) -> RobustLevel:
        """The robust level detector alone for `n_series` series with these settings."""
        return RobustLevel(
            n_series, alpha=self.alpha, alpha_err=self.alpha_err, err_clip_sigma=self.err_clip_sigma,
            slot_s=self.slot_s, periods_s=self.periods_s, tail=self.tail, log10_p_full=self.log10_p_full,
            alpha_season=self.alpha_season, relative_floor=self.relative_floor, warmup=self.warmup,
            tail_quantile=self.tail_quantile, alpha_tail=self.alpha_tail,
            new_extreme_margin=self.new_extreme_margin, new_extreme_sigmas=self.new_extreme_sigmas,
        )

    def gate(self, n_series: int) -> LikelihoodGate:
        """The findings stage for `n_series` level series with these settings."""
        return LikelihoodGate(
            n_series, threshold=self.threshold, cooldown_s=self.cooldown_s, warmup=self.gate_warmup,
            warmup_s=self.gate_warmup_s, warmup_min=self.gate_warmup_min,
            alpha_long=self.alpha_long, short=self.short, record_decay=self.record_decay,
            raw_passthrough=self.raw_passthrough, min_raw=self.min_raw, record_power=self.record_power,
            likelihood_floor=self.artime_level_threshold if self.artime else 0.0,
        )


# the novelty mode the service runs (`LevelSettings.novelty_mode`), and `voxwatch anomaly nab` scores
# by default: one parameter set for both
SERVICE_NOVELTY = "quiet"


class MultivariateSettings(BaseModel):
    """Per-stage feature vectors for the isolation forest: one entity per distinct value of
    `entity_labels`, one feature per metric (histograms by their P99, counters by their rate summed
    over the other labels, gauges summed likewise)."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    entity_labels: list[str] = ["stage", "region"]
    features: list[str] = [
        "voxwatch_stage_latency_seconds",
        "voxwatch_stage_errors_total",
        "voxwatch_stage_timeouts_total",
        "voxwatch_stage_inflight",
    ]
    max_entities: int = Field(256, ge=1)
    refit_every: int = Field(240, ge=10)  # ticks: an hour at the 15 s step
    threshold: float = Field(0.62, gt=0, le=1)  # on the forest's own anomaly score
    peer_margin: float = Field(0.1, ge=0)  # and this far above the median entity of the tick
    persistence: int = Field(5, ge=1)  # ticks averaged: an odd combination must last
    cooldown_s: float = Field(21600.0, ge=0)


class AnomalySettings(BaseModel):
    """The service's parameters; `AnomalySettings.model_validate(yaml_dict)` checks a config file."""

    model_config = ConfigDict(extra="forbid")
    bank_size: int = Field(512, ge=1)  # series per vectorised detector bank
    lag_s: float = Field(5.0, ge=0)  # read the store this far behind now, so batched writes have landed
    step_s: float = Field(15.0, gt=0)  # stored samples are read in steps of this length (one point per series)
    metrics: list[str] | None = None  # watch only these catalog metrics (None: every stored metric)
    # never watched: the sink's own bookkeeping, whose values follow its flush timing and the moments
    # new series first appear (a histogram's first new label set adds ~16 series rows at once), not
    # anything a caller or an operator lives with; the sink's faults have their own rules
    ignore: list[str] = ["voxwatch_sink_rows_written_total", "voxwatch_sink_batch_rows"]
    # series whose steps are decisions, not symptoms (what the autoscaler asks for and has, its scale
    # events): the level view judges them, the pattern views (novelty, ARTime) do not, as for every
    # capacity the catalog names (a `capacity_metric`, and its `_ceiling`), which an autoscaler or an
    # operator sets. Their effect is watched where it shows: the busy workers against the ceiling
    expected_steps: list[str] = ["voxwatch_autoscaler_desired_replicas", "voxwatch_autoscaler_ready_replicas",
                                 "voxwatch_autoscaler_scale_events_total"]
    quantile: float = Field(0.99, gt=0, lt=1)  # statistic watched on histograms
    min_observations: int = Field(50, ge=1)  # per step, for that step's quantile to be judged
    saturation: SaturationSettings = SaturationSettings()
    # the level view with the quiet novelty view beside it (anomaly/README.md, ninth push);
    # `LevelSettings()` alone is the level view
    level: LevelSettings = Field(default_factory=lambda: LevelSettings.novelty_mode(SERVICE_NOVELTY))
    multivariate: MultivariateSettings = MultivariateSettings()

    @field_validator("level", mode="before")
    @classmethod
    def _level_over_the_service_default(cls, value):
        # a config that sets one level field (`level: {threshold: 0.5}`) changes that field of the
        # service's level bank, not the whole bank back to the bare level view
        if isinstance(value, dict):
            return {**LevelSettings.novelty_mode(SERVICE_NOVELTY).model_dump(), **value}
        return value


@dataclass
class _Bank:
    """A block of series slots sharing one vectorised detector and its findings stage."""

    detector: Detector
    gate: LikelihoodGate
    keys: list[SeriesKey] = field(default_factory=list)


class _Role:
    """All banks of one detector kind, and which slot each series has."""

    def __init__(self, make: Callable[[], _Bank], bank_size: int,
                 on_new: Callable[[_Bank, int, SeriesKey], None] | None = None) -> None:
        self.make, self.bank_size, self.on_new = make, bank_size, on_new
        self.banks: list[_Bank] = []
        self.slots: dict[SeriesKey, tuple[int, int]] = {}

    def slot(self, key: SeriesKey) -> tuple[int, int]:
        found = self.slots.get(key)
        if found is None:
            if not self.banks or len(self.banks[-1].keys) >= self.bank_size:
                self.banks.append(self.make())
            b = len(self.banks) - 1
            self.banks[b].keys.append(key)
            found = self.slots[key] = (b, len(self.banks[b].keys) - 1)
            if self.on_new is not None:
                self.on_new(self.banks[b], found[1], key)
        return found


class AnomalyService:
    def __init__(
        self,
        sink=None,
        clock: Clock | None = None,
        catalog=None,
        settings: AnomalySettings | None = None,
        on_finding: Iterable[Callable[[Finding], None]] = (),
    ) -> None:
        self.sink = sink
        self.clock = clock or WallClock()
        self.catalog = catalog
        self.settings = settings or AnomalySettings()
        self._ignored = frozenset(self.settings.ignore)
        self.on_finding: list[Callable[[Finding], None]] = list(on_finding)
        self.deriver = SeriesDeriver(quantile=self.settings.quantile, min_observations=self.settings.min_observations)
        self.findings_total: Counter = Counter()
        self.callback_errors = 0
        self.ticks = 0
        self.watermark_ms: int | None = None
        self._capacity_latest: dict[tuple[str, tuple], float] = {}
        s, lv, n = self.settings.saturation, self.settings.level, self.settings.bank_size
        self.saturation = _Role(
            lambda: _Bank(
                SaturationTrend(n, capacity=np.nan, window=s.window, horizon_s=s.horizon_s,
                                min_rise_sigmas=s.min_rise_sigmas),
                # saturation scores are already calibrated (confidence x urgency): a plain threshold
                LikelihoodGate(n, mode="direct", threshold=s.threshold, cooldown_s=s.cooldown_s),
            ),
            n,
        )
        capacities = {spec.capacity_metric for spec in (catalog or ()) if spec.capacity_metric}
        self._expected_steps = frozenset(self.settings.expected_steps) | capacities | {
            c + "_ceiling" for c in capacities}
        self.level = _Role(lambda: _Bank(lv.detector(n), lv.gate(n)), n, on_new=self._new_level_series)
        mv = self.settings.multivariate
        self._mv_features = {m: i for i, m in enumerate(mv.features)}
        self._mv_entities: dict[tuple, int] = {}
        self.multivariate = None
        if mv.enabled and mv.features:
            self.multivariate = MultivariateIsolation(
                mv.max_entities, len(mv.features), feature_names=list(mv.features), refit_every=mv.refit_every)
            # the forest's score is calibrated already (about 0.45 for ordinary vectors, towards 1 for
            # isolated ones), but one odd tick in thousands is ordinary: a threshold on its short average
            self._mv_gate = LikelihoodGate(mv.max_entities, mode="persistent", short=mv.persistence,
                                           threshold=mv.threshold, cooldown_s=mv.cooldown_s)

    def close(self) -> None:
        """Stop the background refit thread of the multivariate detector."""
        if self.multivariate is not None:
            self.multivariate.close()

    # -- what is watched how --------------------------------------------------------------------
    def _new_level_series(self, bank: _Bank, slot: int, key: SeriesKey) -> None:
        judged = getattr(bank.detector, "patterns_judged", None)
        if judged is not None and key.metric in self._expected_steps:
            judged[slot] = False

    def _spec(self, metric: str):
        return self.catalog.get(metric) if self.catalog is not None else None

    def _capacity(self, key: SeriesKey) -> float | None:
        """The capacity a series saturates against, or None when it is not a saturation series."""
        spec = self._spec(key.metric)
        if spec is None or key.metric in self.settings.saturation.exclude:
            return None
        if spec.capacity is not None:
            return float(spec.capacity)
        if spec.capacity_metric:
            cap_spec = self._spec(spec.capacity_metric)
            cap_labels = cap_spec.labels if cap_spec is not None else ()
            labels = key.labels_dict
            lookup = (spec.capacity_metric, labels_key({k: labels.get(k, "") for k in cap_labels}))
            capacity = self._capacity_latest.get(lookup, math.nan)  # NaN until the capacity is seen
            # an autoscaled capacity grows up to its ceiling (the autoscaler's max replicas, the gauge
            # named <capacity metric>_ceiling): that, not today's replicas, is what runs out
            ceiling = self._capacity_latest.get((spec.capacity_metric + "_ceiling", lookup[1]), math.nan)
            return float(np.fmax(capacity, ceiling))
        return None  # a ratio without a declared capacity (a hit ratio, an error share) is not a resource

    # -- feeding --------------------------------------------------------------------------------
    def observe(self, ts: float, samples: Iterable[Sample | tuple]) -> list[Finding]:
        """Feed one tick of samples (live). Tuples are (metric, labels dict, value) gauges."""
        batch = [s if isinstance(s, Sample) else Sample(s[0], dict(s[1]), float(s[2])) for s in samples]
        if self._ignored:
            batch = [s for s in batch if s.metric not in self._ignored]
        derived = self.deriver.derive(ts, batch)
        for key, value in derived:  # capacities first, so this tick's saturation uses them
            self._capacity_latest[(key.metric, key.labels)] = value
        per_bank: dict[tuple[int, int], list[tuple[int, float]]] = {}
        for key, value in derived:
            cap = self._capacity(key)
            role = 0 if cap is not None else 1
            bank, slot = (self.saturation if role == 0 else self.level).slot(key)
            if role == 0:
                self.saturation.banks[bank].detector.capacity[slot] = cap
            elif key in self.deriver.resolution:
                self.level.banks[bank].detector.resolution[slot] = self.deriver.resolution[key]
            per_bank.setdefault((role, bank), []).append((slot, value))
        findings: list[Finding] = []
        for (role, b), items in per_bank.items():
            bank = (self.saturation if role == 0 else self.level).banks[b]
            values = np.full(bank.detector.n_series, np.nan)
            slots = np.fromiter((i for i, _ in items), dtype=np.int64, count=len(items))
            values[slots] = [v for _, v in items]
            scores = bank.detector.update(ts, values)
            gate = bank.gate.update(ts, scores.score, calibrated=scores.calibrated, episodic=scores.episodic)
            for i in np.flatnonzero(gate.fired):
                findings.append(self._finding(ts, bank, int(i), values[i], scores, gate.score[i]))
        if self.multivariate is not None:
            findings.extend(self._observe_multivariate(ts, derived))
        self.ticks += 1
        self._publish(findings)
        return findings

    def _observe_multivariate(self, ts: float, derived) -> list[Finding]:
        mv = self.settings.multivariate
        vectors: dict[int, np.ndarray] = {}
        for key, value in derived:
            f = self._mv_features.get(key.metric)
            if f is None:
                continue
            labels = key.labels_dict
            if any(k not in labels for k in mv.entity_labels):
                continue
            entity = tuple(labels[k] for k in mv.entity_labels)
            slot = self._mv_entities.get(entity)
            if slot is None:
                if len(self._mv_entities) >= mv.max_entities:
                    self.deriver.skipped["multivariate_entity_limit"] += 1
                    continue
                slot = self._mv_entities[entity] = len(self._mv_entities)
            vec = vectors.get(slot)
            if vec is None:
                vec = vectors[slot] = np.zeros(len(mv.features))
                vec[:] = np.nan
            vec[f] = value if np.isnan(vec[f]) else vec[f] + value  # summed over the other labels
        if not vectors:
            return []
        tick = np.full((mv.max_entities, len(mv.features)), np.nan)
        for slot, vec in vectors.items():
            tick[slot] = vec
        scores = self.multivariate.update(ts, tick)
        # an entity out of line with its peers, not a tick where every stage moved together
        peers = np.nanmedian(scores.score) if np.isfinite(scores.score).sum() >= 3 else np.nan
        score = np.where(scores.score - peers >= self.settings.multivariate.peer_margin, scores.score, 0.0)
        score = np.where(np.isfinite(scores.score), score, np.nan)
        gate = self._mv_gate.update(ts, score)
        names = {slot: entity for entity, slot in self._mv_entities.items()}
        out = []
        for i in np.flatnonzero(gate.fired):
            entity = dict(zip(mv.entity_labels, names[int(i)]))
            top = str(self.multivariate.last_top_feature[i])
            described = ", ".join(f"{k}={v}" for k, v in entity.items())
            values = ", ".join(f"{m.removeprefix('voxwatch_')} {v:.3g}" for m, v in zip(mv.features, tick[i]))
            out.append(Finding(
                ts=float(ts), detector=self.multivariate.name, kind="multivariate", metric=top, labels=entity,
                score=float(gate.score[i]), value=float(tick[i][self._mv_features[top]]),
                confidence=float(scores.score[i]),
                reason=f"{described}: unusual combination ({values}); most off: {top}",
            ))
        return out

    def _finding(self, ts, bank: _Bank, i: int, value: float, scores, score: float) -> Finding:
        key = bank.keys[i]
        det = bank.detector
        kind = str(scores.kind[i])
        lo, hi = float(scores.expected_low[i]), float(scores.expected_high[i])
        tte = float(scores.time_to_exhaustion_s[i]) if scores.time_to_exhaustion_s is not None else math.nan
        conf = float(scores.confidence[i]) if scores.confidence is not None else float(score)
        if isinstance(det, SaturationTrend):
            cap = float(det.capacity[i])
            reason = (
                f"{key.describe()} at {value:.3g} of capacity {cap:.3g}, rising {det.slope[i] * 60:.3g}/min: "
                f"exhausted in {tte / 60:.1f} min (confidence {conf:.2f})"
            )
        else:
            reason = f"{key.describe()} = {value:.4g}, expected {lo:.4g} to {hi:.4g} ({kind.replace('_', ' ')})"
        return Finding(
            ts=float(ts), detector=det.name, kind=kind, metric=key.metric, labels=key.labels_dict,
            score=float(score), value=float(value), expected_low=lo, expected_high=hi,
            time_to_exhaustion_s=tte, confidence=conf, reason=reason, fingerprint=key.fingerprint,
        )

    def _publish(self, findings: list[Finding]) -> None:
        if not findings:
            return
        for f in findings:
            self.findings_total[f.kind] += 1
        if self.sink is not None:
            self.sink.write("anomaly_findings", [f.to_row() for f in findings])
        for f in findings:
            for callback in self.on_finding:
                try:
                    callback(f)
                except Exception:  # a subscriber's bug must not stop detection
                    self.callback_errors += 1
                    log.exception("on_finding callback %r failed", callback)

    # -- reading the store (the SQL is telemetry's: telemetry.store.series_reads) ---------------
    def poll_store(self, store, until_ms: int | None = None) -> list[Finding]:
        """Score every whole step stored since the last poll (up to now - lag), tick by tick."""
        step_ms = int(self.settings.step_s * 1000)
        if until_ms is None:
            until_ms = self.clock.now_ms() - int(self.settings.lag_s * 1000)
        until_ms = until_ms // step_ms * step_ms  # only whole steps: a step is read once, complete
        after = self.watermark_ms if self.watermark_ms is not None else -(2**62)
        if until_ms <= after:
            return []
        metrics = self.settings.metrics
        ids = [self.catalog[m].id for m in metrics if self.catalog is not None and m in self.catalog] if metrics is not None else None
        frame = stepped_samples(store, after, until_ms, step_ms, metrics=metrics, metric_ids=ids)
        self.watermark_ms = int(until_ms)
        findings: list[Finding] = []
        if frame.empty:
            return findings
        ts_ms = frame["ts_ms"].to_numpy()
        cuts = np.flatnonzero(np.diff(ts_ms)) + 1
        cols = [frame[c].tolist() for c in ("fingerprint", "value", "metric", "sample_name", "metric_type",
                                              "label_keys", "label_values", "last_ts")]
        for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(frame)]):
            # counters' rates use when the last sample of the step was taken, not the step's start
            samples = [
                Sample(cols[2][j], dict(zip(cols[5][j], cols[6][j])), float(cols[1][j]), cols[3][j], cols[4][j],
                       int(cols[0][j]), cols[7][j] / 1000.0)
                for j in range(lo, hi)
            ]
            findings.extend(self.observe(ts_ms[lo] / 1000.0, samples))
        return findings

    async def run(self, store, interval_s: float = 10.0, stop: asyncio.Event | None = None) -> None:
        """Poll the store every `interval_s` of the service's clock until `stop` is set."""
        while stop is None or not stop.is_set():
            try:
                self.poll_store(store)
            except Exception:
                log.exception("anomaly poll failed; retrying next interval")
            await self.clock.sleep(interval_s)

    # -- accounting -----------------------------------------------------------------------------
    def skipped(self) -> dict[str, int]:
        """Points left out, by cause, across the deriver and every detector."""
        total = Counter(self.deriver.skipped)
        for role in (self.saturation, self.level):
            for bank in role.banks:
                total.update(bank.detector.skipped)
        if self.multivariate is not None:
            total.update({f"multivariate_{k}": v for k, v in self.multivariate.skipped.items()})
        return dict(total)

    def stats(self) -> dict:
        return {
            "ticks": self.ticks,
            "series": {"saturation": len(self.saturation.slots), "level": len(self.level.slots),
                       "multivariate_entities": len(self._mv_entities)},
            "findings": dict(self.findings_total),
            "skipped": self.skipped(),
            "callback_errors": self.callback_errors,
        }
