"""The read-only SQL guard for analysts: ClickHouse's own parser and analyser decide what a
statement is and what it reads, and only the store's own tables and views are allowed.

Why not regular expressions: a trailing `--`, backticks (`` `file`( ``), `/**/` and string
literals all changed what a text-level check saw versus what the engine ran (issue 19). Here the
statement is never inspected as text:

1. The engine parses it (`formatQuerySingleLine`, with the SQL passed as a bound string parameter,
   so it is data, never a second statement). This refuses multi-statements and syntax errors and
   gives the canonical single-line form: comments are gone, identifiers and literals normalised.
2. The engine's AST (`EXPLAIN AST` of the canonical text) must be a SELECT (or SHOW TABLES,
   DESCRIBE of a table, EXPLAIN of a SELECT); no SETTINGS, FORMAT or INTO OUTFILE anywhere; no
   table function outside a small list of generators; no scalar function that reaches outside the
   store (`file`, dictionaries, `sleep`, ...).
3. The engine's analyser (`EXPLAIN QUERY TREE`) resolves every table the SELECT reads: CTEs,
   subqueries, `x IN tablename`, aliases. Each must be one of the store's tables or views in the
   store's database: an allow-list. Step 2 runs first because analysis folds constants, and a
   folded `file('/etc/passwd')` would already read the file.

The embedded engine (chdb, ClickHouse 26.x) is the parser for both backends: on a server store the
analyser runs against an empty copy of the schema (Memory tables) in a private database. The limits
(`readonly`, rows, bytes, memory, time) then reach the engine where the SQL text cannot change them:
out of band as query settings on a server, and on chdb as a SETTINGS clause appended to the
canonical text, which is accepted only if the engine formats text + clause back to itself.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

# Table functions that only generate numbers: they read nothing outside the store.
SAFE_TABLE_FUNCTIONS = frozenset({"numbers", "numbers_mt", "zeros", "zeros_mt", "generateseries", "generate_series"})
# Scalar functions that read files, dictionaries or other tables by name, or hold a query on purpose.
_DENIED_FUNCTION = re.compile(
    r"^(file|url|s3|catboostevaluate|modelevaluate|evalmlmethod|joinget\w*|dict\w*|filesystem\w*|sleep|sleepeachrow"
    r"|getsetting|getsettingordefault|currentprofiles|enabledprofiles|defaultprofiles|currentroles|enabledroles"
    r"|getclienthttpheader|getserverport|getmacro|displayname|input|python)$",
    re.IGNORECASE,
)
# AST statement nodes a read may contain; every other `...Query` node (Insert, Alter, Create, ...) is refused.
_ALLOWED_QUERY_NODES = frozenset({
    "SelectWithUnionQuery", "SelectQuery", "SelectIntersectExceptQuery",
    "TablesInSelectQuery", "TablesInSelectQueryElement", "DescribeQuery",
})
_EXPLAIN_PREFIX = re.compile(r"^EXPLAIN(?: (?:AST|SYNTAX|QUERY TREE|PLAN|PIPELINE|ESTIMATE))? (?=SELECT |WITH |\()")
_SHOW_TABLES = re.compile(r"^SHOW TABLES(?: (?:NOT )?I?LIKE '(?:[^'\\]|\\.)*')?$")
_TABLE_LINE = re.compile(r"\bTABLE id: \d+(?:, alias: [^,]+)?, table_name: ([^,\s]+)")
_TABLE_FUNCTION_LINE = re.compile(r"\bTABLE_FUNCTION id: \d+(?:, alias: [^,]+)?, table_function_name: (\w+)")


class SqlRefused(ValueError):
    """The guard refused a statement; the message says why in one line."""


@dataclass
class AstNode:
    kind: str
    detail: str
    children: list[AstNode] = field(default_factory=list)

    def walk(self, parent: AstNode | None = None):
        yield self, parent
        for c in self.children:
            yield from c.walk(self)


def parse_ast(text: str) -> AstNode:
    """Turn `EXPLAIN AST` output (one node a line, one space of indent per level) into a tree."""
    root = AstNode("", "")
    stack: list[tuple[int, AstNode]] = [(-1, root)]
    for line in text.splitlines():
        if not line.strip():
            continue
        depth = len(line) - len(line.lstrip(" "))
        body = re.sub(r"\s*\(children \d+\)\s*$", "", line.strip())
        kind, _, detail = body.partition(" ")
        node = AstNode(kind, detail.strip())
        while stack[-1][0] >= depth:
            stack.pop()
        stack[-1][1].children.append(node)
        stack.append((depth, node))
    if len(root.children) != 1:
        raise SqlRefused("the statement could not be read as one query")
    return root.children[0]


def _name(detail: str) -> str:
    # "calls (alias c)" -> "calls"; "voxwatch.calls" stays qualified
    return re.sub(r"\s*\(alias .*\)$", "", detail).strip()


@dataclass(frozen=True)
class VettedStatement:
    canonical: str  # the engine's single-line form: no comments, one statement
    kind: str  # select | show | describe | explain
    tables: tuple[str, ...]  # tables and views it reads (unqualified names)


Runner = Callable[[str, dict | None], str]  # (sql, string params) -> TSV text, run on the embedded engine


def vet(sql: str, run: Runner, database: str, allowed: Iterable[str],
        limits: dict[str, object] | None = None) -> VettedStatement:
    """Decide with the engine whether `sql` is a read of the store's own tables; raise SqlRefused if not.

    `run` executes on the embedded engine with `database` as the current database (where the store's
    tables, or an empty copy of them, exist); `allowed` are the table and view names analysts may read;
    `limits` bound the analysis too (it may evaluate constant scalar subqueries)."""
    allowed = frozenset(allowed)
    if not sql or not sql.strip():
        raise SqlRefused("empty SQL statement")
    try:
        canonical = run("SELECT formatQuerySingleLine({q:String})", {"q": sql}).strip()
    except Exception as exc:  # noqa: BLE001 - a parse error is the analyst's, said in one line
        raise SqlRefused(f"the SQL does not parse: {_engine_message(exc)}") from exc
    if not canonical:
        raise SqlRefused("empty SQL statement")
    if _SHOW_TABLES.match(canonical):
        return VettedStatement(canonical, "show", ())
    inner, kind = canonical, "select"
    m = _EXPLAIN_PREFIX.match(canonical)
    if m:
        inner, kind = canonical[m.end():], "explain"
    tree = parse_ast(_engine(run, f"EXPLAIN AST {inner}"))
    if tree.kind == "DescribeQuery":
        return VettedStatement(canonical, "describe", (_describe_target(tree, database, allowed),))
    if tree.kind not in ("SelectWithUnionQuery", "SelectIntersectExceptQuery"):
        first = canonical.split(None, 1)[0].upper()
        raise SqlRefused(f"{first} statements are not allowed (SELECT, WITH, SHOW TABLES, DESCRIBE, EXPLAIN only)")
    if any(c.kind != "ExpressionList" for c in tree.children):
        raise SqlRefused("FORMAT and INTO OUTFILE are not allowed: the service chooses the result format")
    _check_nodes(tree)
    clause = settings_clause(limits) if limits else ""
    tables = _tables_read(_engine(run, f"EXPLAIN QUERY TREE {inner}{clause}"), database, allowed)
    return VettedStatement(canonical, kind, tables)


def _engine(run: Runner, sql: str) -> str:
    try:
        return run(sql, None)
    except Exception as exc:  # noqa: BLE001 - the engine's reason, in one line, is the analyst's answer
        raise SqlRefused(_engine_message(exc)) from exc


def _check_nodes(tree: AstNode) -> None:
    for node, parent in tree.walk():
        if node.kind == "Set":
            raise SqlRefused("SETTINGS are not allowed: the service fixes read-only mode and the row, memory and time limits")
        if node.kind.endswith("Query") and node.kind not in _ALLOWED_QUERY_NODES:
            raise SqlRefused(f"{node.kind} is not allowed in read-only SQL")
        if node.kind == "Function":
            fname = _name(node.detail)
            if parent is not None and parent.kind == "TableExpression":
                if fname.lower() not in SAFE_TABLE_FUNCTIONS:
                    raise SqlRefused(
                        f"table function {fname}() is not allowed: read-only SQL reads the store's own tables "
                        f"(and {', '.join(sorted(SAFE_TABLE_FUNCTIONS))})"
                    )
            elif _DENIED_FUNCTION.match(fname):
                raise SqlRefused(f"function {fname}() is not allowed in read-only SQL")


def _tables_read(query_tree: str, database: str, allowed: frozenset[str]) -> tuple[str, ...]:
    seen: list[str] = []
    for line in query_tree.splitlines():
        fm = _TABLE_FUNCTION_LINE.search(line)
        if fm and fm.group(1).lower() not in SAFE_TABLE_FUNCTIONS:
            raise SqlRefused(f"table function {fm.group(1)}() is not allowed in read-only SQL")
        tm = _TABLE_LINE.search(line)
        if tm:
            seen.append(_check_table(tm.group(1).strip(), database, allowed))
    return tuple(dict.fromkeys(seen))


def _describe_target(tree: AstNode, database: str, allowed: frozenset[str]) -> str:
    for node, _ in tree.walk():
        if node.kind == "TableIdentifier":
            return _check_table(_name(node.detail), database, allowed)
        if node.kind in ("Function", "Subquery"):
            break
    raise SqlRefused("DESCRIBE takes one of the store's tables")


def _check_table(qualified: str, database: str, allowed: frozenset[str]) -> str:
    if qualified == "system.one":  # the implicit FROM of `SELECT 1`: one row, one zero
        return qualified
    db, _, name = qualified.rpartition(".")
    if (db and db != database) or name not in allowed:
        raise SqlRefused(
            f"table {qualified} is not one of the store's tables; read-only SQL may read: {', '.join(sorted(allowed))}"
        )
    return name


def settings_clause(settings: dict[str, object]) -> str:
    """` SETTINGS k = v, ...` exactly as the engine's formatter writes it (strings single-quoted)."""
    parts = []
    for k, v in settings.items():
        value = "'" + str(v).replace("\\", "\\\\").replace("'", "\\'") + "'" if isinstance(v, str) else str(int(v))
        parts.append(f"{k} = {value}")
    return " SETTINGS " + ", ".join(parts)


def with_limits(statement: VettedStatement, settings: dict[str, object], run: Runner) -> str:
    """The canonical text with the limits appended, proven by the engine to carry exactly those limits.

    The formatter is idempotent on its own output; if text + clause formats back to itself, the
    clause was parsed as this statement's SETTINGS and nothing in the text could swallow it."""
    if statement.kind in ("show", "describe"):
        return statement.canonical  # SHOW TABLES / DESCRIBE read no data; settings do not apply to them
    text = statement.canonical + settings_clause(settings)
    again = run("SELECT formatQuerySingleLine({q:String})", {"q": text}).strip()
    if again != text:
        raise SqlRefused("the statement's limits could not be attached safely; simplify the query")
    return text


def _engine_message(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = re.sub(r"^(chdb|ClickHouse server [^:]+:\d+): ", "", text)
    text = re.sub(r"^Code: \d+\. DB::Exception: ", "", text)
    return re.sub(r"\. \(\w+\)$", "", text.split(": In scope")[0])
