"""A short summary of the SQL tool's database (tables, columns, a few sample rows) for the model.

The SQL agent should know the schema before it writes a query, so the summary goes into the
``sql_query`` tool's description and into "no such table/column" error observations.

The summary is read with fixed, server-written SQL (never a user's query) from the file the admin
configured, with the same bounds as the worker: read-only, value-size limits, a heap limit, a
short deadline, ordinary tables only (no views or virtual tables, whose definitions could be
expensive), at most ``MAX_TABLES`` tables, ``MAX_COLUMNS`` columns and ``SAMPLE_ROWS`` rows each,
cells cut short. It is cached per file version (inode, size, mtime), so it costs one read per change.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from pathlib import Path
from urllib.parse import quote

MAX_TABLES = 20
MAX_COLUMNS = 24
SAMPLE_ROWS = 3
SAMPLE_CELL_CHARS = 40
MAX_SUMMARY_CHARS = 3000
_DEADLINE_S = 0.5

_cache: dict[str, tuple[tuple[int, int, int], str]] = {}
_lock = threading.Lock()


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _cell(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    text = " ".join(str(value).split())
    return text if len(text) <= SAMPLE_CELL_CHARS else text[: SAMPLE_CELL_CHARS - 1] + "…"


def _read(path: Path, sample_rows: int) -> str:
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=0.5, check_same_thread=False, isolation_level=None)
    try:
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 1_000_000)
        conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
        conn.execute("PRAGMA hard_heap_limit = 33554432")
        conn.execute("PRAGMA query_only = ON")
        conn.execute("PRAGMA trusted_schema = OFF")
        deadline = time.monotonic() + _DEADLINE_S
        conn.set_progress_handler(lambda: 1 if time.monotonic() > deadline else 0, 200)
        tables = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
        ).fetchall()
        total = len(tables)
        lines: list[str] = []
        for name, sql in tables[:MAX_TABLES]:
            if (sql or "").lstrip().upper().startswith("CREATE VIRTUAL"):
                continue
            columns = conn.execute(f"PRAGMA table_info({_quote_ident(name)})").fetchall()
            described = ", ".join(f"{c[1]} {c[2] or ''}".strip() for c in columns[:MAX_COLUMNS])
            if len(columns) > MAX_COLUMNS:
                described += f", … ({len(columns) - MAX_COLUMNS} more columns)"
            lines.append(f"- {name}({described})")
            if sample_rows > 0:
                names = ", ".join(_quote_ident(c[1]) for c in columns[:MAX_COLUMNS])
                rows = conn.execute(f"SELECT {names} FROM {_quote_ident(name)} LIMIT {int(sample_rows)}").fetchall()
                for row in rows:
                    lines.append("    e.g. (" + ", ".join(_cell(v) for v in row) + ")")
        if total > MAX_TABLES:
            lines.append(f"- … and {total - MAX_TABLES} more tables")
        text = "\n".join(lines) if lines else "(the database has no tables)"
        return text if len(text) <= MAX_SUMMARY_CHARS else text[: MAX_SUMMARY_CHARS - 1] + "…"
    finally:
        conn.close()


def schema_summary(path: Path | str | None, sample_rows: int = SAMPLE_ROWS) -> str | None:
    """The database's tables with their columns and a few sample rows; None when it cannot be read."""
    if path is None:
        return None
    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        return None
    stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
    key = f"{path.resolve()}:{sample_rows}"
    with _lock:
        cached = _cache.get(key)
        if cached is not None and cached[0] == stamp:
            return cached[1]
    summary: str | None = None
    with contextlib.suppress(sqlite3.Error, MemoryError, OSError):
        summary = _read(path, sample_rows)
    if summary is not None:
        with _lock:
            _cache[key] = (stamp, summary)
    return summary
