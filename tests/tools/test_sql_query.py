"""sql_query: SELECT works; everything that could change or escape the database is refused."""

from __future__ import annotations

import sqlite3

import pytest

from backend.tools.sql_query import sql_query
from tests.tools.sample_db import build


@pytest.fixture
def db(tmp_path):
    return build(tmp_path / "sample.db")


@pytest.fixture
def sql_settings(tool_settings, db):
    return tool_settings(sql_database_path=db, sql_max_rows=10, sql_timeout_s=1.0)


def _count(db) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT count(*) FROM employees").fetchone()[0]


def test_select_returns_markdown_table(sql_settings, run_tool):
    result = run_tool(sql_query, sql_settings, query="SELECT name, salary FROM employees WHERE department = 'Engineering' ORDER BY salary DESC;")
    assert result.ok, result.output
    lines = result.output.splitlines()
    assert lines[0] == "| name | salary |"
    assert lines[1] == "| --- | --- |"
    assert lines[2] == "| Grace | 135000 |"
    assert lines[3] == "| Ada | 120000 |"
    assert "2 rows" in result.output


def test_aggregates_and_cte(sql_settings, run_tool):
    result = run_tool(
        sql_query, sql_settings,
        query="WITH d AS (SELECT department, avg(salary) AS avg_salary FROM employees GROUP BY department) SELECT * FROM d ORDER BY department",
    )
    assert result.ok, result.output
    assert "| Research | 142000.0 |" in result.output


def test_row_cap(sql_settings, run_tool):
    result = run_tool(sql_query, sql_settings, query="SELECT n FROM numbers")
    assert result.ok
    assert result.output.count("\n| ") == 11  # header rule + 10 rows
    assert "limited to the first 10" in result.output
    assert result.data["truncated"] is True


@pytest.mark.parametrize(
    "query",
    [
        "DROP TABLE employees",
        "DELETE FROM employees",
        "INSERT INTO employees (name) VALUES ('Mallory')",
        "UPDATE employees SET salary = 0",
        "CREATE TABLE x (a)",
        "ATTACH DATABASE '/tmp/evil.db' AS evil",
        "PRAGMA writable_schema = ON",
        "PRAGMA table_info(employees)",
        "SELECT load_extension('/tmp/evil.so')",
        "SELECT 1; DROP TABLE employees",
        "SELECT 1; SELECT 2",
        "VACUUM INTO '/tmp/copy.db'",
        "WITH x AS (SELECT 1) DELETE FROM employees",
        "REPLACE INTO employees (id, name) VALUES (1, 'x')",
    ],
)
def test_everything_but_select_is_refused(sql_settings, run_tool, db, query):
    result = run_tool(sql_query, sql_settings, query=query)
    assert not result.ok, result.output
    assert result.output.startswith("Error:")
    assert _count(db) == 5


def test_runaway_query_is_stopped_by_time_limit(sql_settings, run_tool):
    result = run_tool(
        sql_query, sql_settings,
        query="WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
    )
    assert not result.ok
    assert "longer than 1s" in result.output


def test_not_configured(tool_settings, run_tool):
    result = run_tool(sql_query, tool_settings(sql_database_path=None), query="SELECT 1")
    assert not result.ok and "no SQL database is configured" in result.output


def test_missing_file_and_sql_errors(tool_settings, run_tool, tmp_path, db):
    missing = run_tool(sql_query, tool_settings(sql_database_path=tmp_path / "nope.db"), query="SELECT 1")
    assert not missing.ok and "does not exist" in missing.output
    assert not (tmp_path / "nope.db").exists()  # read-only open never creates the file
    bad = run_tool(sql_query, tool_settings(sql_database_path=db), query="SELECT nonexistent FROM employees")
    assert not bad.ok and "SQL error" in bad.output and "nonexistent" in bad.output


def test_pipes_and_newlines_are_escaped(sql_settings, run_tool):
    result = run_tool(sql_query, sql_settings, query="SELECT 'a|b' AS x, 'line1\nline2' AS y")
    assert "| a\\|b | line1 line2 |" in result.output
