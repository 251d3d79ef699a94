"""Smoke run of ``bench/shared_state.py --quick`` (it starts its own redis-server)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO
from tests.scale.conftest import needs_redis


@needs_redis
def test_shared_state_bench_quick(tmp_path: Path) -> None:
    out = tmp_path / "shared_state.json"
    run = subprocess.run([sys.executable, str(REPO / "bench" / "shared_state.py"), "--quick", "--out", str(out)],
                         capture_output=True, text=True, timeout=300, cwd=REPO)
    assert run.returncode == 0, run.stderr[-2000:]
    results = json.loads(out.read_text())["results"]
    assert [r["operation"].split(" (")[0] for r in results] == ["rate limit", "revocation", "login throttle", "queue place"]
    assert all(r["n"] == 200 and r["memory_p50_us"] > 0 and r["redis_p50_us"] > 0 for r in results)
    assert "ratio p50" in run.stdout
