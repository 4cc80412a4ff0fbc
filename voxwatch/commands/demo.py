"""`voxwatch demo`: the whole loop, running, visible in a browser.

It replays the `october-3` incident through the pipeline simulator on a virtual clock paced for a
person to follow, with telemetry into the embedded store, the anomaly service and the alert engine
evaluating every simulated second, degradation actions applied to the pipeline, and signed pages
delivered over real HTTP to a local webhook receiver that verifies them and prints each one. The
API and the dashboard serve the same store while it runs, and keep serving until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, Request, Response

from voxwatch.cli import CommandError

DEMO_STORE = "chdb://./var/voxwatch?database=demo"


def register(sub) -> None:
    p = sub.add_parser("demo", help="replay the October-3 incident end to end, with pages, actions and the dashboard")
    p.add_argument("--store", default=None, help=f"store URL (default {DEMO_STORE}, recreated each run)")
    p.add_argument("--scenario", default="october-3", help="scenario to replay (default october-3)")
    p.add_argument("--speed", default="60", help="simulated seconds per wall second, or 'max' (default 60)")
    p.add_argument("--calls", type=int, default=None,
                   help="concurrent calls at peak (default: the scenario's own, 15,000 for october-3)")
    p.add_argument("--duration", type=float, default=None, help="simulated seconds (default: the scenario's)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="API port (0 picks a free one)")
    p.add_argument("--dashboard-port", type=int, default=8501, help="dashboard port (0 picks a free one)")
    p.add_argument("--no-dashboard", action="store_true", help="serve the API only")
    p.add_argument("--exit-after-replay", action="store_true", help="stop when the replay ends (tests, CI)")
    p.add_argument("--json", action="store_true", help="print the closing summary as JSON")
    p.set_defaults(func=run)


# -- the local pager: a real HTTP receiver that checks Standard Webhooks signatures ---------------

@dataclass
class Page:
    receiver: str
    status: str
    alerts: list[dict]
    webhook_id: str
    received_at: float


@dataclass
class PagerReceiver:
    """What an on-call engineer's pager would get, printed as it arrives."""

    secret: str
    clock: object
    printer: object
    pages: list[Page] = field(default_factory=list)
    refused: int = 0
    seen_ids: set[str] = field(default_factory=set)

    def app(self) -> FastAPI:
        from alerts import SignatureError, verify

        app = FastAPI()

        @app.post("/hooks/{receiver}")
        async def hook(receiver: str, request: Request) -> Response:
            body = await request.body()
            try:
                # a replay signs in the replay's time: verify against the same clock
                webhook_id = verify(self.secret, request.headers, body, now=self.clock.now())
            except SignatureError as exc:
                self.refused += 1
                self.printer(f"[pager] refused a delivery: {exc}")
                return Response(status_code=401)
            if webhook_id in self.seen_ids:  # idempotency, as Standard Webhooks receivers do
                return Response(status_code=204)
            self.seen_ids.add(webhook_id)
            payload = json.loads(body)
            page = Page(receiver, payload.get("status", "?"), payload.get("alerts", []), webhook_id, self.clock.now())
            self.pages.append(page)
            self.printer(self.describe(page))
            return Response(status_code=204)

        return app

    def describe(self, page: Page) -> str:
        lines = []
        for a in page.alerts:
            labels = a.get("labels", {})
            where = " ".join(f"{k}={v}" for k, v in labels.items() if k not in ("alertname", "severity"))
            summary = a.get("annotations", {}).get("summary", "")
            lines.append(f"  {a.get('status', page.status).upper():8} {labels.get('alertname', '?')} ({labels.get('severity', '')}) {where}\n"
                         f"           {summary}")
        head = f"[{page.receiver}] {page.status.upper()} page, {len(page.alerts)} alert(s), signature verified"
        return "\n".join([head, *lines])


def _serve_in_thread(app, host: str, port: int):
    import uvicorn

    from voxwatch.commands.serve import _wait_http, free_port

    port = port or free_port(host)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off"))
    server.install_signal_handlers = lambda: None
    thread = threading.Thread(target=server.run, name="voxwatch-demo-pager", daemon=True)
    thread.start()

    @app.get("/healthz")
    def _health():
        return {"status": "ok"}

    _wait_http(f"http://{host}:{port}/healthz", 30.0, thread.is_alive)
    return server, thread, f"http://{host}:{port}"


# -- the run ---------------------------------------------------------------------------------

def _fmt_clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(t))


def run(args) -> int:
    from rich.console import Console

    console = Console(highlight=False)

    def say(text: str = "", markup: bool = False) -> None:
        # Event lines carry [brackets] of their own: print them as text, not as rich markup.
        if not args.json:
            console.print(text, markup=markup)

    if args.speed != "max":
        try:
            speed = float(args.speed)
        except ValueError:
            raise CommandError(f"--speed must be a number or 'max', not {args.speed!r}") from None
        if speed <= 0:
            raise CommandError("--speed must be positive")
    else:
        speed = None
    result = asyncio.run(_run(args, speed, say))
    if args.json:
        print(json.dumps(result, default=str))
    return 0


async def _run(args, speed: float | None, say) -> dict:
    from telemetry.store import StoreError, open_store
    from voxwatch.commands.rules import load_scenario_or_error

    scenario = load_scenario_or_error(args.scenario, args.calls, args.duration, args.seed)
    url = args.store or DEMO_STORE
    spool = Path("./var/spool-demo")
    try:
        store = open_store(url, migrate=False)
        if args.store is None:
            store._execute(f"DROP DATABASE IF EXISTS {store.database}")  # a fresh demo each run
            store.close()
            store = open_store(url, migrate=False)
        store.migrate()
    except StoreError as exc:
        raise CommandError(str(exc)) from None
    shutil.rmtree(spool, ignore_errors=True)
    cleanups: list = []  # what _replay started, stopped here in reverse even when it fails
    try:
        return await _replay(args, speed, say, scenario, store, spool, cleanups)
    finally:
        for stop in reversed(cleanups):
            try:
                stop()
            except Exception as exc:  # noqa: BLE001 - keep stopping the rest
                say(f"[demo] while stopping: {exc}")
        store.close()  # idempotent; an embedded store left open at exit takes the process down with it


async def _replay(args, speed: float | None, say, scenario, store, spool: Path, cleanups: list) -> dict:
    from alerts import load_rules
    from pipeline.simulation.simulator import Simulation
    from telemetry import open_runtime
    from telemetry.clock import VirtualClock
    from voxwatch.commands.serve import start_service
    from voxwatch.context import AppContext
    from voxwatch.loop import MonitoringLoop

    # The replay ends at the wall-clock second it starts, so its timestamps read as "the last hour" both
    # on the demo's dashboard (which follows the replay's clock) and to any later `voxwatch serve` or
    # `store sql` on the wall clock, rather than running up to an hour into the future.
    clock = VirtualClock(float(int(time.time() - scenario.duration_s)))
    # lanes as in `voxwatch serve`: the sink on the monitoring lane, the API on the dashboard lane
    rt = open_runtime(clock=clock, store=store.with_lane("monitor"), spool_dir=spool, sink_options={"flush_interval": 0.5})
    tel, sink = rt.telemetry, rt.sink
    cleanups.append(sink.close)
    sim = Simulation(scenario, clock=clock, telemetry=tel, sink=sink)
    controller = sim.controller

    pager, pager_url, env = _start_pager(args.host, clock, say, cleanups)
    ruleset = load_rules(env=env)

    ctx = AppContext(store=rt.store.with_lane("dashboard"), sink=sink, clock=clock, telemetry=tel, pipeline=sim.pipeline)
    service = start_service(ctx, args.host, args.port, args.dashboard_port, dashboard=not args.no_dashboard)
    cleanups.append(service.stop)
    findings: list = []

    def on_finding(f) -> None:
        findings.append(f)
        if getattr(f, "kind", "") == "saturation_trend":
            tte = getattr(f, "time_to_exhaustion_s", float("nan"))
            say(f"[anomaly] {_fmt_clock(clock.now())} {f.kind} on {f.metric} {dict(f.labels)}: "
                f"runs out in {tte / 60:.1f} min (score {f.score:.2f})")

    monitoring = MonitoringLoop(telemetry=tel, clock=clock, ruleset=ruleset, controller=controller, sink=sink, store=rt.store,
                          external_url=service.dashboard_url or service.api_url, on_finding=[on_finding])
    engine = monitoring.engine
    monitoring.expect_faults(scenario.ground_truth(), clock.now())
    ctx.alerts, ctx.anomaly = engine, monitoring.anomaly

    _say_banner(say, scenario, speed, store, service, pager_url)
    t0 = clock.now()
    wall0 = time.monotonic()
    sim.on_tick(_ticker(say, monitoring, sim, tel, speed, t0, wall0))
    stop = asyncio.Event()
    summary, interrupted = await _replay_until_done_or_stopped(sim, stop, say)
    await engine.settle(5.0)
    sink.flush()

    result = _result(scenario, clock, t0, wall0, summary, findings, pager, engine, sink, service)
    _say_result(say, result, pager, findings)
    if not args.exit_after_replay and not interrupted:
        say(f"Still serving: dashboard {service.dashboard_url or '(off)'}  API {service.api_url}  - Ctrl-C to stop")
        await stop.wait()
    await monitoring.aclose()
    return result


def _start_pager(host: str, clock, say, cleanups: list) -> tuple[PagerReceiver, str, dict[str, str]]:
    """The local pager the rules page: its receiver, its URL and the environment the rule files read."""
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()  # Standard Webhooks' format
    pager = PagerReceiver(secret, clock, say)
    pager_server, pager_thread, pager_url = _serve_in_thread(pager.app(), host, 0)

    def stop_pager() -> None:
        pager_server.should_exit = True
        pager_thread.join(5)

    cleanups.append(stop_pager)
    env = {"VOXWATCH_PAGER_URL": f"{pager_url}/hooks/pager", "VOXWATCH_TICKET_URL": f"{pager_url}/hooks/tickets",
           "VOXWATCH_WEBHOOK_SECRET": secret}
    return pager, pager_url, env


def _say_banner(say, scenario, speed: float | None, store, service, pager_url: str) -> None:
    say(markup=True, text=f"[bold]Voxwatch demo[/bold]: replaying [bold]{scenario.name}[/bold] ({scenario.traffic.concurrent_calls:,} calls at peak, "
        f"{scenario.duration_s / 60:.0f} simulated minutes) at {'max' if speed is None else f'{speed:g}x'} speed")
    say(f"  store      {store.url}")
    say(f"  API        {service.api_url}/docs   (read token: {service.read_token})")
    if service.admin_token:  # what a person pastes into the Incidents page to acknowledge
        say(f"  admin      token {service.admin_token} (acknowledge, resolve, notes, silences)")
    if service.dashboard_url:
        say(f"  dashboard  {service.dashboard_url}")
    say(f"  pager      {pager_url}/hooks/pager (Standard Webhooks signatures verified)")
    for g in scenario.ground_truth():
        say(f"  fault      {g['kind']} on {g['target'] or 'everything'}: +{g['start_s'] / 60:.0f} to +{g['end_s'] / 60:.0f} min"
            f"  ({g['description']})")
    say("")


def _ticker(say, monitoring, sim, tel, speed: float | None, t0: float, wall0: float):
    """What runs at each simulated tick: the monitoring loop, the actions taken, a status line every
    5 simulated minutes, and the pacing when a person watches."""
    from alerts.evaluate import aggregate
    from alerts.ruleset import Selector

    engine = monitoring.engine
    controller = sim.controller
    actions_seen = 0
    status_every = 300.0
    next_status = t0

    async def tick(now: float) -> None:
        nonlocal actions_seen, next_status
        await monitoring.tick(now)
        await engine.settle(2.0)
        history = engine.actions.history if engine.actions else []
        for a in history[actions_seen:]:
            say(f"[action] {_fmt_clock(a['ts_ms'] / 1000)} {a['phase']} {a['level']}"
                f"{' in ' + a['region'] if a.get('region') else ''} (rule {a['rule']})")
        actions_seen = len(history)
        if now >= next_status:
            state = controller.state()
            p99 = aggregate(engine.view, Selector(metric="voxwatch_turn_latency_seconds"), "quantile", [], now, 60.0, 0.99)
            p99_ms = f"{next(iter(p99.values())) * 1000:6.0f} ms" if p99 else "     - "
            pools = {s.labels.get("pool"): s.value for m in tel.registry.restricted_registry(["voxwatch_pool_saturation_ratio"]).collect()
                     for s in m.samples}
            worst = max(pools.items(), key=lambda kv: kv[1]) if pools else ("-", 0.0)
            say(f"[status] {_fmt_clock(now)} +{(now - t0) / 60:3.0f} min  calls {sim.active_calls:>6,}  turn P99 {p99_ms}  "
                f"fullest pool {worst[0]} {worst[1]:4.0%}  degradation {state.get('level', '?')}  firing {len(engine.firing())}")
            next_status += status_every
        if speed is not None:  # pace the replay for a person: simulated time runs `speed` x wall time
            lag = (now - t0) / speed - (time.monotonic() - wall0)
            if lag > 0:
                await asyncio.sleep(lag)

    return tick


async def _replay_until_done_or_stopped(sim, stop: asyncio.Event, say) -> tuple[dict, bool]:
    """Run the replay until it ends or SIGINT/SIGTERM sets `stop`; the summary and whether it was cut short."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    replay = asyncio.create_task(sim.run_async())
    waiter = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({replay, waiter}, return_when=asyncio.FIRST_COMPLETED)
    interrupted = replay not in done
    if interrupted:
        replay.cancel()
        say("\n[stopped] replay interrupted")
    return (replay.result() if not interrupted else sim.summary()), interrupted


def _result(scenario, clock, t0: float, wall0: float, summary: dict, findings: list, pager: PagerReceiver, engine, sink,
            service) -> dict:
    """The demo's figures (what `--json` prints)."""
    return {
        "scenario": scenario.name,
        "simulated_s": round(clock.now() - t0, 1),
        "wall_s": round(time.monotonic() - wall0, 1),
        "calls": summary.get("calls", summary.get("calls_started")),
        "findings": len(findings),
        "pages": [{"receiver": p.receiver, "status": p.status, "alerts": [a.get("labels", {}).get("alertname") for a in p.alerts],
                   "at_s": round(p.received_at - t0, 1)} for p in pager.pages],
        "refused_deliveries": pager.refused,
        "actions": [{k: a[k] for k in ("phase", "level", "region", "rule") if k in a} | {"at_s": round(a["ts_ms"] / 1000 - t0, 1)}
                    for a in (engine.actions.history if engine.actions else [])],
        "incidents": [{"incident_id": i.incident_id, "state": i.state, "title": i.title, "scope": i.scope, "rules": i.rules,
                       "timings": i.timings()} for i in engine.incidents.list()],
        "rows": {t: int(n) for t, n in sink.stats.written.items()},
        "api_url": service.api_url,
        "dashboard_url": service.dashboard_url,
    }


def _say_result(say, result: dict, pager: PagerReceiver, findings: list) -> None:
    say("")
    say(markup=True, text=f"[bold]Replay done[/bold]: {result['simulated_s'] / 60:.0f} simulated minutes in {result['wall_s']:.0f} s; "
        f"{len(pager.pages)} page(s) received, {len(result['actions'])} action(s), {len(findings)} finding(s); "
        f"{sum(result['rows'].values()):,} rows in the store")
    for inc in result["incidents"]:
        t = inc["timings"]
        said = ", ".join(f"{k} {v / 60:.0f} min" for k, v in t.items() if v is not None)
        say(f"[incident] {inc['incident_id']} {inc['state']}: {inc['title']} [{', '.join(inc['scope'])}] - {said} "
            f"(from the fault's start); the Incidents page and `voxwatch incident report` tell the rest")
