"""`voxwatch` command line. Each room's commands live in `voxwatch/commands/<name>.py` with a
`register(subparsers)` function; this module only assembles them."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Order is the order of `voxwatch --help`. A module that is absent is skipped (a room not built yet).
COMMAND_MODULES = ("demo", "serve", "store", "metrics", "simulate", "anomaly", "rules", "bench")
COMMAND_MODULES += ("config",)  # voxwatch init DIR, voxwatch config check FILE


COMMAND_MODULES += ("incident",)  # voxwatch incident list, voxwatch incident report ID


class CommandError(Exception):
    """An error meant for the person at the terminal: printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voxwatch", description="Voice-AI pipeline observability.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"voxwatch.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"voxwatch.commands.{name}":
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except CommandError as exc:
        print(f"voxwatch: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    # Run the imported module's main, not this __main__ copy: commands raise voxwatch.cli.CommandError,
    # which is a different class from this copy's.
    from voxwatch.cli import main as _main

    sys.exit(_main())
