"""Load simulator at scale: 15,000 live calls on the wall clock (loop lag, rows dropped, memory) and October 3 on the virtual clock (simulated s per wall s).

(a) live: the simulator on the wall clock with `--calls` concurrent calls for `--live-seconds`,
    metrics snapshotted every second, call records and spans through the sink into an embedded
    store. A probe task measures event-loop lag every 10 ms; the baseline is the same probe on an idle
    loop in the same run. Rows dropped = rows handed to the sink minus rows found in the store.
(b) replay: `october-3` on the virtual clock at `--calls` concurrent calls for `--replay-seconds` of
    simulated time with the same telemetry path; reported as simulated seconds per wall second, with
    the same replay without telemetry as the baseline (the ratio is telemetry's cost).
"""

from __future__ import annotations

import asyncio
import resource
import shutil
import tempfile
import time

import numpy as np


def add_arguments(p) -> None:
    p.add_argument("--calls", type=int, default=15_000, help="concurrent calls (both parts)")
    p.add_argument("--live-seconds", type=float, default=60.0, help="wall seconds of live load (part a)")
    p.add_argument("--replay-seconds", type=float, default=600.0, help="simulated seconds of october-3 (part b)")
    p.add_argument("--trace-sample", type=float, default=0.02, help="share of calls whose spans are stored")
    p.add_argument("--quick", action="store_true", help="small run: 2,000 calls, 15 s live, 120 s replay")
    p.add_argument("--part", choices=("both", "live", "replay"), default="both")


class CountingSink:
    """Counts the rows handed to the sink per table, to check them against the store afterwards."""

    def __init__(self, sink) -> None:
        self.sink = sink
        self.handed: dict[str, int] = {}

    def _count(self, table: str, n: int) -> None:
        self.handed[table] = self.handed.get(table, 0) + n

    def write(self, table, rows):
        rows = list(rows)
        self._count(table, len(rows))
        return self.sink.write(table, rows)

    def write_columns(self, table, columns, *a, **k):
        first = next(iter(columns.values()))
        self._count(table, len(first))
        return self.sink.write_columns(table, columns, *a, **k)

    def __getattr__(self, name):
        return getattr(self.sink, name)


async def _lag_probe(samples: list[float], stop: asyncio.Event, interval: float = 0.01) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        t0 = loop.time()
        await asyncio.sleep(interval)
        samples.append(max(0.0, loop.time() - t0 - interval))


def _pcts(samples: list[float]) -> dict:
    a = np.asarray(samples) * 1000
    if not len(a):
        return {"p50_ms": None, "p99_ms": None, "max_ms": None, "samples": 0}
    return {"p50_ms": round(float(np.percentile(a, 50)), 2), "p99_ms": round(float(np.percentile(a, 99)), 2), "max_ms": round(float(a.max()), 2), "samples": len(a)}


def _idle_lag(seconds: float) -> list[float]:
    """The event loop's lag with nothing running (a few seconds): the floor live lag is read against."""
    async def probe() -> list[float]:
        samples: list[float] = []
        stop = asyncio.Event()
        task = asyncio.ensure_future(_lag_probe(samples, stop))
        await asyncio.sleep(min(5.0, seconds / 4))
        stop.set()
        await task
        return samples

    return asyncio.run(probe())


def _run_probing_lag(sim, seconds: float, samples: list[float]) -> dict:
    """Run the live simulation for `seconds` with the loop-lag probe beside it; its summary."""
    async def main() -> dict:
        stop = asyncio.Event()
        probe = asyncio.ensure_future(_lag_probe(samples, stop))
        summary = await sim.run_async(until=seconds)
        stop.set()
        await probe
        return summary

    return asyncio.run(main())


def _steady_scenario(calls: int):
    """The baseline scenario held at exactly `calls` concurrent calls."""
    from pipeline.simulation.scenario import load_scenario

    base = load_scenario("baseline")
    return base.model_copy(update={"traffic": base.traffic.model_copy(update={"shape": "steady", "base": 1.0})}).scaled(calls=calls)


def _open(root: str, db: str):
    from telemetry.store import open_store

    return open_store(f"chdb://{root}?database={db}")


def _telemetry_path(store, clock, spool: str, seed: int):
    from telemetry.instruments import Telemetry
    from telemetry.sink import Sink
    from telemetry.snapshot import Snapshotter

    sink = CountingSink(Sink(store, spool_dir=spool))
    tel = Telemetry(clock=clock, sink=sink, seed=seed)
    snap = Snapshotter(tel, sink, clock)
    return sink, tel, snap


def _dropped(store, sink: CountingSink) -> dict:
    from telemetry.store import reads

    stored = {t: reads.row_count(store, t) for t in sink.handed}
    return {"handed": dict(sink.handed), "stored": stored, "dropped": sum(max(0, sink.handed[t] - stored[t]) for t in sink.handed), "rejected": sink.sink.stats.total("rejected")}


def live(calls: int, seconds: float, trace_sample: float, root: str) -> dict:
    from pipeline.simulation.simulator import Simulation
    from telemetry.clock import WallClock

    idle = _idle_lag(seconds)
    store = _open(root, "live")
    clock = WallClock()
    sink, tel, snap = _telemetry_path(store, clock, f"{root}/spool-live", 1)
    sim = Simulation(_steady_scenario(calls), clock=clock, telemetry=tel, sink=sink, seed=1, trace_sample_rate=trace_sample,
                     snapshot=lambda now: snap.snapshot_once(int(now * 1000)))
    samples: list[float] = []
    active: list[int] = []
    sim.on_tick(lambda now: active.append(sim.active_calls))

    t0 = time.perf_counter()
    summary = _run_probing_lag(sim, seconds, samples)
    wall = time.perf_counter() - t0
    tel.flush()
    sink.flush()
    result = {
        "calls": calls,
        "wall_s": round(wall, 2),
        "simulated_s": summary["simulated_s"],
        "concurrent_calls_min_max": [min(active), max(active)] if active else None,
        "turns": summary["turns"]["total"],
        "loop_lag": _pcts(samples),
        "idle_loop_lag": _pcts(idle),
        "snapshots": snap.ticks,
        "series": snap.series,
        **_dropped(store, sink),
    }
    sink.close()
    store.close()
    return result


def replay(calls: int, seconds: float, trace_sample: float, root: str) -> dict:
    from pipeline.simulation.scenario import load_scenario
    from pipeline.simulation.simulator import Simulation
    from telemetry.clock import VirtualClock

    # october-3 opens at 65% of its peak: scale the peak so the replayed window carries `calls`
    base = load_scenario("october-3")
    low = min(base.traffic.factor(t) for t in np.linspace(0, seconds, 61))
    scenario = base.scaled(calls=int(np.ceil(calls / low)))
    core = Simulation(scenario, seed=3)
    t0, c0, m0 = time.perf_counter(), time.process_time(), time.thread_time()
    core.run(until=seconds)
    core_wall, core_cpu, core_main = time.perf_counter() - t0, time.process_time() - c0, time.thread_time() - m0

    store = _open(root, "replay")
    clock = VirtualClock(scenario.start)
    sink, tel, snap = _telemetry_path(store, clock, f"{root}/spool-replay", 3)
    sim = Simulation(scenario, clock=clock, telemetry=tel, sink=sink, seed=3, trace_sample_rate=trace_sample,
                     snapshot=lambda now: snap.snapshot_once(int(now * 1000)))
    active: list[int] = []
    sim.on_tick(lambda now: active.append(sim.active_calls))
    t0, c0, m0 = time.perf_counter(), time.process_time(), time.thread_time()
    summary = sim.run(until=seconds)
    wall, cpu, main_cpu = time.perf_counter() - t0, time.process_time() - c0, time.thread_time() - m0
    tel.flush()
    t1 = time.perf_counter()
    sink.flush()
    drain = time.perf_counter() - t1
    result = {
        "scenario": "october-3",
        "calls": calls,
        "simulated_s": summary["simulated_s"],
        "concurrent_calls_min_max": [min(active), max(active)],
        "turns": summary["turns"]["total"],
        "wall_s": round(wall, 2),
        "sim_s_per_wall_s": round(seconds / wall, 1),
        "sim_s_per_wall_s_including_store_drain": round(seconds / (wall + drain), 1),
        "baseline_no_telemetry_sim_s_per_wall_s": round(seconds / core_wall, 1),
        # CPU seconds of this process (the sink's writer thread included): what the run costs when
        # the machine is shared and wall time includes waiting for a core
        "sim_s_per_cpu_s": round(seconds / cpu, 1),
        "baseline_no_telemetry_sim_s_per_cpu_s": round(seconds / core_cpu, 1),
        # the simulation thread alone (the sink's writer and chdb's threads run beside it)
        "sim_s_per_main_thread_cpu_s": round(seconds / main_cpu, 1),
        "baseline_no_telemetry_sim_s_per_main_thread_cpu_s": round(seconds / core_main, 1),
        "telemetry_cost_ratio": round(wall / core_wall, 2),
        "snapshots": snap.ticks,
        "series": snap.series,
        **_dropped(store, sink),
    }
    sink.close()
    store.close()
    return result


def run(args) -> dict:
    calls, live_s, replay_s = args.calls, args.live_seconds, args.replay_seconds
    if args.quick:
        calls, live_s, replay_s = min(calls, 2000), min(live_s, 15.0), min(replay_s, 120.0)
    root = tempfile.mkdtemp(prefix="voxwatch-bench-sim-")
    out: dict = {"calls": calls}
    try:
        if args.part in ("both", "replay"):
            out["replay"] = replay(calls, replay_s, args.trace_sample, root)
        if args.part in ("both", "live"):
            out["live"] = live(calls, live_s, args.trace_sample, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    out["peak_memory_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if "live" in out:
        out["targets"] = {
            "loop_lag_p99_below_50ms": (out["live"]["loop_lag"]["p99_ms"] or 0) < 50,
            "rows_dropped_zero": out["live"]["dropped"] == 0,
        }
    if "replay" in out:
        out.setdefault("targets", {})["replay_at_least_60x"] = out["replay"]["sim_s_per_wall_s"] >= 60
    return out
