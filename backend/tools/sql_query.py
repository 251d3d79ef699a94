"""sql_query: read-only SELECTs against the configured SQLite database.

Defence in depth: the file is opened read-only (``file:...?mode=ro``), ``PRAGMA query_only`` is on,
an authorizer allows only reading (SELECT/READ/FUNCTION/RECURSIVE; no writes, ATTACH, PRAGMA,
``load_extension``), exactly one statement is accepted, a progress handler enforces a time limit,
and at most ``settings.sql_max_rows`` rows come back, as a Markdown table.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from pathlib import Path
from urllib.parse import quote

from backend.settings import Settings
from backend.tools.base import ToolContext, ToolError, ToolResult, tool

MAX_QUERY_CHARS = 10_000
MAX_CELL_CHARS = 200
_ALLOWED_ACTIONS = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION}
_SQLITE_RECURSIVE = getattr(sqlite3, "SQLITE_RECURSIVE", 33)
_DENIED_FUNCTIONS = {"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"}
_LEADING = re.compile(r"^\s*(?:--[^\n]*\n\s*|/\*.*?\*/\s*)*", re.DOTALL)


class _Refused(Exception):
    pass


def _authorizer(action: int, arg1: str | None, arg2: str | None, db: str | None, trigger: str | None) -> int:
    if action == sqlite3.SQLITE_FUNCTION:
        if (arg2 or "").lower() in _DENIED_FUNCTIONS:
            return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK
    if action in _ALLOWED_ACTIONS or action == _SQLITE_RECURSIVE:
        return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


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


def markdown_table(columns: list[str], rows: list[tuple]) -> str:
    header = "| " + " | ".join(_cell(c) for c in columns) + " |"
    rule = "| " + " | ".join("---" for _ in columns) + " |"
    lines = [header, rule] + ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def run_query(db_path: Path, sql: str, max_rows: int, timeout_s: float) -> tuple[list[str], list[tuple], bool]:
    """Blocking; run in a worker thread. Returns (columns, rows, truncated)."""
    if not db_path.is_file():
        raise ToolError(f"the configured SQL database file does not exist: {db_path.name}")
    uri = f"file:{quote(str(db_path.resolve()))}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=1.0, check_same_thread=False, isolation_level=None)
    try:
        conn.execute("PRAGMA query_only = ON")
        conn.execute("PRAGMA trusted_schema = OFF")
        deadline = time.monotonic() + timeout_s
        conn.set_progress_handler(lambda: 1 if time.monotonic() > deadline else 0, 1000)
        conn.set_authorizer(_authorizer)
        try:
            cursor = conn.execute(sql)
            if cursor.description is None:
                raise ToolError("only SELECT queries are allowed")
            columns = [d[0] for d in cursor.description]
            rows = cursor.fetchmany(max_rows + 1)
        except sqlite3.DatabaseError as exc:
            message = str(exc)
            if "interrupted" in message:
                raise ToolError(f"query took longer than {timeout_s:g}s and was stopped") from None
            if "not authorized" in message or "prohibited" in message:
                raise ToolError(
                    "query refused: only reading with SELECT is allowed (no writes, ATTACH, PRAGMA or extensions)"
                ) from None
            raise ToolError(f"SQL error: {message}") from None
        except sqlite3.Warning as exc:  # "You can only execute one statement at a time."
            raise ToolError(f"SQL error: {exc}") from None
        truncated = len(rows) > max_rows
        return columns, [tuple(r) for r in rows[:max_rows]], truncated
    finally:
        conn.close()


def _needs_database(settings: Settings) -> str | None:
    return None if settings.sql_database_path else "no SQL database is configured (set SQL_DATABASE_PATH)"


@tool(timeout_s=30, requires=_needs_database)
async def sql_query(ctx: ToolContext, query: str) -> ToolResult:
    """Run one read-only SQL SELECT on the configured SQLite database and return the rows as a table.

    Use sqlite_master to discover tables: SELECT name, sql FROM sqlite_master WHERE type='table'.

    Args:
        query: a single SELECT statement (SQLite dialect).
    """
    settings = ctx.settings
    if settings.sql_database_path is None:
        raise ToolError("no SQL database is configured (set SQL_DATABASE_PATH)")
    sql = _check_single_select(query)
    columns, rows, truncated = await asyncio.to_thread(
        run_query, Path(settings.sql_database_path), sql, settings.sql_max_rows, settings.sql_timeout_s
    )
    if not rows:
        text = "The query returned no rows. Columns: " + ", ".join(columns)
    else:
        text = markdown_table(columns, rows)
        text += f"\n\n{len(rows)} row{'s' if len(rows) != 1 else ''}"
        if truncated:
            text += f" (limited to the first {settings.sql_max_rows}; refine the query to see more)"
    return ToolResult(True, text, data={"columns": columns, "row_count": len(rows), "truncated": truncated})
