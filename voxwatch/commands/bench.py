"""`voxwatch bench NAME`: each benchmark lives in `voxwatch/bench/<name>.py` with `add_arguments(parser)`
(optional) and `run(args) -> dict`; it measures a baseline in the same run and reports a ratio."""

from __future__ import annotations

import importlib
import json
import pkgutil

import voxwatch.bench as bench_pkg


def _benchmarks() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(bench_pkg.__path__) if not m.name.startswith("_"))


def register(sub) -> None:
    p = sub.add_parser("bench", help="benchmarks, each with a baseline measured in the same run")
    bsub = p.add_subparsers(dest="bench", required=True, metavar="NAME")
    for name in _benchmarks():
        module = importlib.import_module(f"voxwatch.bench.{name}")
        bp = bsub.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0])
        bp.add_argument("--json", action="store_true", help="print the result as JSON")
        if hasattr(module, "add_arguments"):
            module.add_arguments(bp)
        bp.set_defaults(func=lambda a, m=module, n=name: _run(n, m, a))
    ap = bsub.add_parser("all", help="run every benchmark with its defaults")
    ap.add_argument("--json", action="store_true")
    ap.set_defaults(func=_run_all)


def _emit(name: str, result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"bench": name, **result}, default=float))
    else:
        print(f"== bench {name}")
        for k, v in result.items():
            print(f"  {k}: {v}")


def _run(name, module, args) -> int:
    _emit(name, module.run(args), args.json)
    return 0


def _run_all(args) -> int:
    import argparse

    for name in _benchmarks():
        module = importlib.import_module(f"voxwatch.bench.{name}")
        p = argparse.ArgumentParser()
        p.add_argument("--json", action="store_true")
        if hasattr(module, "add_arguments"):
            module.add_arguments(p)
        a = p.parse_args(["--json"] if args.json else [])
        _emit(name, module.run(a), args.json)
    return 0
