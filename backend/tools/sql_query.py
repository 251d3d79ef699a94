"""sql_query: read-only SELECTs against the configured SQLite database.

Here the query text is checked (one complete SELECT/WITH/VALUES statement, bounded length); it is
then run by ``_sql_worker.py`` in a separate short-lived process — inside the bubblewrap sandbox
with only the database file bound read-only when available, else an rlimited child — never in
the server. The worker opens the file read-only with an authorizer, value-size limits, a heap
limit and a progress-handler deadline (see its docstring); this side kills the process on a
wall-clock deadline and limits its memory and CPU. At most ``sql_max_rows`` rows and
``sql_max_result_bytes`` come back, as a Markdown table. The tool's description lists the schema
(``backend.tools.sql_schema``), and so does a "no such table/column" error.
"""

from __future__ import annotations

import json
import re
import sqlite3
import stat
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from backend.settings import Settings
from backend.tools.base import ToolContext, ToolError, ToolResult, tool
from backend.tools.sandbox import SandboxLimits, run_limited, run_sandboxed, sandbox_available, sandbox_python
from backend.tools.sql_schema import schema_summary

MAX_QUERY_CHARS = 10_000
MAX_CELL_CHARS = 200
_WORKER = Path(__file__).with_name("_sql_worker.py")
_SANDBOX_DB = "/db/database.sqlite"
_LEADING = re.compile(r"^\s*(?:--[^\n]*\n\s*|/\*.*?\*/\s*)*", re.DOTALL)


def _check_single_select(sql: str) -> str:
    text = sql.strip()
    if not text:
        raise ToolError("query is empty")
    if len(text) > MAX_QUERY_CHARS:
        raise ToolError(f"query is too long (at most {MAX_QUERY_CHARS} characters)")
    if "\x00" in text:
        raise ToolError("query contains a NUL byte")
    body = text.rstrip().rstrip(";").rstrip()
    if not sqlite3.complete_statement(body + ";"):
        raise ToolError("query is not a complete SQL statement")
    # a ';' that ends a complete statement followed by anything else means a second statement
    for i, ch in enumerate(body):
        if ch == ";" and sqlite3.complete_statement(body[: i + 1]) and body[i + 1 :].strip():
            raise ToolError("only one statement is allowed")
    first = _LEADING.sub("", body).split(None, 1)[0].lower() if _LEADING.sub("", body).split() else ""
    if first not in ("select", "with", "values"):
        raise ToolError("only SELECT queries are allowed")
    return body


def _cell(value: object) -> str:
    if value is None:
        text = "NULL"
    elif isinstance(value, bytes):
        text = f"<{len(value)} bytes>"
    else:
        text = str(value)
    text = text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")
    return text if len(text) <= MAX_CELL_CHARS else text[: MAX_CELL_CHARS - 1] + "…"


def markdown_table(columns: list[str], rows: Sequence[Sequence[object]]) -> str:
    header = "| " + " | ".join(_cell(c) for c in columns) + " |"
    rule = "| " + " | ".join("---" for _ in columns) + " |"
    lines = [header, rule] + ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _worker_request(db: str, sql: str, settings: Settings) -> dict[str, Any]:
    return {
        "db": db,
        "sql": sql,
        "max_rows": settings.sql_max_rows,
        "timeout_s": settings.sql_timeout_s,
        "max_value_bytes": settings.sql_max_value_bytes,
        "max_result_bytes": settings.sql_max_result_bytes,
        "max_scan_bytes": settings.sql_max_scan_bytes,
        "heap_bytes": settings.sql_heap_mb * 1024 * 1024,
    }


def _limits(settings: Settings) -> SandboxLimits:
    # the worker's own deadline fires first; the process is killed if it cannot answer by then
    return SandboxLimits.from_settings(
        settings,
        timeout_s=settings.sql_timeout_s + 1.0,
        cpu_s=int(settings.sql_timeout_s) + 2,
        memory_mb=settings.sql_memory_mb,
        max_output_bytes=settings.sql_max_result_bytes * 2 + 4096,
        max_processes=4,
        tmpfs_bytes=1024 * 1024,
    )


def _readable_by_others(path: Path) -> bool:
    """Whether an unprivileged sandbox uid can reach the file (world-readable, every parent searchable).

    The sandbox runs under a uid of its own, so it can bind only such a file; otherwise the worker
    runs as an rlimited child of the server (still out of process, killed on its deadline).
    """
    resolved = path.resolve()
    try:
        if not resolved.stat().st_mode & stat.S_IROTH:
            return False
        return all(parent.stat().st_mode & stat.S_IXOTH for parent in resolved.parents)
    except OSError:
        return False


async def run_query(db_path: Path, sql: str, settings: Settings, user_id: str | None = None) -> dict[str, Any]:
    """Run a validated SELECT in the worker process; returns its JSON answer (``ok`` or ``error``)."""
    if not db_path.is_file():
        raise ToolError(f"the configured SQL database file does not exist: {db_path.name}")
    limits = _limits(settings)
    ok, _reason = sandbox_available()
    python = sandbox_python()
    if ok and python and _readable_by_others(db_path):
        request = _worker_request(_SANDBOX_DB, sql, settings)
        binds = [(str(db_path.resolve()), _SANDBOX_DB), (str(_WORKER), "/opt/sql_worker.py")]
        result = await run_sandboxed(
            [python, "-I", "-S", "/opt/sql_worker.py"], json.dumps(request).encode(), limits,
            ro_binds=binds, user_id=user_id,
        )
    else:
        # Without bubblewrap the worker still runs in its own killable, rlimited process.
        request = _worker_request(str(db_path.resolve()), sql, settings)
        result = await run_limited(
            [sys.executable, "-I", "-S", str(_WORKER)], json.dumps(request).encode(), limits, user_id=user_id
        )
    if result.timed_out:
        raise ToolError(f"query took longer than {settings.sql_timeout_s:g}s and was stopped")
    try:
        answer = json.loads(result.stdout) if result.exit_code == 0 else None
    except json.JSONDecodeError:
        answer = None
    if not isinstance(answer, dict):
        why = "; ".join(result.notes)
        if result.signal is not None or "memory" in why or "MemoryError" in result.stderr:
            raise ToolError("query needs more memory than allowed and was stopped; narrow it (a LIMIT, fewer columns)")
        raise ToolError(f"the query could not be run ({why or 'the worker failed'})")
    return answer


def _needs_database(settings: Settings) -> str | None:
    return None if settings.sql_database_path else "no SQL database is configured (set SQL_DATABASE_PATH)"


def _sample_rows(settings: Settings) -> int:
    return max(0, min(3, settings.sql_max_rows))


def _describe(settings: Settings) -> str | None:
    summary = schema_summary(settings.sql_database_path, _sample_rows(settings))
    return f"The database's tables (columns; sample rows):\n{summary}" if summary else None


_MISSING_NAME = re.compile(r"no such (?:column|table|function)", re.IGNORECASE)


@tool(
    timeout_s=30,
    requires=_needs_database,
    describe=_describe,
    categories=("sql",),
    route_patterns=(
        r"\b(?:sql|sqlite|db table|database table)\b",
        r"\b(?:the|my|our|in|from|sample) (?:database|db)\b",
        r"\bquery (?:the|my|our) (?:database|db|tables?)\b",
        r"\bselect \w++(?:, ?\w++){0,10} from\b",
        r"\b(?:orders|customers|products|employees|tickets|sales) table\b",
    ),
    hint="sql_query takes one SQLite SELECT statement.",
    deterministic=True,
)
async def sql_query(ctx: ToolContext, query: str) -> ToolResult:
    """Run one read-only SQL SELECT on the configured SQLite database and return the rows as a table.

    Use only the tables and columns listed below.

    Args:
        query: a single SELECT statement (SQLite dialect).
    """
    settings = ctx.settings
    if settings.sql_database_path is None:
        raise ToolError("no SQL database is configured (set SQL_DATABASE_PATH)")
    sql = _check_single_select(query)
    answer = await run_query(Path(settings.sql_database_path), sql, settings, ctx.user_id)
    if not answer.get("ok"):
        message = str(answer.get("error") or "the query failed")
        if _MISSING_NAME.search(message):
            summary = schema_summary(settings.sql_database_path, _sample_rows(settings))
            if summary:
                message += "\nThe database has these tables (columns; sample rows):\n" + summary
        raise ToolError(message)
    columns: list[str] = answer["columns"]
    rows = [tuple(r) for r in answer["rows"]]
    truncated = answer.get("truncated")
    if not rows:
        text = "The query returned no rows. Columns: " + ", ".join(columns)
    else:
        text = markdown_table(columns, rows)
        text += f"\n\n{len(rows)} row{'s' if len(rows) != 1 else ''}"
        if truncated == "rows":
            text += f" (limited to the first {settings.sql_max_rows}; refine the query to see more)"
        elif truncated == "bytes":
            text += " (cut short: the result is too large; select fewer or smaller columns)"
    return ToolResult(
        True, text, data={"columns": columns, "rows": [list(r) for r in rows], "row_count": len(rows), "truncated": bool(truncated)}
    )
