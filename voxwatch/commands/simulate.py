"""`voxwatch simulate`: replay a scenario through the pipeline's real pools, caches, queues, regions
and degradation controller with simulated engines, writing metrics, spans and call records to the
store, and print what happened."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import tempfile
import time

from voxwatch.cli import CommandError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")


def parse_duration(text: str) -> float:
    """'90m', '1h', '300s', '300' (seconds) -> seconds."""
    m = _DURATION.match(str(text))
    if not m:
        raise CommandError(f"--duration: cannot read {text!r}; use e.g. 600, 90s, 15m or 1h")
    value = float(m.group(1)) * {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600}[m.group(2)]
    if value <= 0:
        raise CommandError("--duration must be positive")
    return value


def parse_speed(text: str) -> float | None:
    """'max' -> None (as fast as possible); a number -> simulated seconds per wall second."""
    if str(text).lower() in ("max", "inf", "fastest"):
        return None
    try:
        v = float(text)
    except ValueError:
        raise CommandError(f"--speed: expected a number or 'max', got {text!r}") from None
    if v <= 0:
        raise CommandError("--speed must be positive")
    return v


def register(sub) -> None:
    p = sub.add_parser("simulate", help="replay a load scenario (15,000+ calls) against the real pipeline code")
    p.add_argument("--scenario", default="baseline", help="shipped scenario name or a YAML file (see --list)")
    p.add_argument("--list", action="store_true", help="list the shipped scenarios and exit")
    p.add_argument("--calls", type=int, default=None, help="peak concurrent calls; pools, agents and caches scale with them (default: the scenario's)")
    p.add_argument("--duration", default=None, help="simulated time, e.g. 600, 15m, 1h; the scenario's story (ramps, faults) is compressed to fit")
    p.add_argument("--speed", default="max", help="simulated seconds per wall second, or 'max' (default); 1 runs on the wall clock")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: the scenario's)")
    p.add_argument("--store", default=None, help="store URL (default $VOXWATCH_STORE or chdb://./var/voxwatch); 'none' to keep nothing")
    p.add_argument("--trace-sample", type=float, default=None, help="share of calls whose spans are stored (default: the scenario's)")
    p.add_argument("--no-metrics", action="store_true", help="skip metric snapshots (call records and spans only)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def _list() -> int:
    from pipeline.simulation.scenario import load_scenario, scenario_names

    for name in scenario_names():
        sc = load_scenario(name)
        faults = ", ".join(f"{f.kind}@{int(f.start_s)}s" for f in sc.faults) or "no faults"
        print(f"{name:20s} {int(sc.duration_s)}s  {sc.traffic.concurrent_calls} calls  {faults}\n    {sc.description}")
    return 0


def run(args) -> int:
    if args.list:
        return _list()
    from pipeline.simulation.scenario import ScenarioError, load_scenario

    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as exc:
        raise CommandError(str(exc)) from None
    duration = parse_duration(args.duration) if args.duration else None
    if args.calls is not None and args.calls <= 0:
        raise CommandError("--calls must be positive")
    scenario = scenario.scaled(calls=args.calls, duration_s=duration)
    speed = parse_speed(args.speed)
    if args.trace_sample is not None and not 0 <= args.trace_sample <= 1:
        raise CommandError("--trace-sample must be within [0, 1]")
    summary = simulate(scenario, seed=args.seed, speed=speed, store_url=args.store, trace_sample=args.trace_sample,
                       snapshots=not args.no_metrics, progress=not args.json and sys.stderr.isatty())
    if args.json:
        print(json.dumps(summary, default=float))
    else:
        print_summary(summary)
    return 0


def simulate(scenario, *, seed=None, speed=None, store_url=None, trace_sample=None, snapshots=True, progress=False) -> dict:
    """Run one scenario with the full telemetry path; returns the summary (with rows written)."""
    from pipeline.simulation.simulator import Simulation
    from telemetry import open_runtime
    from telemetry.clock import VirtualClock, WallClock
    from telemetry.snapshot import Snapshotter
    from telemetry.store import StoreError
    from voxwatch.config import load_settings

    url = None
    if (store_url or "").lower() != "none":
        url = store_url or load_settings().store
    live = speed is not None and speed == 1.0
    clock = WallClock() if live else VirtualClock(scenario.start)
    try:
        rt = open_runtime(clock=clock, store=url, spool_dir=tempfile.mkdtemp(prefix="voxwatch-spool-") if url else None,
                          source="simulate", seed=seed if seed is not None else scenario.seed)
    except StoreError as exc:
        raise CommandError(f"store {url}: {exc}") from None
    tel, sink, store = rt.telemetry, rt.sink, rt.store
    snap = Snapshotter(tel, sink, clock) if (sink is not None and snapshots) else None
    sim = Simulation(scenario, clock=clock, telemetry=tel, sink=sink, seed=seed, trace_sample_rate=trace_sample,
                     snapshot=(lambda now: snap.snapshot_once(int(now * 1000))) if snap else None)
    if speed is not None and not live:
        wall0 = time.perf_counter()

        async def pace(now: float) -> None:  # hold the virtual clock to `speed` x real time
            ahead = sim.t / speed - (time.perf_counter() - wall0)
            if ahead > 0:
                await asyncio.sleep(ahead)

        sim.on_tick(pace)
    bar = _progress(scenario) if progress else None
    try:
        if bar is not None:
            with bar[0]:
                summary = sim.run(progress=bar[1])
        else:
            summary = sim.run()
    finally:
        if sink is not None:
            sink.flush()
            summary_rows = dict(sink.stats.written)
            rejected = sink.stats.total("rejected")
            sink.close()
            store.close()
    if sink is not None:
        summary["rows"] = {"written": summary_rows, "rejected": rejected, "snapshots": snap.ticks if snap else 0}
    summary["store"] = store.url if store is not None else None
    return summary


def _progress(scenario):
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    prog = Progress(TextColumn(f"[bold]{scenario.name}"), BarColumn(), TextColumn("{task.completed:.0f}/{task.total:.0f} s simulated"), TimeElapsedColumn(), transient=True)
    task = prog.add_task("simulate", total=scenario.duration_s)
    last = [0.0]

    def update(t: float, end: float) -> None:
        if t - last[0] >= 5 or t >= end:
            prog.update(task, completed=t)
            last[0] = t

    return prog, update


def print_summary(s: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console()
    calls = s["calls"]
    con.print(f"[bold]{s['scenario']}[/] seed {s['seed']}: {s['simulated_s']:.0f} s simulated in {s['wall_s']:.1f} s ({s['speed']}x)")
    con.print(f"calls started {calls['started']:,}, rejected {calls['rejected']:,}, peak concurrent {calls['peak_active']:,}; "
              + ", ".join(f"{k} {v:,}" for k, v in calls["ended"].items()))
    con.print(f"turns {s['turns']['total']:,} (failed {s['turns']['failed']:,}); LLM calls {s['llm']['calls']:,}, "
              f"answered without LLM {s['llm']['answered_without_llm']:,}; handoffs {s['handoffs']['total']:,}")
    t = Table(title="turn latency over time (ms)")
    for col in ("t", "turns", "mean", "p50", "p95", "p99", "stt p95", "response p95", "integr. p95", "level"):
        t.add_column(col, justify="right")
    rows = s["latency_by_minute"]
    step = max(1, len(rows) // 15)
    for r in rows[::step]:
        t.add_row(f"{r['t_s'] / 60:.0f}m", f"{r['turns']:,}", f"{r['latency_mean_ms']:.0f}", f"{r['turn']['p50_ms']:.0f}",
                  f"{r['turn']['p95_ms']:.0f}", f"{r['turn']['p99_ms']:.0f}", f"{r['stt']['p95_ms']:.0f}",
                  f"{r['response']['p95_ms']:.0f}", f"{r['integrations']['p95_ms']:.0f}", r["level"])
    con.print(t)
    p = Table(title="connection pools")
    for col in ("pool", "size", "peak saturation", "saturated at", "mean wait ms", "timeouts", "leaked"):
        p.add_column(col, justify="right")
    for name, v in s["pools"].items():
        sat = v["first_saturated_s"]
        p.add_row(name, str(v["size"]), f"{v['peak_saturation']:.2f}", "-" if sat is None else f"{sat / 60:.1f}m",
                  f"{v['mean_wait_ms']:.1f}", f"{v['timeouts']:,}", str(v["leaked"]))
    con.print(p)
    acts = s["degradation"]["actions"]
    con.print(f"degradation: {s['degradation']['level']} now, {len(acts)} action rows" + "".join(
        f"\n  {a['phase']} {a['level']} ({a['reason']})" for a in acts if a["phase"] != "requested"))
    if s.get("rows"):
        con.print(f"rows written: {s['rows']}")
    for g in s["ground_truth"]:
        con.print(f"fault {g['kind']} {g['target']}: {g['start_s']:.0f}-{g['end_s']:.0f} s  {g['description']}")
