"""The house rules that a reader of the code can check mechanically, checked so they stay true:
no function in product code is much longer than a screenful or two (a long one is split into named
steps); telemetry's tables are read and written through telemetry's own functions, and alerts' own
tables through one alerts module.

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
LONG_FUNCTIONS_OWED: set[tuple[str, str]] = set()


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



# -- who writes SQL about which table
ALERTS_TABLES = {"alert_state", "alert_events", "notifications", "silences", "degradation_actions", "incidents",
                 "incident_events"}
ALERTS_SQL_MODULE = "alerts/tables.py"
# SQL text a bench or the analyst console holds on purpose: the raw query is the thing measured or shown.
RAW_SQL_ON_PURPOSE = {
    "dashboards/views/sql.py": "the analyst SQL console's example query",
    "voxwatch/bench/query.py": "the full scan of the samples the read queries are compared against",
    "voxwatch/bench/ingest.py": "the raw INSERT baselines (chdb, clickhouse-client) the sink is compared against",
    "voxwatch/bench/soak.py": "an analyst's ad-hoc query run as load",
    "voxwatch/bench/contention.py": "an analyst's heavy query run as load",
}


def _sql_about(text: str, tables: set[str]) -> list[str]:
    """The statements' fragments in `text` that name one of `tables` after FROM/INTO/JOIN/TABLE (SQL's upper case)."""
    pattern = re.compile(r"\b(?:FROM|INTO|JOIN|TABLE)\s+[`\"]?(" + "|".join(sorted(tables)) + r")\b")
    return [m.group(0) for m in pattern.finditer(text)]


def sql_outside_its_owner() -> list[str]:
    from telemetry.store.schema import TABLES

    telemetry_tables = {t.name for t in TABLES} - ALERTS_TABLES
    found = []
    for path in _product_files():
        rel = path.relative_to(REPO).as_posix()
        text = path.read_text(encoding="utf-8")
        if not rel.startswith("telemetry/") and rel not in RAW_SQL_ON_PURPOSE:
            found += [f"{rel}: {hit}" for hit in _sql_about(text, telemetry_tables)]
        # alerts' tables: their SQL in alerts.tables; telemetry's schema creates them
        if rel != ALERTS_SQL_MODULE and not rel.startswith("telemetry/store/"):
            found += [f"{rel}: {hit}" for hit in _sql_about(text, ALERTS_TABLES)]
    return found


def test_the_sql_check_sees_a_query_and_not_prose():
    assert _sql_about('q = "SELECT count() FROM calls WHERE x"', {"calls"}) == ["FROM calls"]
    assert _sql_about("# the rows from calls are kept", {"calls"}) == []
    assert _sql_about('"INSERT INTO `silences` (a) VALUES"', {"silences"}) == ["INTO `silences"]


def test_telemetry_owns_the_sql_of_its_tables_and_alerts_keeps_its_own_in_one_module():
    found = sql_outside_its_owner()
    assert not found, "read and write these through telemetry.store (or alerts.tables):\n" + "\n".join(found)
    from telemetry.store.schema import TABLES

    names = {t.name for t in TABLES}
    assert ALERTS_TABLES <= names, ALERTS_TABLES - names  # a renamed table must not silently empty the check
    for rel in RAW_SQL_ON_PURPOSE:  # the list only shrinks: a file without raw SQL any more leaves it
        assert _sql_about((REPO / rel).read_text(encoding="utf-8"), names), f"{rel} holds no raw SQL now: remove it"

if __name__ == "__main__":  # `python -m tests.test_house_rules [LINES]`: list the functions over LINES (default 100)
    import sys

    for rel, name, line, n in sorted(long_functions(int(sys.argv[1]) if len(sys.argv) > 1 else 100), key=lambda r: -r[3]):
        print(f"{n:4d}  {rel}:{line}  {name}")
