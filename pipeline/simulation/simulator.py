"""The load simulator: thousands of concurrent calls through the pipeline's own pools, caches, retry
queue, regions, handoff queue, degradation controller and telemetry, with simulated engines.

Why turns are processed in batches: at 15,000 concurrent calls a turn ends somewhere about every
0.7 ms; replaying that 60 times faster than real time leaves roughly 10 us of one core per turn, less
than one asyncio task switch. So each call is a row of state (numpy arrays) and the driver advances
time in ticks (1 s on the virtual clock): every turn whose caller stops speaking inside the tick is
drawn through the stage models as arrays, while everything stateful is the real code: each request
to a downstream service is served by `ConnectionPool.serve` (an exact FIFO queue over the pool's
connections, in time order, with acquire timeouts), every cache lookup is a real `TTLCache` lookup,
queued actions go through `IntegrationQueue` with its retries, handoffs through `HandoffQueue`, the
degradation policy is read from the controller each tick, and regions fail over in `RegionRouter`.

The same driver runs on the wall clock for live load (smaller ticks, sleeping until each tick is
due). `on_tick(now)` hooks run once per simulated second: detectors and alert evaluation attach here.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pipeline.degradation import DegradationLevel
from pipeline.engines import FALLBACK_INTENT, HUMAN_INTENT, IntegrationAction
from pipeline.handoff import HandoffRequest
from pipeline.intents import intent_arrays
from pipeline.observe import NullMetrics
from pipeline.runner import Pipeline, PipelineConfig, TurnBatch
from pipeline.simulation.engines import simulated_engines
from pipeline.simulation.models import SimulatedMetrics, SimulatorSecond
from pipeline.simulation.scenario import Latency, Scenario
from telemetry.clock import VirtualClock
from telemetry.traces import call_columns, call_record, span_columns

MAX_TURNS = 40
STAGES = ("edge", "stt", "nlu", "response", "integrations", "tts")
OUTCOMES = ("completed", "handoff", "abandoned", "failed", "silence")
LEVEL_NAMES = [m.name for m in DegradationLevel]
GREETING_S = 2.5  # the agent's greeting before the caller's first utterance
FAILED_TURN_S = 3.0  # dead air before a caller notices a turn that went nowhere


def _lognormal(rng: np.random.Generator, lat: Latency, n: int, factor: float | np.ndarray = 1.0) -> np.ndarray:
    return rng.lognormal(lat.mu, lat.sigma, n) * factor


def _mean(lat: Latency) -> float:
    return math.exp(lat.mu + lat.sigma**2 / 2)


def pipeline_config(sc: Scenario) -> PipelineConfig:
    """The shared parts a scenario asks for: regions, pools, caches, the human agents."""
    return PipelineConfig(
        regions=[r.model_dump() for r in sc.regions],
        pools={name: p.model_dump() for name, p in sc.pools.items()},
        caches={name: c.model_dump() for name, c in sc.caches.items()},
        human_agents=sc.handoff.agents,
        handoff_handle_time_s=sc.handoff.handle_time_s,
        scenario=sc.name,
    )


@dataclass
class TickHook:
    fn: Callable
    is_async: bool


class Simulation:
    """`Simulation(scenario, clock=..., telemetry=..., sink=..., seed=...).run(until=...)`.

    - `clock`: a VirtualClock (default, as fast as possible) or a WallClock (live load).
    - `telemetry`: a `telemetry.instruments.Telemetry`; the pipeline records its catalog metrics there.
    - `sink`: where call records, spans and degradation actions go (`telemetry.sink.Sink`).
    - `on_tick(fn)`: `fn(now)` (sync or async) after every simulated second.
    - `pipeline`: the shared parts; `pipeline.controller` is the degradation control surface.
    """

    def __init__(
        self,
        scenario: Scenario,
        *,
        clock=None,
        telemetry=None,
        sink=None,
        seed: int | None = None,
        metrics=None,
        trace_sample_rate: float | None = None,
        tick_s: float | None = None,
        snapshot: Callable[[float], object] | None = None,
    ) -> None:
        self.scenario = sc = scenario
        self.clock = clock if clock is not None else VirtualClock(sc.start)
        self.virtual = isinstance(self.clock, VirtualClock)
        self.seed = sc.seed if seed is None else int(seed)
        self.rng = np.random.default_rng(self.seed)
        if metrics is None and telemetry is not None:
            metrics = SimulatedMetrics(telemetry, seed=self.seed)
        self.metrics = metrics or NullMetrics()
        if hasattr(self.metrics, "buffered"):
            self.metrics.buffered = True
        self.telemetry = telemetry
        self.sink = sink
        self.snapshot = snapshot
        if trace_sample_rate is None:
            trace_sample_rate = sc.telemetry.trace_sample_rate
        if trace_sample_rate is None:
            trace_sample_rate = min(1.0, 500.0 / sc.traffic.concurrent_calls)
        self.trace_sample_rate = trace_sample_rate
        self.tick_s = tick_s or (sc.tick_s if self.virtual else min(sc.tick_s, 0.1))
        self.engines = simulated_engines(sc.engines, self.clock, self.seed)
        self.pipeline = Pipeline(self.engines, clock=self.clock, metrics=self.metrics, sink=sink, config=pipeline_config(sc), seed=self.seed)
        self.pipeline.handoff.patience_s = sc.handoff.patience_s
        self.controller = self.pipeline.controller
        self.pipeline.queue.capacity = sc.actions.capacity
        self.pipeline.queue.retry.max_attempts = sc.actions.max_attempts
        self.t0 = self.clock.now()
        self.t = 0.0  # scenario seconds done
        self._hooks: list[TickHook] = []
        self._next_second = 0.0
        self._region_names = [r.name for r in sc.regions]
        self._region_weights = np.array([r.weight for r in sc.regions]) / sum(r.weight for r in sc.regions)
        self._region_capacity = np.array([r.capacity for r in sc.regions])
        self._langs = list(sc.caller.languages)
        self._lang_p = np.array(list(sc.caller.languages.values()), dtype=float)
        self._lang_p /= self._lang_p.sum()
        self._intent_names = list(sc.intents)
        for extra in (FALLBACK_INTENT, "goodbye"):
            if extra not in self._intent_names:
                self._intent_names.append(extra)
        self._intent_idx = {n: i for i, n in enumerate(self._intent_names)}
        base = np.array([sc.intents.get(n, 0.0) for n in self._intent_names], dtype=float)
        boost = np.array([sc.traffic.ramp_intent_boost.get(n, 0.0) for n in self._intent_names], dtype=float)
        self._mix_base, self._mix_boost = base, boost
        self._build_intent_tables()
        c = sc.caller
        self._cycle_mean = _mean(c.utterance) + _mean(c.reply_audio) + _mean(c.pause) + 0.25
        self._call_mean_s = GREETING_S + c.turns_mean * self._cycle_mean
        # calls also end early (hang-ups, handoffs): the expected number of turns is shorter
        p_end = 1.0 / c.turns_mean + c.hangup_rate + sc.intents.get(HUMAN_INTENT, 0.0) / max(sum(sc.intents.values()), 1e-9) + 0.01
        self._duration_est = GREETING_S + self._cycle_mean / p_end
        # departures per second, smoothed; starts at what Little's law expects for the opening load
        self._departure_rate = sc.traffic.concurrent_calls * sc.traffic.factor(0.0) / self._duration_est
        self._ended_this_tick = 0
        self._last_step_dt = 0.0
        cap = int(sc.traffic.concurrent_calls * 1.5) + 1024
        self._alloc(cap)
        self._seq = 0
        self._populated_seq = 0
        self._fault_acc: dict[int, float] = {}
        self._fault_active: dict[int, bool] = {}
        # results kept for the summary
        self.totals = {"calls_started": 0, "calls_rejected": 0, "turns": 0, "turns_failed": 0, "llm_calls": 0, "llm_avoided": 0, "handoffs": 0, "queued_actions": 0, "integration_errors": 0}
        self.outcomes = dict.fromkeys(OUTCOMES, 0)
        self.rows = {"calls": 0, "spans": 0}
        self.timeline: list[dict] = []
        self._window: dict[str, list[np.ndarray]] = {s: [] for s in (*STAGES, "turn")}
        self._window_start = 0.0
        self._window_s = 60.0
        self._peak_active = 0
        self._pool_first_saturated: dict[str, float] = {}
        self._pool_saturated_run: dict[str, int] = {}
        self._wall = 0.0
        self._wall_elapsed = 0.0  # wall seconds spent so far (for the speed gauge)
        self._tick_wall: list[float] = []
        self._pending: dict[str, list[dict]] = {}
        self._events = {"arrival": 0, "turn": 0, "hangup": 0, "fault": 0}
        self._llm_factor = 1.0
        self._hold_factor = dict.fromkeys(self._systems, 1.0)
        self._err_extra = dict.fromkeys(self._systems, 0.0)
        self._timeout_rate = dict.fromkeys(self._systems, 0.0)

    # ------------------------------------------------------------------ public surface
    def on_tick(self, fn: Callable) -> Callable:
        """Register `fn(now)` to run after every simulated second (sync or async); returns fn."""
        self._hooks.append(TickHook(fn, inspect.iscoroutinefunction(fn)))
        return fn

    @property
    def active_calls(self) -> int:
        return int(self._alive.sum())

    def run(self, until: float | None = None, progress: Callable[[float, float], None] | None = None) -> dict:
        """Run to `until` scenario seconds (default: the scenario's duration) and return the summary."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.run_async(until, progress))
        raise RuntimeError("Simulation.run() called inside an event loop; await run_async() instead")

    async def run_async(self, until: float | None = None, progress: Callable[[float, float], None] | None = None) -> dict:
        end = self.scenario.duration_s if until is None else min(until, self.scenario.duration_s)
        wall0 = time.perf_counter()
        if self.t == 0.0 and not self._alive.any():
            self._populate(self.t0)
            await self._second(self.t0)
        dt = self.tick_s
        while self.t < end - 1e-9:
            step = min(dt, end - self.t)
            now = self.t0 + self.t
            if self.virtual:
                if now > self.clock.now():
                    self.clock.advance_to(now)
            else:
                lag = now - self.clock.now()
                if lag > 0:
                    await self.clock.sleep(lag)
            w0 = time.perf_counter()
            self._step(now, step)
            w1 = time.perf_counter()
            self._tick_wall.append(w1 - w0)
            self._wall_elapsed = self._wall + (w1 - wall0)
            self.t += step
            if self.t + 1e-9 >= self._next_second:
                await self._second(self.t0 + self.t)
            else:
                await asyncio.sleep(0)
            if progress is not None:
                progress(self.t, end)
        if self.virtual and self.clock.now() < self.t0 + self.t:
            self.clock.advance_to(self.t0 + self.t)
        self._close_window(self.t0 + self.t)
        if hasattr(self.metrics, "flush_histograms"):
            self.metrics.flush_histograms(slow=True)
        if self.sink is not None:
            self._flush_rows()
        self._wall += time.perf_counter() - wall0
        return self.summary()

    # ------------------------------------------------------------------ state
    def _alloc(self, cap: int) -> None:
        self._cap = cap
        self._alive = np.zeros(cap, bool)
        self._next_at = np.full(cap, np.inf)
        self._origin = np.zeros(cap, np.int16)
        self._lang = np.zeros(cap, np.int16)
        self._customer = np.zeros(cap, np.int64)
        self._started = np.zeros(cap)
        self._turns_done = np.zeros(cap, np.int16)
        self._turns_planned = np.zeros(cap, np.int16)
        self._misunder = np.zeros(cap, np.int8)
        self._failed_turns = np.zeros(cap, np.int8)
        self._history_known = np.zeros(cap, bool)
        self._level_max = np.zeros(cap, np.int8)
        self._traced = np.zeros(cap, bool)
        self._call_seq = np.zeros(cap, np.int64)
        self._lat = np.zeros((cap, MAX_TURNS), np.float32)
        self._intents = np.zeros((cap, MAX_TURNS), np.int8)
        self._served_by = np.zeros(cap, np.int16)
        self._free = list(range(cap - 1, -1, -1))

    def _grow(self) -> None:
        old = self._cap
        new = old * 2
        for name in ("_alive", "_next_at", "_origin", "_lang", "_customer", "_started", "_turns_done", "_turns_planned", "_misunder", "_failed_turns", "_history_known", "_level_max", "_traced", "_call_seq", "_served_by"):
            a = getattr(self, name)
            b = np.full(new, np.inf) if name == "_next_at" else np.zeros(new, a.dtype)
            b[:old] = a
            setattr(self, name, b)
        for name in ("_lat", "_intents"):
            a = getattr(self, name)
            b = np.zeros((new, MAX_TURNS), a.dtype)
            b[:old] = a
            setattr(self, name, b)
        self._free = list(range(new - 1, old - 1, -1)) + self._free
        self._cap = new

    def _build_intent_tables(self) -> None:
        self.intents = tab = intent_arrays(self._intent_names)  # what the stages' batch forms read
        self._systems = list(tab.systems)
        self._fallback_idx = tab.fallback
        self._goodbye_idx = tab.goodbye

    def _intent_mix(self, t: float) -> np.ndarray:
        p = self._mix_base + self._mix_boost * self.scenario.traffic.ramp_progress(t)
        p[self._fallback_idx] = 0.0
        return np.cumsum(p / p.sum())

    # ------------------------------------------------------------------ calls
    def _new_calls(self, n: int, now: float, spread_s: float) -> None:
        if n <= 0:
            return
        sc, rng = self.scenario, self.rng
        origins = rng.choice(len(self._region_names), size=n, p=self._region_weights)
        arrivals = now + rng.random(n) * spread_s
        silent = rng.random(n) < sc.caller.silence_rate
        # admission: the serving region must be up and under its capacity
        served = np.array([self._serving_idx(o) for o in range(len(self._region_names))])
        active_by_region = np.bincount(self._served_by[self._alive], minlength=len(self._region_names))
        for r in range(len(self._region_names)):
            mask = origins == r
            k = int(mask.sum())
            if not k:
                continue
            s = served[r]
            if s < 0:
                self.totals["calls_rejected"] += k
                self.metrics.calls_rejected(self._region_names[r], "region_down", k)
                origins[mask] = -1
                continue
            room = max(0, int(self._region_capacity[s]) - int(active_by_region[s]))
            if k > room:
                idx = np.flatnonzero(mask)[room:]
                origins[idx] = -1
                self.totals["calls_rejected"] += len(idx)
                self.metrics.calls_rejected(self._region_names[s], "at_capacity", len(idx))
            active_by_region[s] += min(k, room)
            if s != r:
                self.metrics.routing(self._region_names[s], "failover", min(k, room))
        keep = origins >= 0
        origins, arrivals, silent = origins[keep], arrivals[keep], silent[keep]
        n = len(origins)
        if not n:
            return
        regions_served = served[origins]
        for r in np.unique(regions_served):
            k = int((regions_served == r).sum())
            self.metrics.call_started(self._region_names[r], "simulated", k)
            self.metrics.routing(self._region_names[r], "nearest", k)
        self.totals["calls_started"] += n
        self._events["arrival"] += n
        # callers who never speak end after a few seconds of silence
        for i in np.flatnonzero(silent):
            self._seq += 1
            self.outcomes["silence"] += 1
            self._write_silent_call(self._seq, self._region_names[regions_served[i]], float(arrivals[i]))
        talk = ~silent
        origins, arrivals, regions_served = origins[talk], arrivals[talk], regions_served[talk]
        n = len(origins)
        while len(self._free) < n:
            self._grow()
        slots = np.array([self._free.pop() for _ in range(n)], dtype=np.int64)
        c = sc.caller
        self._alive[slots] = True
        self._origin[slots] = origins
        self._served_by[slots] = regions_served
        self._lang[slots] = rng.choice(len(self._langs), size=n, p=self._lang_p)
        by_lang = np.bincount(self._lang[slots], minlength=len(self._langs))
        for li in np.flatnonzero(by_lang):
            self.metrics.calls_by_language(self._langs[li], int(by_lang[li]))
        # repeat callers: a heavy-tailed draw over the customer base, so history caches get real hits
        self._customer[slots] = np.minimum(rng.zipf(1.3, n), c.customers) + rng.integers(0, 3, n) * c.customers
        self._started[slots] = arrivals
        self._turns_done[slots] = 0
        self._turns_planned[slots] = np.clip(rng.geometric(1.0 / c.turns_mean, n), 1, MAX_TURNS)
        self._misunder[slots] = 0
        self._failed_turns[slots] = 0
        self._history_known[slots] = False
        self._level_max[slots] = int(self.controller.level)
        self._traced[slots] = rng.random(n) < self.trace_sample_rate
        seqs = np.arange(self._seq + 1, self._seq + n + 1)
        self._seq += n
        self._call_seq[slots] = seqs
        self._next_at[slots] = arrivals + GREETING_S + _lognormal(rng, c.utterance, n)
        self._lat[slots] = 0
        self._intents[slots] = 0

    def _populate(self, now: float) -> None:
        """Start mid-day: the traffic shape's concurrency at t=0, each call somewhere in its life."""
        n = int(round(self.scenario.traffic.concurrent_calls * self.scenario.traffic.factor(0.0)))
        if n <= 0:
            return
        before = self._seq
        self._new_calls(n, now - self._call_mean_s, 0.0)
        alive = np.flatnonzero(self._alive & (self._call_seq > before))
        rng = self.rng
        # turns are geometric, so a call in progress has as many turns ahead as a new one (memoryless):
        # draw its age separately and add it to the turns it still has
        k = len(alive)
        done = np.minimum(rng.geometric(1.0 / self.scenario.caller.turns_mean, k) - 1, MAX_TURNS // 2).astype(np.int16)
        self._turns_done[alive] = done
        self._turns_planned[alive] = np.minimum(self._turns_planned[alive] + done, MAX_TURNS)
        self._started[alive] = now - done * self._cycle_mean - rng.random(len(alive)) * self._cycle_mean
        self._next_at[alive] = now + rng.random(len(alive)) * self._cycle_mean
        self._history_known[alive] = done > 0
        # and some were misunderstood once already (a second time hands them over)
        f = self.scenario.engines.fallback_rate
        self._misunder[alive] = rng.random(k) < 1.0 - (1.0 - f) ** done
        self._populated_seq = self._seq
        self._lat[alive, :] = 0.0
        # mid-day the human agents are already busy with the handoffs of the last handle time;
        # starting them all idle would show a climb from zero that a trend detector rightly flags
        hq = self.pipeline.handoff
        share, turns = self._call_ends()
        # a call leaves the active set when its last turn starts (Little's law over that span)
        in_system_s = GREETING_S + _mean(self.scenario.caller.utterance) + (turns - 1.0) * self._cycle_mean
        busy = int(round(share * n / in_system_s * hq.handle_time_s))
        if busy > 0 and hq.agents:
            hq.occupy(busy, now, rng.random(busy) * hq.handle_time_s)  # residual handle times

    def _call_ends(self) -> tuple[float, float]:
        """(share of calls that end with a human, expected turns per call), from the caller model
        and the intent mix: each turn but the last may ask for a human or be misunderstood (twice
        hands over), hang up, or go on; the last turn is a goodbye."""
        sc = self.scenario
        c, f = sc.caller, sc.engines.fallback_rate
        p_human = sc.intents.get(HUMAN_INTENT, 0.0) / max(sum(sc.intents.values()), 1e-9)
        p_last = 1.0 / c.turns_mean
        alive = np.array([1.0, 0.0])  # probability mass of calls going on, by misunderstandings so far
        handed = turns = 0.0
        for _ in range(MAX_TURNS - 1):
            turns += alive.sum()
            going = alive * (1.0 - p_last)  # calls whose turn is not their last
            handed += going[1] * f + going.sum() * (1.0 - f) * p_human
            stay = going * (1.0 - f) * (1.0 - p_human) * (1.0 - c.hangup_rate)
            alive = np.array([stay[0], stay[1] + going[0] * f * (1.0 - c.hangup_rate)])
        return float(handed), float(turns + alive.sum())

    def _serving_idx(self, origin: int) -> int:
        s = self.pipeline.regions.serving(self._region_names[origin])
        if s is None or not self.pipeline.regions.is_up(s):
            return -1
        return self._region_names.index(s)

    # ------------------------------------------------------------------ faults
    def _apply_faults(self, t: float, now: float, dt: float) -> None:
        sc = self.scenario
        regions = self.pipeline.regions
        llm_factor = 1.0
        hold = {s: 1.0 for s in self._systems}
        err = {s: 0.0 for s in self._systems}
        tmo = {s: 0.0 for s in self._systems}
        down: set[str] = set()
        for i, f in enumerate(sc.faults):
            active = f.active(t)
            was = self._fault_active.get(i, False)
            self._fault_active[i] = active
            if active != was:
                self._events["fault"] += 1
            progress = 1.0
            ramp = getattr(f, "ramp_s", 0.0)
            if active and ramp:
                progress = min(1.0, (t - f.start_s) / ramp)
            if f.kind == "pool_leak":
                pool = self.pipeline.pools[f.pool]
                if active:
                    acc = self._fault_acc.get(i, 0.0) + f.per_minute / 60.0 * dt
                    whole = int(acc)
                    if whole:
                        pool.leak(whole)
                    self._fault_acc[i] = acc - whole
                elif was:
                    pool.reclaim()  # the leaking service was restarted
            elif f.kind == "downstream_slowdown" and active and f.pool in hold:
                hold[f.pool] *= 1.0 + (f.factor - 1.0) * progress
            elif f.kind == "llm_latency" and active:
                llm_factor *= 1.0 + (f.factor - 1.0) * progress
            elif f.kind == "integration_failure" and active:
                err[f.system] = max(err[f.system], f.error_rate)
                tmo[f.system] = max(tmo[f.system], f.timeout_rate)
            elif f.kind == "region_outage" and active:
                down.add(f.region)
            elif f.kind == "complete_outage" and active:
                down.update(self._region_names)
        for name in self._region_names:
            up = name not in down
            if regions.is_up(name) != up:
                regions.set_up(name, up, now)
        self._llm_factor, self._hold_factor, self._err_extra, self._timeout_rate = llm_factor, hold, err, tmo
        for s in self._systems:  # the scalar engines see the same faults
            conn = self.engines.connectors.get(s)
            if conn is not None:
                conn.factor, conn.extra_error_rate, conn.timeout_rate = hold[s], err[s], tmo[s]
        self.engines.llm.factor = llm_factor

    # ------------------------------------------------------------------ one tick
    def _step(self, now: float, dt: float) -> None:
        t = now - self.t0
        self._apply_faults(t, now, dt)
        if self._last_step_dt:
            a = min(1.0, self._last_step_dt / 30.0)
            self._departure_rate = (1 - a) * self._departure_rate + a * self._ended_this_tick / self._last_step_dt
        self._ended_this_tick = 0
        self._last_step_dt = dt
        self._new_calls(int(self.rng.poisson(self._arrival_rate(t) * dt)), now, dt)
        due = np.flatnonzero(self._next_at < now + dt)
        if len(due):
            self._turns(due, now, dt)
        self.pipeline.queue.step(now + dt, self._execute_queued, limit=self._queue_budget(dt))

    def _arrival_rate(self, t: float) -> float:
        """New calls per second that hold concurrency at the traffic shape's target.

        A closed loop, like a load generator holding N calls: replace the calls that ended (their
        rate smoothed over about half a minute), plus a gentle correction towards the target, capped
        so an outage's backlog returns as a surge, not as a wall.
        """
        target = self.scenario.traffic.concurrent_calls * self.scenario.traffic.factor(t)
        base = max(self._departure_rate, target / self._duration_est * 0.25)
        correction = (target - self.active_calls) / 60.0
        return float(min(max(0.0, base + correction), 3.0 * target / self._duration_est + 1.0))

    def _queue_budget(self, dt: float) -> int:
        pools = self.pipeline.pools
        # the queue's workers may use about a third of the integration pools' connections
        usable = sum(pools[s].usable for s in ("crm", "orders", "ticketing"))
        return max(20, int(usable * dt * 3))

    def _pool_requests(self, system: str, arrivals: np.ndarray, holds: np.ndarray, op_counts: dict[str, int] | None = None):
        """Serve requests through the real pool; draw the connector's outcome for those that got one.
        Returns (time the caller spent: wait + answer, ok mask, error kind array)."""
        n = len(arrivals)
        rng = self.rng
        model = self.scenario.engines.connectors[system]
        breaker = self.pipeline.breakers.get(system)
        allowed = breaker.allow(n, self.clock.now()) if breaker is not None else n
        if allowed < n:
            # an open breaker fails these at once: no connection held, no wait
            spent = np.zeros(n)
            ok = np.zeros(n, bool)
            kinds = np.full(n, "circuit_open", dtype=object)
            if allowed:
                sub = np.sort(rng.choice(n, allowed, replace=False))
                s_spent, s_ok, s_kinds = self._pool_requests_allowed(system, arrivals[sub], holds[sub], op_counts, model, breaker)
                spent[sub], ok[sub], kinds[sub] = s_spent, s_ok, s_kinds
            self.metrics.integration_batch(system, {}, np.zeros(0), np.full(n - allowed, "circuit_open"), n - allowed)
            return spent, ok, kinds
        return self._pool_requests_allowed(system, arrivals, holds, op_counts, model, breaker)

    def _pool_requests_allowed(self, system, arrivals, holds, op_counts, model, breaker):
        n = len(arrivals)
        rng = self.rng
        tmo = rng.random(n) < self._timeout_rate[system]
        holds = np.where(tmo, model.timeout_s, holds)
        pool = self.pipeline.pools[system]
        occupied = holds
        if model.after_reply is not None:
            # the connection goes back to the pool only after the work done past the answer
            tail = _lognormal(rng, model.after_reply, n, self._hold_factor.get(system, 1.0))
            occupied = holds + np.where(tmo, 0.0, tail)
        waits, timed_out = pool.serve(arrivals, occupied)
        failed = rng.random(n) < (model.error_rate + self._err_extra[system])
        ok = ~timed_out & ~tmo & ~failed
        spent = waits + np.where(timed_out, 0.0, holds)
        kinds = np.where(timed_out, "pool_timeout", np.where(tmo, "timeout", np.where(failed, "server_error", "")))
        got = ~timed_out
        self.metrics.connections_failed(system, int((tmo | failed).sum()), self._err_extra[system])
        if breaker is not None:
            # the breaker judges the downstream, not the pool: pool timeouts are our own queueing
            breaker.record(int(ok.sum()), int((tmo | failed).sum()), self.clock.now())
        self.metrics.integration_batch(system, op_counts or {}, holds[got], kinds[kinds != ""], n)
        return spent, ok, kinds

    def _turns(self, due: np.ndarray, now: float, dt: float) -> None:
        """Every turn due in this tick, through the pipeline's own stages in their batch form."""
        policy = self.controller.policy
        level = int(policy.level)
        n = len(due)
        ts = self._next_at[due].copy()
        self._next_at[due] = np.inf
        self._level_max[due] = np.maximum(self._level_max[due], level)
        b = TurnBatch(
            slots=due, ts=ts, now=now, t_rel=now - self.t0, policy=policy, origin=self._origin[due],
            language=self._lang[due], customer=self._customer[due], call_seq=self._call_seq[due],
            misunderstandings=self._misunder[due], history_known=self._history_known[due],
            last=self._turns_done[due] + 1 >= self._turns_planned[due],
        )
        b.stage_lat = {s: np.zeros(n) for s in STAGES}
        for stage in self.pipeline.stages:
            stage.run_batch(b, self)
        self._misunder[due] = b.misunderstandings
        self._history_known[due] = b.history_known
        latency = self._record_turns(b, level)
        self._callers_next(b, latency)

    def _record_turns(self, b: TurnBatch, level: int) -> np.ndarray:
        """The turns as the callers heard them: into the call rows, metrics, windows and spans."""
        slots, n = b.slots, b.n
        failed = b.failed_stage != ""
        latency = np.where(failed & ~b.edge_ok, FAILED_TURN_S, b.cum)
        col = np.minimum(self._turns_done[slots].astype(np.int64), MAX_TURNS - 1)
        self._lat[slots, col] = latency * 1000.0
        self._intents[slots, col] = b.intent
        self._turns_done[slots] += 1
        self.totals["turns"] += n
        self._events["turn"] += n
        self.totals["turns_failed"] += int(failed.sum())
        self.metrics.turn_batch(self._region_names, b.served, latency, b.failed_stage, b.stage_lat, b.live | failed)
        for s in STAGES:
            self._window[s].append(b.stage_lat[s][b.stage_lat[s] > 0])
        self._window["turn"].append(latency[b.edge_ok])
        if self.trace_sample_rate > 0:
            self._trace_turns(np.flatnonzero(self._traced[slots]), slots, b.ts, b.stage_lat, latency, b.intent, b.route, b.failed_stage, level)
        return latency

    def _callers_next(self, b: TurnBatch, latency: np.ndarray) -> None:
        """What each caller does next: another turn, hang up, give up after failures, or the call ends."""
        sc, rng, slots, n = self.scenario, self.rng, b.slots, b.n
        failed = b.failed_stage != ""
        has_handoff = b.handoff_reason != ""
        self._failed_turns[slots[failed]] += 1
        gave_up = failed & ((self._failed_turns[slots] >= 2) | ~b.edge_ok & (rng.random(n) < 0.5))
        p_hang = sc.caller.hangup_rate + np.where(latency > sc.caller.impatience_s, sc.caller.impatient_hangup_rate, 0.0)
        hung = ~has_handoff & ~gave_up & (rng.random(n) < p_hang)
        done = ~has_handoff & ~gave_up & ~hung & (self._turns_done[slots] >= self._turns_planned[slots])
        cont = ~(has_handoff | gave_up | hung | done)
        pause = _lognormal(rng, sc.caller.pause, n)
        utter = _lognormal(rng, sc.caller.utterance, n)
        self._next_at[slots[cont]] = (b.ts + latency + b.reply_audio + pause + utter)[cont]
        ended_at = b.ts + latency + np.where(done, b.reply_audio, 0.0)
        dropped = gave_up & ~b.edge_ok
        if dropped.any():
            for r in np.unique(b.origin[dropped]):
                self.metrics.calls_dropped(self._region_names[r], int((b.origin[dropped] == r).sum()))
        for outcome, mask in (("handoff", has_handoff), ("failed", gave_up), ("abandoned", hung), ("completed", done)):
            if mask.any():
                self._end_calls(slots[mask], ended_at[mask], outcome, b.served[mask], b.handoff_reason[mask] if outcome == "handoff" else None)

    # ------------------------------------------------------------------ services for the stages' batch forms
    @property
    def region_names(self) -> list[str]:
        return self._region_names

    @property
    def languages(self) -> list[str]:
        return self._langs

    @property
    def engine_models(self):
        return self.scenario.engines

    @property
    def reply_audio_model(self) -> Latency:
        return self.scenario.caller.reply_audio

    def serving_region(self, origin: int) -> int:
        return self._serving_idx(origin)

    def served_by(self, slots: np.ndarray) -> np.ndarray:
        return self._served_by[slots]

    def move_calls(self, slots: np.ndarray, regions: np.ndarray) -> None:
        self._served_by[slots] = regions

    def draw(self, lat: Latency, n: int, factor: float | np.ndarray = 1.0) -> np.ndarray:
        """n latencies from an engine's lognormal model, stretched by `factor` (faults)."""
        return _lognormal(self.rng, lat, n, factor)

    def hold_factor(self, system: str) -> float:
        return self._hold_factor[system]

    def caller_intents(self, b: TurnBatch) -> np.ndarray:
        """What each caller asks this turn, from the scenario's intent mix (the last turn says goodbye)."""
        intent = np.searchsorted(self._intent_mix(b.t_rel), self.rng.random(b.n)).astype(np.int16)
        intent = np.minimum(intent, len(self._intent_names) - 1)
        intent[b.last] = self._goodbye_idx
        return intent

    def product_keys(self, k: int) -> list[int]:
        """Which products k callers ask about: a heavy-tailed draw over the catalogue."""
        return np.minimum(self.rng.zipf(1.2, k), self.scenario.products).tolist()

    def pool_requests(self, system: str, arrivals: np.ndarray, holds: np.ndarray, op_counts: dict[str, int] | None = None):
        return self._pool_requests(system, arrivals, holds, op_counts)

    def enqueue_actions(self, system: str, operations: list[str], b: TurnBatch, idx: np.ndarray) -> None:
        queue = self.pipeline.queue
        for j, op in zip(idx.tolist(), operations, strict=True):
            queue.enqueue(IntegrationAction(system, op, f"sim-{b.call_seq[j]}", {"region": int(b.served[j])}), b.now)

    def llm_requests(self, arrivals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """LLM requests through the real `llm` pool; returns (seconds each caller waited until the first
        token, failed mask)."""
        rng, eng, k, f = self.rng, self.scenario.engines, len(arrivals), self._llm_factor
        ttft = _lognormal(rng, eng.llm.ttft, k, f)
        tokens = np.maximum(1, rng.exponential(eng.llm.completion_tokens_mean, k)).astype(np.int64)
        holds = ttft + tokens / eng.llm.tokens_per_s * f
        waits, timed_out = self.pipeline.pools["llm"].serve(arrivals, holds)
        err = timed_out | (rng.random(k) < eng.llm.error_rate)
        self.metrics.llm_batch(ttft[~timed_out], holds[~timed_out], tokens[~timed_out], int(eng.llm.prompt_tokens_mean), int(err.sum()), int(timed_out.sum()), waits[~timed_out])
        self.totals["llm_calls"] += k
        return waits + np.where(timed_out, 0.0, ttft), err

    def hand_over(self, idx: np.ndarray, b: TurnBatch, at: np.ndarray) -> None:
        """Hand these calls to the human queue with their transcript so far (this turn included)."""
        names = self._intent_names
        hq = self.pipeline.handoff
        for j in idx.tolist():
            s = b.slots[j]
            before = min(int(self._turns_done[s]), MAX_TURNS - 1)
            intents = [names[i] for i in self._intents[s, :before].tolist()] + [names[b.intent[j]]]
            transcript = [{"turn": t + 1, "caller": f"<{intents[t]}>", "agent": "", "intent": intents[t]} for t in range(len(intents))]
            hq.enqueue(
                HandoffRequest(
                    f"{self.scenario.name}-{self.seed}-{int(self._call_seq[s])}",
                    str(b.handoff_reason[j]),
                    self._region_names[b.served[j]],
                    self._langs[self._lang[s]],
                    transcript,
                    intents,
                    {"customer_id": int(self._customer[s]), "degradation_level": b.policy.level.name},
                    float(at[j]),
                )
            )
        self.totals["handoffs"] += len(idx)

    def _write_silent_call(self, seq: int, region: str, at: float) -> None:
        self.metrics.call_ended_batch(region, "silence", np.array([8.0]), np.array([0]))
        if self.sink is not None:
            self.sink.write("calls", [call_record(
                call_id=f"{self.scenario.name}-{self.seed}-{seq}", started_s=at, ended_s=at + 8.0, region=region,
                outcome="silence", language=self._langs[0], scenario=self.scenario.name, channel="simulated",
                degradation_level=self.controller.level.name,
            )])
            self.rows["calls"] += 1

    def _end_calls(self, slots: np.ndarray, ended_at: np.ndarray, outcome: str, served: np.ndarray, reasons: np.ndarray | None = None) -> None:
        k = len(slots)
        self.outcomes[outcome] += k
        if outcome == "abandoned":
            self._events["hangup"] += k
        if outcome in ("completed", "abandoned", "failed"):
            last = np.maximum(np.minimum(self._turns_done[slots], MAX_TURNS) - 1, 0)
            self.metrics.intents_outcome(self._intent_names, self._intents[slots, last], outcome == "completed")
        turns = np.minimum(self._turns_done[slots], MAX_TURNS).astype(np.int64)
        durations = ended_at - self._started[slots]
        self._ended_this_tick += k
        for r in np.unique(served):
            mask = served == r
            self.metrics.call_ended_batch(self._region_names[r], outcome, durations[mask], turns[mask])
        if self.sink is not None:
            names = self._intent_names
            intents_rows = self._intents[slots].tolist()
            turn_list = turns.tolist()
            prefix = f"{self.scenario.name}-{self.seed}-"
            seqs = self._call_seq[slots].tolist()
            traced = self._traced[slots]
            self._buffer("calls", call_columns(
                call_id=[prefix + str(s) for s in seqs],
                started_s=self._started[slots],
                ended_s=ended_at,
                region=[self._region_names[o] for o in self._origin[slots].tolist()],
                language=[self._langs[x] for x in self._lang[slots].tolist()],
                scenario=self.scenario.name,
                channel="simulated",
                intents=[[names[i] for i in row[:t]] for row, t in zip(intents_rows, turn_list, strict=True)],
                outcome=outcome,
                handoff_reason="" if reasons is None else reasons,
                turns=turns,
                turn_latency_ms=self._lat[slots],
                degradation_level=[LEVEL_NAMES[x] for x in self._level_max[slots].tolist()],
                transcript=[" | ".join(names[i] for i in row[:t]) if tr else "" for row, t, tr in zip(intents_rows, turn_list, traced.tolist(), strict=True)],
                trace_id=[f"{s:032x}" if tr else "" for s, tr in zip(seqs, traced.tolist(), strict=True)],
            ))
            self.rows["calls"] += k
            if traced.any():
                self._trace_calls(slots[traced], ended_at[traced], outcome)
        self._alive[slots] = False
        self._next_at[slots] = np.inf
        self._free.extend(slots.tolist())

    # ------------------------------------------------------------------ rows for the store
    def _buffer(self, table: str, columns: dict) -> None:
        """Collect rows and hand them to the sink once per simulated second: one batch per table."""
        pending = self._pending.setdefault(table, [])
        pending.append(columns)

    def _flush_rows(self) -> None:
        for table, parts in self._pending.items():
            if not parts:
                continue
            if len(parts) == 1:
                merged = parts[0]
            else:
                merged = {}
                for key in parts[0]:
                    vals = [p[key] for p in parts]
                    if all(isinstance(v, np.ndarray) for v in vals):
                        merged[key] = np.concatenate(vals)
                    else:
                        merged[key] = [x for v in vals for x in (v.tolist() if isinstance(v, np.ndarray) else v)]
            self.sink.write_columns(table, merged)
        self._pending = {}

    # ------------------------------------------------------------------ spans (sampled calls)
    def _trace_turns(self, idx, slots, ts, stage_lat, latency, intent, route, failed_stage, level) -> None:
        if not len(idx) or self.sink is None:
            return
        rows = {k: [] for k in ("trace_id", "span_id", "parent_span_id", "call_id", "turn", "name", "start_us", "duration_ms", "status", "attr_keys", "attr_values")}
        prefix = f"{self.scenario.name}-{self.seed}-"
        names = self._intent_names
        for j in idx.tolist():
            seq = int(self._call_seq[slots[j]])
            trace = f"{seq:032x}"
            turn = int(self._turns_done[slots[j]])
            turn_id = f"{seq:010x}{turn:04x}00"
            start = float(ts[j])
            status = "error" if failed_stage[j] else "ok"
            spans = [(turn_id, f"{seq:010x}000000", "turn", start, float(latency[j]), status, ["intent", "route", "degradation_level"], [names[intent[j]], str(route[j]), LEVEL_NAMES[level]])]
            t = start
            for si, s in enumerate(STAGES):
                d = float(stage_lat[s][j])
                if d <= 0 and s != failed_stage[j]:
                    continue
                spans.append((f"{seq:010x}{turn:04x}{si + 1:02x}", turn_id, s, t, d, "error" if failed_stage[j] == s else "ok", [], []))
                t += d
            for sid, parent, name, st, dur, stat, ak, av in spans:
                rows["trace_id"].append(trace)
                rows["span_id"].append(sid)
                rows["parent_span_id"].append(parent)
                rows["call_id"].append(prefix + str(seq))
                rows["turn"].append(turn)
                rows["name"].append(name)
                rows["start_us"].append(int(st * 1e6))
                rows["duration_ms"].append(dur * 1000.0)
                rows["status"].append(stat)
                rows["attr_keys"].append(ak)
                rows["attr_values"].append(av)
        self._buffer("spans", span_columns(**rows))
        self.rows["spans"] += len(rows["name"])

    def _trace_calls(self, slots, ended_at, outcome) -> None:
        prefix = f"{self.scenario.name}-{self.seed}-"
        seqs = self._call_seq[slots].tolist()
        k = len(seqs)
        self._buffer("spans", span_columns(
            trace_id=[f"{s:032x}" for s in seqs],
            span_id=[f"{s:010x}000000" for s in seqs],
            parent_span_id=[""] * k,
            call_id=[prefix + str(s) for s in seqs],
            turn=np.zeros(k, np.uint16),
            name=["conversation"] * k,
            start_us=(self._started[slots] * 1e6).astype(np.int64),
            duration_ms=(ended_at - self._started[slots]) * 1000.0,
            status=["error" if outcome == "failed" else "ok"] * k,
            attr_keys=[["outcome", "region", "language"]] * k,
            attr_values=[[outcome, self._region_names[o], self._langs[lg]] for o, lg in zip(self._origin[slots].tolist(), self._lang[slots].tolist(), strict=True)],
        ))
        self.rows["spans"] += k

    # ------------------------------------------------------------------ the integration queue's worker
    def _execute_queued(self, items, now: float) -> list[tuple[bool, str]]:
        out: list[tuple[bool, str] | None] = [None] * len(items)
        by_system: dict[str, list[int]] = {}
        for i, it in enumerate(items):
            by_system.setdefault(it.action.system, []).append(i)
        rng = self.rng
        for system, idx in by_system.items():
            if system not in self.pipeline.pools.pools:
                for i in idx:
                    out[i] = (False, f"no pool for {system}")
                continue
            k = len(idx)
            holds = _lognormal(rng, self.scenario.engines.connectors[system].latency, k, self._hold_factor.get(system, 1.0))
            arrivals = now + rng.random(k) * self.tick_s
            ops: dict[str, int] = {}
            for i in idx:
                op = items[i].action.operation
                ops[op] = ops.get(op, 0) + 1
            _, ok, kinds = self._pool_requests(system, arrivals, holds, ops)
            self.metrics.queue_attempts([items[i].action.operation for i in idx], holds)
            for j, i in enumerate(idx):
                out[i] = (bool(ok[j]), str(kinds[j]))
        return out  # type: ignore[return-value]

    # ------------------------------------------------------------------ once per simulated second
    async def _second(self, now: float) -> None:
        self._next_second = math.floor(self.t + 1e-9) + 1.0
        pipe = self.pipeline
        pipe.tick(now)
        active = self.active_calls
        self._peak_active = max(self._peak_active, active)
        t_rel = now - self.t0
        for name, pool in pipe.pools.pools.items():
            # saturated: fully used with callers waiting for 10 s in a row (not a momentary burst)
            if pool.saturated:
                run = self._pool_saturated_run.get(name, 0) + 1
                self._pool_saturated_run[name] = run
                if run >= 10 and name not in self._pool_first_saturated:
                    self._pool_first_saturated[name] = t_rel - run + 1
            else:
                self._pool_saturated_run[name] = 0
        alive = self._alive
        by_region = np.bincount(self._served_by[alive], minlength=len(self._region_names))
        self.metrics.sim_second(self._second_report(by_region), now)
        if self.sink is not None:
            self._flush_rows()
        if t_rel + 1e-9 >= self._window_start + self._window_s:
            self._close_window(now)
        if self.snapshot is not None:
            self.snapshot(now)
        for hook in self._hooks:
            result = hook.fn(now)
            if hook.is_async or inspect.isawaitable(result):
                await result
        await asyncio.sleep(0)

    def _second_report(self, by_region: np.ndarray) -> SimulatorSecond:
        """This second for the recorder; the per-tick wall times and event counts start afresh."""
        models = self.scenario.engines.connectors
        report = SimulatorSecond(
            pipeline=self.pipeline, regions=self._region_names, active_by_region=by_region,
            capacity_by_region=self._region_capacity,
            mean_hold_s={s: math.exp(models[s].latency.mu) * self._hold_factor.get(s, 1.0) for s in self._systems} | {"llm": 0.6 * self._llm_factor},
            tick_wall_s=self._tick_wall, speedup=self.t / self._wall_elapsed if self._wall_elapsed > 0 else None,
            faults_active=[(f.kind, bool(self._fault_active.get(i))) for i, f in enumerate(self.scenario.faults)],
            events=self._events,
        )
        self._tick_wall = []
        self._events = dict.fromkeys(self._events, 0)
        return report

    def _close_window(self, now: float) -> None:
        t_rel = now - self.t0
        if t_rel <= self._window_start:
            return
        row: dict = {"t_s": round(self._window_start, 3), "end_s": round(t_rel, 3)}
        turn = np.concatenate(self._window["turn"]) if self._window["turn"] else np.zeros(0)
        row["turns"] = int(len(turn))
        row["latency_mean_ms"] = round(float(turn.mean() * 1000), 3) if len(turn) else 0.0
        for s in ("turn", *STAGES):
            arr = np.concatenate(self._window[s]) if self._window[s] else np.zeros(0)
            if len(arr):
                p = np.percentile(arr, [50, 95, 99]) * 1000
                row[s] = {"p50_ms": round(float(p[0]), 3), "p95_ms": round(float(p[1]), 3), "p99_ms": round(float(p[2]), 3)}
            else:
                row[s] = {"p50_ms": 0.0, "p95_ms": 0.0, "p99_ms": 0.0}
        row["pools"] = {name: {"saturation": round(p.utilization, 4), "waiting": p.waiting(now), "size": p.size, "leaked": p.leaked} for name, p in self.pipeline.pools.pools.items()}
        row["active_calls"] = self.active_calls
        row["level"] = self.controller.level.name
        row["queue_depth"] = len(self.pipeline.queue)
        row["handoff_queue"] = len(self.pipeline.handoff)
        self.timeline.append(row)
        self._window = {s: [] for s in (*STAGES, "turn")}
        self._window_start = t_rel

    # ------------------------------------------------------------------ summary
    def summary(self) -> dict:
        pipe = self.pipeline
        all_turns = [r for r in self.timeline if r["turns"]]
        return {
            "scenario": self.scenario.name,
            "seed": self.seed,
            "simulated_s": round(self.t, 3),
            "wall_s": round(self._wall, 3),
            "speed": round(self.t / self._wall, 2) if self._wall else None,
            "calls": {
                "started": self.totals["calls_started"],
                "rejected": self.totals["calls_rejected"],
                "ended": dict(self.outcomes),
                "active_at_end": self.active_calls,
                "peak_active": self._peak_active,
            },
            "turns": {"total": self.totals["turns"], "failed": self.totals["turns_failed"]},
            "llm": {"calls": self.totals["llm_calls"], "answered_without_llm": self.totals["llm_avoided"]},
            "integrations": {
                "errors": self.totals["integration_errors"],
                "queued": self.totals["queued_actions"],
                "queue_succeeded": pipe.queue.succeeded,
                "queue_retried": pipe.queue.retried,
                "queue_dead_lettered": pipe.queue.dead_lettered,
                "queue_depth": len(pipe.queue),
            },
            "handoffs": {"total": self.totals["handoffs"], "assigned": pipe.handoff.assigned, "waiting": len(pipe.handoff)},
            "latency_by_minute": all_turns,
            "pools": {
                name: {
                    "size": p.size,
                    "max_size": p.config.max_size,
                    "leaked": p.leaked,
                    "resizes": p.resizes,
                    "acquired": p.acquired_total,
                    "timeouts": p.timeouts_total,
                    "mean_wait_ms": round(p.wait_sum_s / p.acquired_total * 1000, 3) if p.acquired_total else 0.0,
                    "peak_saturation": max((r["pools"][name]["saturation"] for r in self.timeline), default=0.0),
                    "first_saturated_s": self._pool_first_saturated.get(name),
                }
                for name, p in pipe.pools.pools.items()
            },
            "caches": {c.name: {"hit_ratio": round(c.hit_ratio, 4), "entries": len(c), "evictions": c.evictions} for c in pipe.caches},
            "regions": {"failovers": pipe.regions.failovers, "failover_s": [round(x, 3) for r in pipe.regions.regions.values() for x in r.failover_times]},
            "degradation": {"level": self.controller.level.name, "actions": [{k: v for k, v in a.items() if k in ("ts_ms", "phase", "level", "previous_level", "region", "rule", "reason")} for a in self.controller.history]},
            "ground_truth": self.scenario.ground_truth(),
            "rows": dict(self.rows),
        }
