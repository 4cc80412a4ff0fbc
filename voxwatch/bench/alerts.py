"""Alerting delay: fault start to first page and to action, Voxwatch vs Prometheus+Alertmanager defaults.

Both evaluators watch the same simulated run (same series, same findings, same rules): Voxwatch
scrapes and evaluates every simulated second with the shipped routing; the baseline engine is fed
as Prometheus would be with its defaults (15 s scrape, 1 m rule evaluation, Alertmanager
group_wait 30 s / group_interval 5 m). Pages go over real HTTP to a local receiver; the baseline's
actions are recorded (as an Alertmanager webhook to an automation would fire them), only
Voxwatch's reach the pipeline. Times are simulated seconds.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SCENARIOS = ("october-3", "region-outage")
PROM_SCRAPE_S = 15.0
PROM_EVAL_S = 60.0
AM_GROUP_WAIT_S = 30.0
AM_GROUP_INTERVAL_S = 300.0
AM_REPEAT_S = 14400.0


def add_arguments(parser) -> None:
    parser.add_argument("--scenario", action="append", choices=SCENARIOS, help="scenario (default: both)")
    parser.add_argument("--calls", type=int, default=2000, help="concurrent calls at peak (default 2000)")
    parser.add_argument("--duration", type=float, default=None, help="simulated seconds (default: the scenario's)")


class PageReceiver:
    """A local webhook receiver: when (on the simulation's clock) each page arrived, by path."""

    def __init__(self, clock) -> None:
        self.clock = clock
        self.got: list[tuple[str, float, dict]] = []
        rec = self

        class H(BaseHTTPRequestHandler):
            # keep-alive, as real receivers speak it: one connection per page is not what is measured
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                try:
                    doc = json.loads(body)
                except ValueError:
                    doc = {}
                rec.got.append((self.path, rec.clock.now(), doc))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

        # The stdlib's accept backlog is 5: a burst of pages (a group's resolves beside a new firing)
        # on a busy machine overflowed it, and each dropped connection waited a 1 s TCP retransmit.
        server_class = type("PagesServer", (ThreadingHTTPServer,), {"request_queue_size": 128})
        self.server = server_class(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def first(self, path: str, after: float) -> float | None:
        times = [t for p, t, d in self.got if p == path and t >= after and d.get("status") == "firing"]
        return min(times) if times else None

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _RecordingSink:
    """The baseline's action sink: records when an action would have been asked for."""

    def __init__(self, clock) -> None:
        self.clock = clock
        self.applied: list[tuple[float, str, str]] = []

    def request(self, level, reason, region=None, rule=""):
        if level != "NORMAL":
            self.applied.append((self.clock.now(), level, rule))
        return {"phase": "applied"}

    def state(self):
        return {}


def _prometheus_defaults(ruleset):
    """The same rules and routes with Prometheus' and Alertmanager's default intervals."""
    rs = ruleset.model_copy(deep=True)
    for g in rs.groups:
        g.interval = PROM_EVAL_S

    def fix(route):
        route.group_wait, route.group_interval, route.repeat_interval = AM_GROUP_WAIT_S, AM_GROUP_INTERVAL_S, AM_REPEAT_S
        for child in route.routes:
            fix(child)

    fix(rs.route)
    return rs


def _page_rules(ruleset) -> set[str]:
    return {r.name for r in ruleset.rules() if r.severity in ("page", "critical") or r.type == "slo"}


def _measure(name: str, calls: int, duration: float | None) -> dict:
    from alerts.engine import AlertEngine
    from alerts.ruleset import load_rules
    from telemetry.clock import VirtualClock
    from voxwatch.commands.rules import load_scenario_or_error, run_scenario

    sc = load_scenario_or_error(name, calls=calls, duration_s=duration)
    clock = VirtualClock(sc.start)
    pages = PageReceiver(clock)
    try:
        ours_rules = load_rules(env={"VOXWATCH_PAGER_URL": pages.url + "/voxwatch"})
        prom_rules = _prometheus_defaults(load_rules(env={"VOXWATCH_PAGER_URL": pages.url + "/prometheus"}))
        prom_sink = _RecordingSink(clock)
        prom = AlertEngine(prom_rules, clock, action_sink=prom_sink)
        fed = {"findings": 0, "scraped": -1e18}

        async def feed_prometheus(now, run):
            if now - fed["scraped"] >= PROM_SCRAPE_S - 1e-9:
                fed["scraped"] = now
                prom.view.scrape_registry(run.simulation.telemetry.registry, now, prom.wanted_sample_names())
                # findings are one more scraped series: Prometheus sees them at its next scrape
                for f in run.findings[fed["findings"]:]:
                    prom.on_finding(f)
                fed["findings"] = len(run.findings)
            await prom.tick()
            await prom.settle(2.0)

        # the baseline engine's connections live on the replay's loop: closed there, before it is
        run = run_scenario(ours_rules, sc, clock=clock, on_tick=feed_prometheus, on_end=prom.aclose)
    finally:
        pages.close()

    t0 = sc.start
    fault = min(sc.ground_truth(), key=lambda g: g["start_s"])
    start = t0 + fault["start_s"]
    paging = _page_rules(ours_rules)
    held = [t["ts"] for t in run.engine.transitions
            if t["rule"] in paging and t["previous_state"] in ("inactive", "resolved") and t["ts"] >= start
            and t["labels"].get("severity") in ("page", "critical")]
    cond = min(held) if held else None
    ours_action = [r["ts_ms"] / 1000 for r in run.controller.history if r["phase"] == "applied" and r["ts_ms"] / 1000 >= start]

    def side(page_at, action_at):
        def rel(t):
            return None if t is None else round(t - start, 1)

        return {
            "first_page_s": rel(page_at),
            "first_action_s": rel(action_at),
            "page_after_condition_s": None if page_at is None or cond is None else round(page_at - cond, 1),
            "action_after_page_s": None if page_at is None or action_at is None else round(action_at - page_at, 1),
        }

    ours = side(pages.first("/voxwatch", start), min(ours_action) if ours_action else None)
    prom_actions = [t for t, _, _ in prom_sink.applied if t >= start]
    base = side(pages.first("/prometheus", start), min(prom_actions) if prom_actions else None)
    ratio = cond_ratio = None
    if ours["first_page_s"] and base["first_page_s"]:
        ratio = round(base["first_page_s"] / ours["first_page_s"], 2)
    if ours["page_after_condition_s"] and base["page_after_condition_s"] is not None:
        cond_ratio = round(base["page_after_condition_s"] / ours["page_after_condition_s"], 2)
    return {
        "scenario": name,
        "calls": sc.traffic.concurrent_calls,
        "fault": f"{fault['kind']} {fault['target']} at {fault['start_s']:.0f}s",
        "condition_first_held_s": None if cond is None else round(cond - start, 1),
        "voxwatch": ours,
        "prometheus_defaults": base,
        "page_delay_ratio_prometheus_over_voxwatch": ratio,  # from fault start
        "page_after_condition_ratio_prometheus_over_voxwatch": cond_ratio,
        "targets": {
            "page_within_30s_of_condition": ours["page_after_condition_s"] is not None and ours["page_after_condition_s"] <= 30,
            "action_within_3s_of_page": ours["action_after_page_s"] is not None and ours["action_after_page_s"] <= 3,
        },
        "wall_s": round(run.wall_s, 1),
    }


def run(args) -> dict:
    names = args.scenario or list(SCENARIOS)
    results = {n: _measure(n, args.calls, args.duration) for n in names}
    return {
        "unit": "simulated seconds from fault start",
        "baseline": f"Prometheus {PROM_SCRAPE_S:g}s scrape, {PROM_EVAL_S:g}s evaluation; Alertmanager group_wait {AM_GROUP_WAIT_S:g}s",
        "scenarios": results,
    }
