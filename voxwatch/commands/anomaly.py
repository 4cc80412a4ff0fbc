"""`voxwatch anomaly ...`: the anomaly room's commands (NAB benchmark, lead time on a scenario)."""

from __future__ import annotations

import json
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
    nab.set_defaults(func=_nab)


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
        run = run_nab(root)
        reports = run.reports
        extra = {"detector": "robust_level+likelihood", "points": run.points, "seconds": round(run.seconds, 2),
                 "skipped": run.skipped}
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
            print(f"  {extra['points']} points in {extra['seconds']} s; skipped {extra['skipped']}")
    return 0
