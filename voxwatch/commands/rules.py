"""`voxwatch rules check FILE...` validates rule files (and checks them against the metric catalog);
`voxwatch rules test FILE --scenario NAME [--json]` backtests them on a simulated scenario."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any

from voxwatch.cli import CommandError


def register(sub) -> None:
    p = sub.add_parser("rules", help="alert rules: validate, backtest")
    rsub = p.add_subparsers(dest="rules_command", required=True, metavar="ACTION")

    c = rsub.add_parser("check", help="validate rule files (YAML schema, templates, catalog metrics)")
    c.add_argument("files", nargs="*", help="rule files or folders (default: the shipped rule set)")
    c.add_argument("--no-catalog", action="store_true", help="skip the check against the metric catalog")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=_check)

    t = rsub.add_parser("test", help="replay a scenario (or stored history) and report, per rule, when it fired and how well")
    t.add_argument("files", nargs="*", help="rule files or folders (default: the shipped rule set)")
    t.add_argument("--scenario", help="scenario name or YAML path (scored against its ground truth)")
    t.add_argument("--store", help="replay stored history from this store URL instead of a scenario")
    t.add_argument("--from", dest="start", help="with --store: start (epoch seconds or ISO 8601, UTC)")
    t.add_argument("--to", dest="end", help="with --store: end (epoch seconds or ISO 8601, UTC)")
    t.add_argument("--duration", type=float, default=None, help="simulated seconds (default: the scenario's)")
    t.add_argument("--calls", type=int, default=None, help="concurrent calls (default: the scenario's)")
    t.add_argument("--seed", type=int, default=None)
    t.add_argument("--json", action="store_true")
    t.add_argument("--deliver", action="store_true",
                   help="really send to the configured receivers (default: only report what would have been "
                        "sent; times are the replay's virtual clock)")
    t.set_defaults(func=_test)


def _check(args) -> int:
    from alerts.ruleset import RuleFileError, check_against_catalog, load_rules

    try:
        rs = load_rules(args.files or None)
    except RuleFileError as exc:
        raise CommandError(str(exc).replace("\n", "\n  ")) from None
    problems: list[str] = []
    if not args.no_catalog:
        from telemetry.catalog import default_catalog

        problems = check_against_catalog(rs, default_catalog())
    if args.json:
        print(json.dumps({"ok": not problems, "files": rs.sources, "rules": len(rs.rules()), "problems": problems}))
    else:
        for p in problems:
            print(p, file=sys.stderr)
        if not problems:
            kinds: dict[str, int] = {}
            for r in rs.rules():
                kinds[r.type] = kinds.get(r.type, 0) + 1
            print(f"ok: {len(rs.rules())} rules ({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))}) "
                  f"in {len(rs.sources)} file(s); {len(rs.receivers)} receivers, {len(rs.inhibit_rules)} inhibit rules")
    if problems:
        raise CommandError(f"{len(problems)} problem(s) against the metric catalog")
    return 0


def _test(args) -> int:
    from alerts.ruleset import RuleFileError, load_rules

    try:
        # receivers as configured; without --deliver they only record what they would have sent
        rs = load_rules(args.files or None)
    except RuleFileError as exc:
        raise CommandError(str(exc).replace("\n", "\n  ")) from None
    from alerts.backtest import format_report

    if args.store:
        report = _stored_history(rs, args)
        if args.json:
            print(json.dumps(report, default=_json_default))
        else:
            print(format_report(report))
        return 0
    if not args.scenario:
        raise CommandError("give --scenario NAME, or --store URL --from T --to T to replay stored history")
    report = backtest(rs, args.scenario, calls=args.calls, duration_s=args.duration, seed=args.seed,
                      deliver=args.deliver)
    if args.json:
        print(json.dumps(report, default=_json_default))
    else:
        print(format_report(report))
    return 0


def _when(text: str | None, flag: str) -> float:
    from datetime import UTC, datetime

    if not text:
        raise CommandError(f"--store needs {flag}")
    try:
        return float(text)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CommandError(f"{flag} {text!r}: use epoch seconds or ISO 8601 (2023-10-03T09:00:00Z)") from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def _stored_history(rs, args) -> dict:
    import time

    from alerts.backtest import score
    from alerts.replay import replay_store
    from telemetry.store import StoreError, open_store

    start, end = _when(args.start, "--from"), _when(args.end, "--to")
    if end <= start:
        raise CommandError("--to must be after --from")
    try:
        store = open_store(args.store, migrate=False)
    except (StoreError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    try:
        w0 = time.perf_counter()
        engine = replay_store(rs, store, start, end)
        wall = time.perf_counter() - w0
    finally:
        store.close()
    # stored history has no ground truth: the report says when each rule fired and resolved
    report = score(rs.rules(), engine.transitions, [], start, end)
    return {"scenario": f"stored history {args.store}", "simulated_s": end - start, "wall_s": round(wall, 2),
            "ground_truth": [], **report, "actions": []}


def _json_default(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return str(v)


# -- the wiring of a scenario replay with alerting (the composition root's job: alerts never
#    imports the pipeline, so the simulator, the anomaly service and the engine meet here)


@dataclass
class ScenarioRun:
    scenario: Any
    clock: Any
    simulation: Any
    engine: Any
    controller: Any
    anomaly: Any
    summary: dict = field(default_factory=dict)
    findings: list = field(default_factory=list)
    turn_p99: list = field(default_factory=list)  # (scenario seconds, P99 over the last minute)
    wall_s: float = 0.0


def load_scenario_or_error(name: str, calls: int | None = None, duration_s: float | None = None, seed: int | None = None):
    from pipeline.simulation.scenario import ScenarioError, load_scenario

    try:
        sc = load_scenario(name)
    except ScenarioError as exc:
        raise CommandError(str(exc)) from None
    if calls or duration_s:
        sc = sc.scaled(calls=calls, duration_s=duration_s)
    if seed is not None:
        sc = sc.model_copy(update={"seed": seed})
    return sc


def run_scenario(
    ruleset,
    scenario,
    *,
    engine_kwargs: dict | None = None,
    with_anomaly: bool = True,
    until: float | None = None,
    on_tick=None,
    settle: bool = True,
    clock=None,
    on_end=None,
) -> ScenarioRun:
    """Replay `scenario` on a virtual clock with the pipeline's own controller as the action sink,
    the anomaly service feeding findings, and the alert engine evaluating every simulated second.
    `on_end` (a coroutine function) runs last on the replay's own event loop: what a caller opened
    there (another engine's HTTP connections) must be closed before that loop is."""
    import asyncio
    import time

    from pipeline.simulation.simulator import Simulation
    from telemetry.clock import VirtualClock
    from telemetry.instruments import Telemetry
    from voxwatch.loop import MonitoringLoop

    clock = clock if clock is not None else VirtualClock(scenario.start)
    tel = Telemetry()
    sim = Simulation(scenario, clock=clock, telemetry=tel)
    ctl = sim.controller
    run = ScenarioRun(scenario, clock, sim, None, ctl, None)
    loop = MonitoringLoop(telemetry=tel, clock=clock, ruleset=ruleset, controller=ctl, snapshot=False,
                          on_finding=[run.findings.append], engine_kwargs=engine_kwargs)
    if not with_anomaly:
        loop.anomaly = None
    loop.expect_faults(scenario.ground_truth(), clock.now())
    run.engine, run.anomaly = loop.engine, loop.anomaly
    engine = loop.engine
    t0 = scenario.start

    async def tick(now: float) -> None:
        await loop.tick(now)
        if settle:
            await engine.settle(2.0)
        if int(round(now - t0)) % 10 == 0:
            from alerts.evaluate import aggregate
            from alerts.ruleset import Selector

            v = aggregate(engine.view, Selector(metric="voxwatch_turn_latency_seconds"), "quantile", [], now, 60.0, 0.99)
            if v:
                run.turn_p99.append((round(now - t0, 1), next(iter(v.values()))))
        if on_tick is not None:
            r = on_tick(now, run)
            if asyncio.iscoroutine(r):
                await r

    sim.on_tick(tick)

    async def go():
        try:
            return await sim.run_async(until=until)
        finally:
            await engine.aclose()
            if on_end is not None:
                await on_end()

    w0 = time.perf_counter()
    run.summary = asyncio.run(go())
    run.wall_s = time.perf_counter() - w0
    return run


def backtest(ruleset, scenario_name: str, *, calls: int | None = None, duration_s: float | None = None,
             seed: int | None = None, deliver: bool = False) -> dict:
    from alerts.backtest import score, would_send

    sc = load_scenario_or_error(scenario_name, calls, duration_s, seed)
    # a backtest only observes: receivers record what they would have sent, unless told to deliver
    run = run_scenario(ruleset, sc, engine_kwargs={"notify": True, "deliver": deliver})
    t0 = sc.start
    report = score(ruleset.rules(), run.engine.transitions, sc.ground_truth(), t0, t0 + run.summary.get("simulated_s", sc.duration_s))
    return {
        "scenario": sc.name,
        "calls": sc.traffic.concurrent_calls,
        "simulated_s": run.summary.get("simulated_s", sc.duration_s),
        "wall_s": round(run.wall_s, 2),
        "ground_truth": sc.ground_truth(),
        **report,
        "actions": [
            {"at_s": round(r["ts_ms"] / 1000 - t0, 1), "phase": r["phase"], "level": r["level"], "region": r["region"], "rule": r["rule"]}
            for r in (run.engine.actions.history if run.engine.actions else [])
        ],
        "findings": len(run.findings),
        "delivered": deliver,
        "would_send": would_send(run.engine.would_send or [], t0),
    }
