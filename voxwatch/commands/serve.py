"""`voxwatch serve`: the long-running service. It owns the store (chdb locks its folder, so this
process is the one that opens it), serves the FastAPI app (query API, /metrics, control) on uvicorn,
and optionally the Streamlit dashboard, which reads through that API with a read token.

`start_api` and `start_dashboard` are what `voxwatch demo` and the tests use to run the same pieces
in the background and learn their URLs.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from telemetry.store import redact_url
from voxwatch.config import ConfigError, Scope, Settings, load_settings

log = logging.getLogger(__name__)

# SIGTERM/SIGINT: how long requests in flight and the sink's last flush may take before stopping anyway.
STOP_REQUESTS_S = 5.0
STOP_FLUSH_S = 15.0

DASHBOARD_APP = Path(__file__).resolve().parent.parent.parent / "dashboards" / "app.py"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class RunningAPI:
    """The API served by uvicorn on a background thread of this process."""

    url: str
    server: object  # uvicorn.Server
    thread: threading.Thread
    ctx: object = None

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        stop_ingest_workers(self.ctx)


def stop_ingest_workers(ctx) -> None:
    """The OTLP receiver's mapping processes (`ingest.map_workers`), once no request is being served."""
    receiver = getattr(ctx, "extras", {}).get("ingest_receiver") if ctx is not None else None
    if receiver is not None:
        receiver.close()


def start_api(ctx, host: str = "127.0.0.1", port: int = 0, *, log_level: str = "warning",
              ready_timeout: float = 30.0) -> RunningAPI:
    """Serve `create_app(ctx)` on a thread; returns once it answers /healthz. Port 0 picks a free one."""
    import uvicorn

    from voxwatch.app import create_app

    port = port or free_port(host)
    config = uvicorn.Config(create_app(ctx), host=host, port=port, log_level=log_level, access_log=False,
                            lifespan="off")
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # the owner of the main thread handles signals
    thread = threading.Thread(target=server.run, name=f"voxwatch-api-{port}", daemon=True)
    thread.start()
    url = f"http://{host}:{port}"
    _wait_http(f"{url}/healthz", ready_timeout, thread.is_alive)
    return RunningAPI(url, server, thread, ctx)


@dataclass
class RunningDashboard:
    """The Streamlit dashboard in a child process."""

    url: str
    process: subprocess.Popen

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)


def start_dashboard(api_url: str, token: str, host: str = "127.0.0.1", port: int = 0, *,
                    refresh_s: float | None = None, ready_timeout: float = 60.0, log_file=None) -> RunningDashboard:
    """Start `streamlit run dashboards/app.py` pointed at the API with a read token; returns once it serves."""
    port = port or free_port(host)
    env = dict(os.environ, VOXWATCH_API_URL=api_url, VOXWATCH_API_TOKEN=token)
    if refresh_s is not None:
        env["VOXWATCH_REFRESH_S"] = str(refresh_s)
    cmd = [sys.executable, "-m", "streamlit", "run", str(DASHBOARD_APP), "--server.address", host,
           "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none", "--global.developmentMode", "false"]
    proc = subprocess.Popen(cmd, env=env, stdout=log_file or subprocess.DEVNULL, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://{host}:{port}"
    try:
        _wait_http(f"{url}/_stcore/health", ready_timeout, lambda: proc.poll() is None)
    except RuntimeError:
        proc.kill()
        raise
    return RunningDashboard(url, proc)


@dataclass
class RunningService:
    """The API and the dashboard started together (what `voxwatch demo` shows to a person)."""

    api: RunningAPI
    dashboard: RunningDashboard | None
    read_token: str
    admin_token: str | None

    @property
    def api_url(self) -> str:
        return self.api.url

    @property
    def dashboard_url(self) -> str | None:
        return self.dashboard.url if self.dashboard else None

    def stop(self) -> None:
        if self.dashboard is not None:
            self.dashboard.stop()
        self.api.stop()


def start_service(ctx, host: str = "127.0.0.1", api_port: int = 0, dashboard_port: int = 0, *,
                  dashboard: bool = True, refresh_s: float | None = None, log_file=None) -> RunningService:
    """Serve `ctx` (API on a thread) and, with `dashboard`, Streamlit in a child process reading it with
    a read token. Tokens come from `ctx.settings`; when it has none, a read and an admin token are
    generated and put into `ctx.settings` (so the API accepts them). Stop with `.stop()`."""
    settings = (ctx.settings or Settings()).with_generated_tokens()
    ctx.settings = settings
    api = start_api(ctx, host, api_port)
    dash = None
    read_token = settings.first_token(Scope.READ)
    try:
        if dashboard:
            dash = start_dashboard(api.url, read_token, host, dashboard_port, refresh_s=refresh_s, log_file=log_file)
    except Exception:
        api.stop()
        raise
    return RunningService(api, dash, read_token, settings.first_token(Scope.ADMIN))


def _port_is_free(host: str, port: int) -> None:
    """Refuse to start (one line, non-zero exit) when the API port is taken, before any token is printed."""
    from voxwatch.cli import CommandError

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no conflict
        try:
            s.bind((host, port))
        except OSError as exc:
            raise CommandError(f"cannot serve on {host}:{port}: {exc.strerror or exc} (choose another --port)") from None


def freeze_startup_heap() -> None:
    """Everything loaded by now (modules, the app, the store's schema) lives as long as the process, so
    the cyclic garbage collector need not trace it again on every full collection (`gc.freeze`). A
    busy receiver allocates enough to run a full collection every few requests: with the heap of a
    started service, that was ~1 us per ingested span, a tenth of the receiver's time (bench otlp)."""
    import gc

    gc.collect()
    gc.freeze()


def _wait_http(url: str, timeout: float, alive) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"the server behind {url} exited before it answered")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:g} s")


def build_context(settings: Settings, store=None, clock=None):
    """The service's AppContext: the store (opened and migrated here unless given), a sink, the
    clock, this process's telemetry (served at /metrics, snapshotted into the store), and the
    pipeline's degradation controller that WebRTC calls, the control API and alert actions share."""
    from types import SimpleNamespace

    from pipeline.degradation import DegradationController
    from telemetry import open_runtime
    from telemetry.clock import WallClock
    from telemetry.store import open_store
    from voxwatch.context import AppContext

    clock = clock or WallClock()
    # Lanes (telemetry/store/pool.py): the sink and the monitoring loop use the monitoring lane, the
    # API reads on the dashboard lane, analysts' SQL runs on the analyst lane; none queues behind another.
    store = (store or open_store(settings.store)).with_lane("monitor")
    rt = open_runtime(clock=clock, store=store, spool_dir=settings.spool_dir, source="api")
    store, sink, tel = rt.store, rt.sink, rt.telemetry
    controller = DegradationController(clock, sink=sink)
    return AppContext(store=store.with_lane("dashboard"), sink=sink, clock=clock, telemetry=tel, settings=settings,
                      pipeline=SimpleNamespace(controller=controller))


def start_monitoring(ctx, external_url: str = "", ruleset=None, reloader=None):
    """The live loop on a thread of its own: snapshots, anomaly findings, alert rules and actions,
    once a second. Rules and routing are the config's (`rule_files`, `alerting`), by default the
    shipped set, whose receivers come from the environment (VOXWATCH_PAGER_URL, VOXWATCH_TICKET_URL,
    VOXWATCH_WEBHOOK_SECRET, VOXWATCH_ALERTMANAGER_URL, PAGERDUTY_ROUTING_KEY). With a `reloader`,
    a config reload reaches the engine on this loop."""
    import asyncio

    from alerts import load_rules
    from telemetry.runtime import RuntimeMonitor
    from voxwatch.loop import MonitoringLoop

    # the loop's snapshots, anomaly polls and alert state use the monitoring lane, never the API's
    loop_obj = MonitoringLoop(telemetry=ctx.telemetry, clock=ctx.clock, ruleset=ruleset or load_rules(),
                              sink=ctx.sink, store=ctx.store.with_lane("monitor"), controller=ctx.pipeline.controller,
                              external_url=external_url)
    ctx.alerts, ctx.anomaly = loop_obj.engine, loop_obj.anomaly
    if reloader is not None:
        reloader.monitoring = loop_obj
    runtime = RuntimeMonitor(ctx.telemetry, process="voxwatch-serve")
    stop_holder: dict = {}

    def main() -> None:
        async def go() -> None:
            stop_holder["stop"] = stop = asyncio.Event()
            stop_holder["loop"] = asyncio.get_running_loop()
            if reloader is not None:
                reloader.engine_loop = stop_holder["loop"]
            watcher = asyncio.create_task(runtime.watch())
            try:
                await loop_obj.run(stop)
            finally:
                watcher.cancel()
                await loop_obj.aclose()

        asyncio.run(go())

    thread = threading.Thread(target=main, name="voxwatch-monitoring", daemon=True)
    thread.start()

    def stop(timeout: float = 10.0) -> None:
        loop, ev = stop_holder.get("loop"), stop_holder.get("stop")
        if loop is not None and ev is not None:
            loop.call_soon_threadsafe(ev.set)
        thread.join(timeout)
        runtime.close()

    return stop


def register(sub) -> None:
    p = sub.add_parser("serve", help="run the API (and optionally the dashboard) on a store, until stopped")
    p.add_argument("--config", help="settings file (.toml or .yaml): store, tokens with scopes, ports, limits, "
                   "rule_files, alerting (routes, receivers), external_url, calls (`voxwatch init DIR` writes one); "
                   "reloaded on SIGHUP or POST /-/reload")
    p.add_argument("--store", help="store URL (overrides the config and VOXWATCH_STORE)")
    p.add_argument("--host", help="address to listen on (default from config, else 127.0.0.1)")
    p.add_argument("--port", type=int, help="API port (default from config, else 8000)")
    p.add_argument("--dashboard", action="store_true", help="also serve the Streamlit dashboard")
    p.add_argument("--dashboard-port", type=int, help="dashboard port (default from config, else 8501)")
    p.set_defaults(func=run)


def run(args) -> int:
    from voxwatch.cli import CommandError
    from voxwatch.config_rules import external_url, load_ruleset

    try:
        settings = load_settings(args.config, store=args.store, host=args.host, port=args.port,
                                 dashboard_port=args.dashboard_port)
        ruleset = load_ruleset(settings, args.config or "config")
    except ConfigError as exc:
        raise CommandError(str(exc)) from None
    generated = not settings.tokens
    settings = settings.with_generated_tokens()
    try:
        ctx = build_context(settings)
    except Exception as exc:  # the store URL or the store itself: one line for the operator
        raise CommandError(f"cannot open store {redact_url(settings.store)}: {str(exc).splitlines()[0]}") from None

    import uvicorn

    from voxwatch.app import create_app
    from voxwatch.reload import Reloader

    reloader = Reloader(ctx, args.config, overrides={"store": args.store, "host": args.host, "port": args.port,
                                                     "dashboard_port": args.dashboard_port})
    ctx.extras["reloader"] = reloader
    dashboard = None
    stopping = threading.Event()
    reload_asked = threading.Event()

    def on_signal(signum, frame):
        stopping.set()

    def on_hup(signum, frame):
        reload_asked.set()

    try:
        api_port = settings.port or free_port(settings.host)
        _port_is_free(settings.host, api_port)
        url = f"http://{settings.host}:{api_port}"
        # a request still running at shutdown gets this long, then its connection is closed
        config = uvicorn.Config(create_app(ctx), host=settings.host, port=api_port, log_level="warning",
                                access_log=False, lifespan="off", timeout_graceful_shutdown=STOP_REQUESTS_S)
        server = uvicorn.Server(config)
        server.install_signal_handlers = lambda: None
        thread = threading.Thread(target=server.run, name="voxwatch-api", daemon=True)
        thread.start()
        _wait_http(f"{url}/healthz", 30.0, thread.is_alive)
        stop_monitoring = start_monitoring(ctx, external_url=external_url(settings, api_port), ruleset=ruleset,
                                           reloader=reloader)
        reloader.loaded(True)
        freeze_startup_heap()
        # printed once it answers, so whoever reads this line can use the URL at once
        print(f"voxwatch: API on {url} (OpenAPI: {url}/docs), store {redact_url(settings.store)}", flush=True)
        if generated:
            print("voxwatch: no tokens configured; generated for this run:", flush=True)
            for t in settings.tokens:
                print(f"  {t.name} ({', '.join(s.value for s in t.scopes)}): {t.token}", flush=True)
        if args.dashboard:
            token = settings.first_token(Scope.READ)
            dashboard = start_dashboard(url.replace("0.0.0.0", "127.0.0.1"), token, settings.host,
                                        settings.dashboard_port)
            print(f"voxwatch: dashboard on {dashboard.url}", flush=True)
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGHUP, on_hup)
        while not stopping.is_set() and thread.is_alive():
            stopping.wait(0.5)
            if reload_asked.is_set():
                reload_asked.clear()
                result = reloader.reload()
                if result.ok:
                    print(f"voxwatch: config reloaded ({result.rules} rules)"
                          + (f"; {', '.join(result.restart_needed)} changed, which takes a restart"
                             if result.restart_needed else ""), flush=True)
                else:
                    print("voxwatch: config reload refused, the running config stays: "
                          + "; ".join(result.problems), flush=True)
        if dashboard is not None:  # first, so no page is still asking the API while it shuts down
            dashboard.stop()
            dashboard = None
        # Graceful stop, bounded: the loop's last round, analysts' queries cancelled in the engine,
        # requests finished (or cut after STOP_REQUESTS_S), the sink flushed (or spooled after
        # STOP_FLUSH_S), the store's connections closed.
        stop_monitoring()
        runner = ctx.extras.get("analyst_runner")
        if runner is not None:
            runner.cancel_all(ctx.store)
        server.should_exit = True
        thread.join(STOP_REQUESTS_S + 5)
        return 0
    finally:
        if dashboard is not None:
            dashboard.stop()
        stop_ingest_workers(ctx)  # the mapping processes, once the server answers no more
        if ctx.sink is not None:
            try:
                ctx.sink.close(timeout=STOP_FLUSH_S)
            except TimeoutError as exc:
                print(f"voxwatch: {exc}", flush=True)
        ctx.store.close()
        print("voxwatch: stopped", flush=True)
