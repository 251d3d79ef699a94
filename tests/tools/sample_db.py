"""Builds a small SQLite database for the sql_query tests (and for trying the tool by hand).

    python -m tests.tools.sample_db data/sample.db
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

EMPLOYEES = [
    (1, "Ada", "Engineering", 120000, "2019-03-01"),
    (2, "Grace", "Engineering", 135000, "2017-07-15"),
    (3, "Linus", "Operations", 98000, "2020-01-20"),
    (4, "Margaret", "Research", 142000, "2015-11-02"),
    (5, "Ken", "Operations", 91000, "2021-06-30"),
]


def build(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(
            "CREATE TABLE employees (id INTEGER PRIMARY KEY, name TEXT NOT NULL, department TEXT, salary INTEGER, hired TEXT)"
        )
        conn.executemany("INSERT INTO employees VALUES (?, ?, ?, ?, ?)", EMPLOYEES)
        conn.execute("CREATE TABLE numbers (n INTEGER)")
        conn.executemany("INSERT INTO numbers VALUES (?)", [(i,) for i in range(1, 501)])
    conn.close()
    return path


if __name__ == "__main__":
    print(build(Path(sys.argv[1] if len(sys.argv) > 1 else "data/sample.db")))
