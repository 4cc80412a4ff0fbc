"""The house rules that a reader of the code can check mechanically, checked so they stay true:
no function in product code is much longer than a screenful or two (a long one is split into named
steps), and telemetry's tables are read and written through telemetry's own functions.

The checks read the source (ast and text), so they run in well under a second."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PRODUCT_ROOMS = ("pipeline", "telemetry", "anomaly", "alerts", "dashboards", "voxwatch")
MAX_FUNCTION_LINES = 120  # "about 100 lines", with room for a docstring and a long signature

# Long functions in files another issue is changing this round: split after those land.
# Each entry must still be too long (else it is removed from here), so the list only shrinks.
LONG_FUNCTIONS_OWED = {
    ("voxwatch/api/ingest.py", "build_router"),  # OTLP ingest (issue 13 is in this file)
}


def _product_files() -> list[Path]:
    return sorted(p for room in PRODUCT_ROOMS for p in (REPO / room).rglob("*.py"))


def function_lengths(path: Path) -> list[tuple[str, int, int]]:
    """(name, first line, number of lines) of every function and method in a file, nested ones too."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [(n.name, n.lineno, n.end_lineno - n.lineno + 1) for n in ast.walk(tree)
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def long_functions(limit: int = MAX_FUNCTION_LINES) -> list[tuple[str, str, int, int]]:
    out = []
    for path in _product_files():
        rel = path.relative_to(REPO).as_posix()
        out += [(rel, name, line, n) for name, line, n in function_lengths(path) if n > limit]
    return out


def test_the_length_check_sees_a_long_function(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(130))
    f = tmp_path / "long.py"
    f.write_text(f"def short():\n    return 1\n\n\ndef long():\n{body}\n    return 0\n")
    assert [(name, n) for name, _, n in function_lengths(f) if n > MAX_FUNCTION_LINES] == [("long", 132)]


def test_no_product_function_is_longer_than_about_100_lines():
    found = long_functions()
    too_long = [f"{rel}:{line} {name} ({n} lines)" for rel, name, line, n in found if (rel, name) not in LONG_FUNCTIONS_OWED]
    assert not too_long, "split these into named steps:\n" + "\n".join(too_long)
    still_owed = {(rel, name) for rel, name, _, _ in found}
    paid = LONG_FUNCTIONS_OWED - still_owed
    assert not paid, f"no longer too long, remove from LONG_FUNCTIONS_OWED: {sorted(paid)}"


if __name__ == "__main__":  # `python -m tests.test_house_rules [LINES]`: list the functions over LINES (default 100)
    import sys

    for rel, name, line, n in sorted(long_functions(int(sys.argv[1]) if len(sys.argv) > 1 else 100), key=lambda r: -r[3]):
        print(f"{n:4d}  {rel}:{line}  {name}")
