"""The conversations benchmark runs end to end in its quick form and records every row."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_conversations_bench_quick(tmp_path: Path) -> None:
    out = tmp_path / "conversations.json"
    run = subprocess.run([sys.executable, str(REPO / "bench" / "conversations.py"), "--quick", "--out", str(out)],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    res = json.loads(out.read_text(encoding="utf-8"))
    assert res["conversations"] == 50 and len(res["rows"]) == 8
    assert all(p50 > 0 for _, p50, _ in res["rows"])
    assert set(res["searcher_statuses"]) <= {"200", "429"} and res["searcher_statuses"].get("200", 0) > 0
