"""sql_query cannot exhaust memory or time, and the agent sees the schema before it writes a query.

Hostile-but-valid SELECTs (huge values, endless recursion, huge joins) end quickly in a clear
error observation, run outside the server process, and leave the server's memory where it was.
Each case runs both ways the worker can run: in the bubblewrap sandbox (database world-readable)
and as an rlimited child (database in a private directory, or no bubblewrap).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import tempfile
import time
from pathlib import Path

import pytest

from backend.tools import sql_query as sql_module
from backend.tools.registry import available_tools
from backend.tools.sandbox import sandbox_available
from backend.tools.sql_query import sql_query
from tests.tools.sample_db import build

SANDBOX_OK, _WHY = sandbox_available()


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@pytest.fixture(params=["sandboxed", "rlimited"])
def db(request, tmp_path):
    if request.param == "sandboxed":
        if not SANDBOX_OK:
            pytest.skip(f"bubblewrap sandbox unavailable: {_WHY}")
        shared = Path(tempfile.mkdtemp(prefix="sqltest-"))
        shared.chmod(0o755)
        path = build(shared / "sample.db")
        path.chmod(0o644)
        assert sql_module._readable_by_others(path)
        yield path
        path.unlink(missing_ok=True)
        shared.rmdir()
    else:
        path = build(tmp_path / "private" / "sample.db")
        path.parent.chmod(0o700)
        yield path


@pytest.fixture
def sql_settings(tool_settings, db):
    return tool_settings(sql_database_path=db, sql_max_rows=20, sql_timeout_s=1.0)


HOSTILE = {
    "zeroblob": ("SELECT zeroblob(1e9)", "too large"),
    "randomblob": ("SELECT randomblob(1e9)", "too large"),
    "printf_precision": ("SELECT printf('%.*c', 1e9, 'x')", "too large"),
    "printf_width": ("SELECT printf('%1000000000d', 1)", "too large"),
    "string_doubling": (
        "WITH RECURSIVE r(n, s) AS (SELECT 1, 'x' UNION ALL SELECT n + 1, s || s FROM r) "
        "SELECT length(s) FROM r WHERE n > 40",
        "too large",
    ),
    "group_concat": ("SELECT group_concat(printf('%.*c', 900000, 'x')) FROM numbers", "too large"),
    "recursive_cte": (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
        "longer than 1s",
    ),
    "cross_join": ("SELECT count(*) FROM numbers a, numbers b, numbers c, numbers d", "longer than 1s"),
    "sorted_cross_join": (
        "SELECT a.n, b.n, c.n FROM numbers a, numbers b, numbers c ORDER BY random() LIMIT 1",
        "",  # stopped by the heap limit or the deadline, whichever comes first
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_query_ends_quickly_with_a_clear_error(sql_settings, run_tool, case):
    query, expected = HOSTILE[case]
    before = _rss_kb()
    start = time.monotonic()
    result = run_tool(sql_query, sql_settings, query=query)
    elapsed = time.monotonic() - start
    grown_mb = (_rss_kb() - before) / 1024
    assert not result.ok, result.output
    assert result.output.startswith("Error: ")
    assert expected in result.output, result.output
    assert any(word in result.output for word in ("too large", "longer than", "memory")), result.output
    # the time limit is 1 s; the worker is killed 1 s after that at the latest
    assert elapsed < 5.0, f"{case} took {elapsed:.1f}s"
    assert grown_mb < 30, f"server RSS grew by {grown_mb:.0f} MB on {case}"


def test_server_stays_usable_after_hostile_queries(sql_settings, run_tool):
    for query, _ in HOSTILE.values():
        run_tool(sql_query, sql_settings, query=query)
    ok = run_tool(sql_query, sql_settings, query="SELECT count(*) AS n FROM employees")
    assert ok.ok and "| 5 |" in ok.output


def test_query_never_runs_in_the_server_process(sql_settings, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the server process opened the database to run a query")

    monkeypatch.setattr(sqlite3, "connect", refuse)
    answer = asyncio.run(sql_module.run_query(Path(sql_settings.sql_database_path), "SELECT 40 + 2", sql_settings))
    assert answer["ok"] and answer["rows"] == [[42]]


def test_result_bytes_are_budgeted(tool_settings, db, run_tool):
    settings = tool_settings(sql_database_path=db, sql_max_rows=500, sql_max_result_bytes=10_000)
    result = run_tool(sql_query, settings, query="SELECT n, printf('%.*c', 150, 'x') AS pad FROM numbers")
    assert result.ok, result.output
    assert "cut short" in result.output
    assert result.data["truncated"] is True
    assert 10 < result.data["row_count"] < 100
    assert len(result.output) < 20_000


def test_big_cells_are_previewed_not_shipped(sql_settings, run_tool):
    result = run_tool(sql_query, sql_settings, query="SELECT printf('%.*c', 500000, 'y') AS big, zeroblob(900000) AS b")
    assert result.ok, result.output
    assert "<900000 bytes>" in result.output
    assert len(result.output) < 2000


# --- the schema, before the first query ----------------------------------------------------------------


def test_tool_description_offered_to_agents_lists_the_schema(tool_settings, db):
    settings = tool_settings(sql_database_path=db, sql_max_rows=100)
    offered = available_tools(settings)["sql_query"]
    text = offered.openai_spec()["function"]["description"]
    assert "employees(id INTEGER, name TEXT, department TEXT, salary INTEGER, hired TEXT)" in text
    assert "numbers(n INTEGER)" in text
    assert "Ada" in text and "Engineering" in text  # sample rows
    assert sql_query.description not in ("", text)  # the registry's own object stays generic


def test_sample_rows_stay_within_the_row_cap(tool_settings, db):
    settings = tool_settings(sql_database_path=db, sql_max_rows=1)
    text = available_tools(settings)["sql_query"].description
    assert text.count("e.g. (") == 2  # one sample row for each of the two tables
    assert "Grace" not in text


def test_no_such_column_error_shows_the_schema(sql_settings, run_tool):
    result = run_tool(sql_query, sql_settings, query="SELECT salary_usd FROM employees")
    assert not result.ok
    assert "no such column: salary_usd" in result.output
    assert "employees(id INTEGER, name TEXT, department TEXT, salary INTEGER, hired TEXT)" in result.output
    missing_table = run_tool(sql_query, sql_settings, query="SELECT * FROM staff")
    assert "no such table: staff" in missing_table.output and "numbers(n INTEGER)" in missing_table.output


def test_schema_follows_changes_to_the_database(tool_settings, tmp_path):
    path = build(tmp_path / "live.db")
    settings = tool_settings(sql_database_path=path)
    assert "projects(" not in available_tools(settings)["sql_query"].description
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE projects (code TEXT, budget REAL)")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 1_000_000))
    assert "projects(code TEXT, budget REAL)" in available_tools(settings)["sql_query"].description
