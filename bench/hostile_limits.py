"""How fast hostile SQL queries and sandbox programs are stopped, and what the server's memory does.

    .venv/bin/python -m bench.hostile_limits [--repeat N]

For each case: seconds from the call to the error observation (median of N), the observation's
first words, and this process's RSS before and after all cases. The SQL database is the test
sample (``tests/tools/sample_db.py``) in a world-readable temp directory, so the worker runs in the
bubblewrap sandbox when it is available.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from backend.settings import Settings
from backend.tools.base import ToolContext
from backend.tools.python_code import python_code
from backend.tools.sql_query import sql_query
from tests.tools.sample_db import build
from tests.tools.test_sandbox_limits import BUSY_CHILDREN, FIVE_FORKS_200MB, FORK_BOMB
from tests.tools.test_sql_limits import HOSTILE


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def timed(tool, ctx: ToolContext, args: dict) -> tuple[float, str]:
    start = time.monotonic()
    result = await tool.run(ctx, args)
    return time.monotonic() - start, result.output.replace("\n", " ")[:90]


async def main(repeat: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="bench-sql-"))
    folder.chmod(0o755)
    db = build(folder / "sample.db")
    db.chmod(0o644)
    settings = Settings(_env_file=None, data_dir=folder / "data", sql_database_path=db, sql_timeout_s=1.0,
                        sandbox_timeout_s=3.0)
    ctx = ToolContext(user_id="bench", settings=settings)
    before = rss_mb()
    print(f"server RSS before: {before:.1f} MB   (SQL timeout 1 s, sandbox timeout 3 s, N={repeat})")
    print("| case | median s | observation |\n|---|---|---|")
    cases = [("sql " + name, sql_query, {"query": q}) for name, (q, _) in sorted(HOSTILE.items())]
    cases += [("python fork bomb", python_code, {"code": FORK_BOMB}),
              ("python 5 forks x 200 MB", python_code, {"code": FIVE_FORKS_200MB}),
              ("python busy loop in 9 processes", python_code, {"code": BUSY_CHILDREN})]
    for name, tool, args in cases:
        runs = [await timed(tool, ctx, args) for _ in range(repeat)]
        print(f"| {name} | {statistics.median(r[0] for r in runs):.2f} | {runs[-1][1]} |")
    print(f"server RSS after: {rss_mb():.1f} MB (grew {rss_mb() - before:+.1f} MB)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    asyncio.run(main(parser.parse_args().repeat))
