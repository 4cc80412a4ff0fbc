"""`voxwatch anomaly ...`: the anomaly room's commands (NAB benchmark, lead time on a scenario)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from voxwatch.cli import CommandError

DEFAULT_NAB = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "nab"


def register(sub) -> None:
    p = sub.add_parser("anomaly", help="anomaly detection: NAB score, lead time on a scenario")
    asub = p.add_subparsers(dest="anomaly_command", required=True, metavar="ACTION")

    nab = asub.add_parser("nab", help="score the detector on the Numenta Anomaly Benchmark")
    nab.add_argument("--data", default=str(DEFAULT_NAB), help=f"NAB folder (default {DEFAULT_NAB})")
    nab.add_argument("--json", action="store_true", help="print the scores as JSON")
    nab.add_argument("--reference", metavar="DETECTOR",
                     help="score a reference detector's shipped outputs instead (numenta, windowedGaussian)")
    nab.add_argument("--novelty", nargs="?", const="nab", choices=("nab", "quiet", "off"), default=None,
                     help="the contextual novelty view beside the level detector in this mode (default: the "
                          "service's, 'quiet'): 'nab' (the default of a bare --novelty) scores best on NAB but pages "
                          "on noise, 'quiet' stays quiet on it, 'off' is the level detector alone")
    nab.add_argument("--artime", nargs="?", const="nab", choices=("nab", "quiet"), default=None,
                     help="with ARTime (adaptive resonance over windows, as NAB's leader does it) beside the "
                          "level detector (off in the service): 'nab' (default) tuned with NAB's input, pages "
                          "on noise in the service form; 'quiet' reports only clusters far from every learned one")
    nab.add_argument("--artime-input", choices=("service", "nab"), default="service",
                     help="with --artime: 'service' (default): ARTime learns its range from its probation; 'nab': "
                          "told each file's minimum, maximum and length, as NAB runs ARTime (look-ahead)")
    nab.add_argument("--artime-only", action="store_true",
                     help="ARTime alone, with NAB's input (each file's range and length), as on NAB's scoreboard")
    nab.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                     help="override one LevelSettings field for this run (repeatable), e.g. --set artime_report_floor=0")
    nab.set_defaults(func=_nab)

    lt = asub.add_parser("lead-time", help="warning time on a simulated incident vs a predict_linear rule, "
                                           "and findings on a normal day")
    lt.add_argument("--scenario", default="october-3", help="the incident scenario (default october-3)")
    lt.add_argument("--baseline", default="baseline", help="the normal-day scenario (default baseline; 'none' to skip)")
    lt.add_argument("--calls", type=int, default=None, help="peak concurrent calls (default: the scenarios')")
    lt.add_argument("--store", default=None,
                    help="chdb folder URL to simulate into (default: a temporary folder); each scenario gets a database")
    lt.add_argument("--budget-ms", type=float, default=300.0, help="turn-latency P99 budget (default 300)")
    lt.add_argument("--json", action="store_true", help="print the report as JSON")
    lt.add_argument("--novelty", choices=("nab", "quiet", "off"), default=None,
                    help="run the service with this contextual novelty mode beside the level detector (default: "
                         "the service's, 'quiet'; 'off': the level detector alone)")
    lt.add_argument("--artime", choices=("nab", "quiet"), default=None,
                    help="run the service with ARTime in this mode beside the level detector (anomaly/README.md)")
    lt.add_argument("--baseline-duration", type=float, default=None, metavar="SECONDS",
                    help="replay the normal day for this long, its story stretched to fit (default: its own, "
                         "3600 s): detectors with a long warm-up need more than an hour of normal day")
    lt.set_defaults(func=_lead_time)


def _nab(args) -> int:
    from anomaly.nab import load_corpus, load_reference_scores, score_corpus
    from anomaly.nab.run import run_nab

    root = Path(args.data)
    if not (root / "labels" / "combined_windows.json").is_file():
        raise CommandError(f"no NAB data at {root} (expected labels/combined_windows.json there)")
    if args.reference:
        files = load_corpus(root)
        try:
            scores = load_reference_scores(root, args.reference, files)
        except FileNotFoundError as exc:
            raise CommandError(f"no reference outputs for {args.reference!r}: {exc.filename}") from None
        reports, extra = score_corpus(files, scores), {"detector": args.reference}
    else:
        from anomaly.service import SERVICE_NOVELTY, LevelSettings

        mode = getattr(args, "novelty", None) or SERVICE_NOVELTY
        settings = LevelSettings.novelty_mode(mode)
        if getattr(args, "artime", None):
            settings = settings.with_artime(args.artime)
        settings = _with_overrides(settings, getattr(args, "set", []))
        nab_input = getattr(args, "artime_input", "service") == "nab"
        if nab_input and not settings.artime:
            raise CommandError("--artime-input nab needs --artime")
        artime_only = getattr(args, "artime_only", False)
        run = run_nab(root, settings, artime_nab_input=nab_input, artime_only=artime_only)
        reports = run.reports
        name = f"robust_level+context_novelty({mode})+likelihood" if mode != "off" else "robust_level+likelihood"
        if settings.artime:
            quiet = getattr(args, "artime", None) == "quiet"
            name += "+artime(nab input)" if nab_input else ("+artime(quiet)" if quiet else "+artime")
        if artime_only:
            name = "artime(nab input)"
        extra = {"detector": name, "points": run.points, "seconds": round(run.seconds, 2),
                 "skipped": run.skipped, "at_service_threshold": {
                     "threshold": run.threshold,
                     **{p: round(r.score, 2) for p, r in run.at_threshold.items()},
                     "details": {p: {"true_positives": r.true_positives, "false_positives": r.false_positives}
                                 for p, r in run.at_threshold.items()}}}
    if args.json:
        out = {name: round(r.score, 2) for name, r in reports.items()}
        out.update(extra)
        out["details"] = {name: {"threshold": r.threshold, "true_positives": r.true_positives,
                                 "false_negatives": r.false_negatives, "false_positives": r.false_positives}
                          for name, r in reports.items()}
        print(json.dumps(out, default=float))
    else:
        print(f"NAB ({extra['detector']})")
        for name, r in reports.items():
            print(f"  {name:20s} {r.score:6.2f}   threshold {r.threshold:.4g}  TP {r.true_positives}  "
                  f"FN {r.false_negatives}  FP rows {r.false_positives}")
        if "seconds" in extra:
            print(f"  at the service's fixed finding threshold {run.threshold:g} (no sweep):")
            for name, r in run.at_threshold.items():
                print(f"  {name:20s} {r.score:6.2f}   TP {r.true_positives}  FN {r.false_negatives}  "
                      f"FP rows {r.false_positives}")
            print(f"  {extra['points']} points in {extra['seconds']} s; skipped {extra['skipped']}")
    return 0


def _with_overrides(settings, pairs: list[str]):
    """`settings` with FIELD=VALUE overrides (values read as JSON where they parse: 0.9, true, null),
    validated like the settings themselves."""
    from pydantic import ValidationError

    if not pairs:
        return settings
    update = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or key not in type(settings).model_fields:
            raise CommandError(f"--set {pair!r}: expected FIELD=VALUE with a LevelSettings field")
        try:
            update[key] = json.loads(raw)
        except json.JSONDecodeError:
            update[key] = raw
    try:
        return type(settings)(**{**settings.model_dump(), **update})
    except ValidationError as exc:
        raise CommandError(f"--set: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}") from None


def _lead_time(args) -> int:
    import tempfile

    from anomaly.lead_time import compare_with_predict_linear, scenario_report
    from pipeline.simulation.scenario import ScenarioError, load_scenario
    from telemetry.catalog import default_catalog
    from telemetry.store import open_store
    from voxwatch.commands.simulate import simulate

    root = args.store or f"chdb://{tempfile.mkdtemp(prefix='voxwatch-leadtime-')}"
    if not root.startswith("chdb://") or "?" in root:
        raise CommandError("--store must be a chdb:// folder URL without options (each scenario gets a database)")
    from anomaly.service import AnomalySettings, LevelSettings

    catalog = default_catalog()
    mode, artime = getattr(args, "novelty", None), getattr(args, "artime", None)
    level = LevelSettings.novelty_mode(mode) if mode else AnomalySettings().level
    if artime:
        level = level.with_artime(artime)
    settings = AnomalySettings(level=level) if mode or artime else None
    baseline_s = getattr(args, "baseline_duration", None)
    if baseline_s is not None and not (math.isfinite(baseline_s) and baseline_s > 0):
        raise CommandError(f"--baseline-duration must be a positive number of seconds, not {baseline_s}")
    out = {}
    for role, name in (("incident", args.scenario), ("baseline", args.baseline)):
        if name is None or name.lower() == "none":
            continue
        try:
            scenario = load_scenario(name).scaled(calls=args.calls, duration_s=baseline_s if role == "baseline" else None)
        except ScenarioError as exc:
            raise CommandError(str(exc)) from None
        url = f"{root}?database=leadtime_{role}"
        store = open_store(url)
        store.drop_database()
        store.close()
        sim = simulate(scenario, store_url=url)
        minutes = sim.get("latency_by_minute") or []
        curve = None
        if minutes:  # the simulator's exact per-minute P99 (not a bucket estimate) marks the crossing
            curve = ([scenario.start + r["t_s"] for r in minutes], [r["turn"]["p99_ms"] / 1000.0 for r in minutes])
        store = open_store(url)
        try:
            report = scenario_report(store, catalog, settings, budget_s=args.budget_ms / 1000.0, latency_curve=curve)
        finally:
            store.close()
        report["scenario"] = name
        report["simulated_first_saturated_s"] = {p: v.get("first_saturated_s") for p, v in sim.get("pools", {}).items()}
        out[role] = report
    if "incident" in out:
        out["comparison"] = compare_with_predict_linear(out["incident"], out.get("baseline"))
    if args.json:
        print(json.dumps(out, default=float))
        return 0
    print_lead_time(out, args.budget_ms)
    return 0


def print_lead_time(out: dict, budget_ms: float = 300.0) -> None:
    """The lead-time report as a person reads it: each scenario's findings, the predict_linear rules,
    and the comparison with the earliest rule that stays quiet on the normal day."""
    for role in ("incident", "baseline"):
        if role not in out:
            continue
        r = out[role]
        print(f"{role}: {r['scenario']} ({r['duration_s']:.0f} s simulated)")
        print(f"  findings: {r['findings']} {r['findings_by_kind']}")
        if role == "incident":
            print(f"  turn-latency P99 > {budget_ms:g} ms (2 min sustained, {r['latency_source']}) at: "
                  f"{_fmt(r['latency_p99_crossed_s'])}; P99 early on {r['latency_p99_first_tenth_ms']:.0f} ms")
            print(f"  first saturation finding at: {_fmt(r['first_saturation_finding_s'])}"
                  f"  lead {_fmt(r['detector_lead_s'])}")
            if r["first_saturation_finding"]:
                print(f"    {r['first_saturation_finding']['reason']}")
            print(f"  turn-latency P99 > {r['explosion_threshold_s'] * 1000:g} ms at: {_fmt(r['latency_p99_explosion_s'])}; "
                  f"first finding on the saturation metric {_fmt(r['first_finding_on_saturation_metric_s'])}, "
                  f"lead {_fmt(r['lead_to_explosion_on_saturation_metric_s'])}")
        for f in r["findings_list"]:
            print(f"    {_fmt(f['t_s'])}  {f['kind']:16s} {f['reason']}")
        print("  predict_linear rules over the same saturation series:")
        for rule, v in r["predict_linear"].items():
            extra = (f"; first {_fmt(v['first_s'])} ({v['first_series']}), lead {_fmt(v['lead_s'])}"
                     if v["first_s"] is not None else "")
            print(f"    {rule}: {v['series_firing']} series firing{extra}")
    c = out.get("comparison")
    if c:
        print("comparison (the earliest predict_linear rule that stays quiet on the normal day):")
        print(f"  baseline findings: {c['baseline_findings']}; rules quiet on baseline: "
              f"{len(c['rules_quiet_on_baseline'])} of {len(c['rules_quiet_on_baseline']) + len(c['rules_firing_on_baseline'])}")
        print(f"  detector first finding {_fmt(c['detector_first_s'])}; best quiet rule "
              f"{c['best_quiet_rule'] or '-'} first at {_fmt(c['best_quiet_rule_first_s'])}; "
              f"detector ahead by {_fmt(c['detector_ahead_s'])}")


def _fmt(seconds) -> str:
    if seconds is None:
        return "-"
    return "all of it (none fired)" if seconds == float("inf") else f"{seconds / 60:.1f} min"
