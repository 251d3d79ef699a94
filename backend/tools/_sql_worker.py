"""sql_query's worker: runs one read-only SELECT in its own short-lived, rlimited process.

The server never runs a user's query itself. ``backend.tools.sql_query`` validates the text and
starts this file (inside the bubblewrap sandbox when available, else as an rlimited child) with a
JSON request on stdin; it prints one JSON line. Inside, SQLite is bounded on every axis:

* the file is opened read-only, ``query_only`` is on, ``trusted_schema`` off, and an authorizer
  allows only reading (no writes, ATTACH, PRAGMA or extension loading);
* ``setlimit``: the largest string/blob (so ``zeroblob(1e9)``, ``randomblob(1e9)`` and
  ``printf('%.*c', 1e9, 'x')`` fail at once with "string or blob too big"), columns, SQL length,
  expression depth, compound SELECTs, function arguments, LIKE patterns, attached databases;
* ``PRAGMA hard_heap_limit`` and in-memory temp storage: a huge sort or join runs out of SQLite
  heap, not of machine memory; the process itself has an address-space (and CPU) rlimit;
* a progress handler every few hundred VM steps stops the query at its deadline (recursive CTEs,
  cross joins); the parent also kills the whole process on its own wall-clock deadline;
* rows are fetched one at a time against a row cap and a byte budget; cells are cut to a short
  preview here, so what crosses the pipe is small whatever the data.

Usage: ``python -I -S _sql_worker.py < request.json`` (standard library only).
"""

from __future__ import annotations

import json
import re
import sqlite3
import sys
import time
from urllib.parse import quote

# ``typing`` is for the type checker only (mypy treats this name as true): importing it would add
# to every query's process start
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any, Literal, TypeAlias, TypedDict

    #: a value SQLite hands to a user function / a preview cell that crosses the pipe
    SqlValue: TypeAlias = int | float | str | bytes | None
    Cell: TypeAlias = int | float | str | None

    class Failure(TypedDict):
        ok: Literal[False]
        kind: str
        error: str

    class Rows(TypedDict):
        ok: Literal[True]
        columns: list[str]
        rows: list[list[Cell]]
        truncated: str | None

    Reply: TypeAlias = Failure | Rows

PROGRESS_STEPS = 200
MAX_CELL_CHARS = 200
_DENIED_FUNCTIONS = {"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"}
_SQLITE_RECURSIVE = getattr(sqlite3, "SQLITE_RECURSIVE", 33)
_ALLOWED_ACTIONS = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, _SQLITE_RECURSIVE}


def _limits(max_value_bytes: int) -> dict[int, int]:
    return {
        sqlite3.SQLITE_LIMIT_LENGTH: max_value_bytes,
        sqlite3.SQLITE_LIMIT_SQL_LENGTH: 100_000,
        sqlite3.SQLITE_LIMIT_COLUMN: 500,
        sqlite3.SQLITE_LIMIT_EXPR_DEPTH: 200,
        sqlite3.SQLITE_LIMIT_COMPOUND_SELECT: 50,
        sqlite3.SQLITE_LIMIT_FUNCTION_ARG: 32,
        sqlite3.SQLITE_LIMIT_ATTACHED: 0,
        sqlite3.SQLITE_LIMIT_LIKE_PATTERN_LENGTH: 1000,
        sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER: 0,
        sqlite3.SQLITE_LIMIT_TRIGGER_DEPTH: 1,
        sqlite3.SQLITE_LIMIT_WORKER_THREADS: 0,
    }


def _authorizer(action: int, arg1: str | None, arg2: str | None, db: str | None, trigger: str | None) -> int:
    if action == sqlite3.SQLITE_FUNCTION:
        return sqlite3.SQLITE_DENY if (arg2 or "").lower() in _DENIED_FUNCTIONS else sqlite3.SQLITE_OK
    return sqlite3.SQLITE_OK if action in _ALLOWED_ACTIONS else sqlite3.SQLITE_DENY


_SPEC = re.compile(r"%[-+ 0#,!]*(\*|\d+)?(?:\.(\*|\d+))?(?:ll|l)?([a-zA-Z%])")
_REFUSED: dict[str, str] = {}


class _TooBig(Exception):
    pass


def _bounded_printf(limit: int) -> Callable[..., SqlValue]:
    """``printf``/``format`` that refuses widths and precisions beyond the value limit.

    SQLite's own printf pads ``%.*c`` one character at a time without checking the length limit
    (a billion-character precision spins for seconds and cannot be interrupted), so the built-in
    is shadowed: widths and precisions are checked here, then the real printf runs on a private
    connection with the same length limit.
    """
    plain = sqlite3.connect(":memory:")
    plain.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, limit)

    def check(size: str, args: tuple[SqlValue, ...], index: int) -> int:
        value: SqlValue
        if size == "*":
            value = args[index] if index < len(args) else 0
            index += 1
        else:
            value = size
        try:
            number = abs(int(float(value or 0)))
        except (TypeError, ValueError, OverflowError):
            number = 0
        if number > limit:
            _REFUSED["printf"] = f"a printf width or precision of {number} is larger than the limit of {limit}"
            raise _TooBig()
        return index

    def printf(fmt: SqlValue, *args: SqlValue) -> SqlValue:
        if isinstance(fmt, str):
            index = 0
            for width, precision, conversion in _SPEC.findall(fmt):
                index = check(width, args, index)
                index = check(precision, args, index)
                if conversion != "%":
                    index += 1
        marks = ",".join("?" * (len(args) + 1))
        formatted: SqlValue = plain.execute(f"SELECT printf({marks})", (fmt, *args)).fetchone()[0]
        return formatted

    return printf


def _cell(value: object) -> tuple[Cell, int]:
    """A JSON-safe preview of one value, and how many bytes the value itself held."""
    if value is None or isinstance(value, (int, float)):
        return value, 8
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>", len(value)
    text = str(value)
    size = len(text)
    return (text if size <= MAX_CELL_CHARS else text[: MAX_CELL_CHARS - 1] + "\u2026"), size


def _failure(kind: str, message: str) -> Failure:
    return {"ok": False, "kind": kind, "error": message}


def _classify(exc: BaseException, timeout_s: float) -> Failure:
    message = str(exc)
    if _REFUSED:
        return _failure("too_big", f"a value in the query would be too large ({_REFUSED.popitem()[1]})")
    low = message.lower()
    if "interrupted" in low:
        return _failure("timeout", f"query took longer than {timeout_s:g}s and was stopped")
    if "not authorized" in low or "prohibited" in low:
        return _failure("refused", "query refused: only reading with SELECT is allowed (no writes, ATTACH, PRAGMA or extensions)")
    if "too big" in low or "too large" in low:
        return _failure("too_big", f"a value in the query is too large ({message}); values are limited in size")
    if "out of memory" in low or isinstance(exc, MemoryError):
        return _failure("memory", "query needs more memory than allowed; narrow it (fewer rows, a LIMIT, no huge joins)")
    if "too many" in low or "too complex" in low or "depth" in low:
        return _failure("too_complex", f"query is too complex ({message})")
    return _failure("sql", f"SQL error: {message}")


def run(request: Mapping[str, Any]) -> Reply:
    timeout_s = float(request["timeout_s"])
    max_rows = int(request["max_rows"])
    max_result_bytes = int(request["max_result_bytes"])
    max_scan_bytes = int(request["max_scan_bytes"])
    uri = f"file:{quote(request['db'])}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=1.0, isolation_level=None)
    except sqlite3.Error as exc:
        return _failure("sql", f"could not open the database: {exc}")
    try:
        for category, value in _limits(int(request["max_value_bytes"])).items():
            conn.setlimit(category, value)
        printf = _bounded_printf(int(request["max_value_bytes"]))
        for name in ("printf", "format"):
            conn.create_function(name, -1, printf, deterministic=True)
        conn.execute(f"PRAGMA hard_heap_limit = {int(request['heap_bytes'])}")
        conn.execute("PRAGMA temp_store = MEMORY")
        conn.execute("PRAGMA query_only = ON")
        conn.execute("PRAGMA trusted_schema = OFF")
        deadline = time.monotonic() + timeout_s
        conn.set_progress_handler(lambda: 1 if time.monotonic() > deadline else 0, PROGRESS_STEPS)
        conn.set_authorizer(_authorizer)
        try:
            cursor = conn.execute(request["sql"])
            if cursor.description is None:
                return _failure("refused", "only SELECT queries are allowed")
            columns = [str(d[0])[:MAX_CELL_CHARS] for d in cursor.description]
            rows: list[list[Cell]] = []
            used, scanned = 0, 0
            truncated: str | None = None
            while True:
                row = cursor.fetchone()
                if row is None:
                    break
                if len(rows) >= max_rows:
                    truncated = "rows"
                    break
                cells = [_cell(v) for v in row]
                scanned += sum(size for _, size in cells)
                preview = [c for c, _ in cells]
                used += len(json.dumps(preview, ensure_ascii=False))
                if used > max_result_bytes or scanned > max_scan_bytes:
                    truncated = "bytes"
                    break
                rows.append(preview)
        except (sqlite3.DatabaseError, MemoryError) as exc:
            return _classify(exc, timeout_s)
        except sqlite3.Warning as exc:  # "You can only execute one statement at a time."
            return _failure("sql", f"SQL error: {exc}")
        return {"ok": True, "columns": columns, "rows": rows, "truncated": truncated}
    finally:
        conn.close()


def main() -> None:
    try:
        request = json.loads(sys.stdin.read())
        result: Reply = run(request)
    except MemoryError:
        result = _failure("memory", "query needs more memory than allowed; narrow it (fewer rows, a LIMIT, no huge joins)")
    except Exception as exc:  # noqa: BLE001 - report, never crash with a traceback
        result = _failure("sql", f"SQL error: {type(exc).__name__}: {exc}"[:500])
    sys.stdout.write(json.dumps(result))


if __name__ == "__main__":
    main()
