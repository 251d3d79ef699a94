"""Sandbox limits hold per run: fork bombs, memory spread over children, busy children, many runs.

Each hostile run ends within its time limit, the server process is untouched, and another user's
run still works while it goes on. The cgroup-specific checks skip where no cgroup hierarchy is
writable (the fallback then is a private uid per run plus rlimits; see backend.tools.sandbox).
"""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from backend.tools import cgroups
from backend.tools.base import ToolContext
from backend.tools.python_code import python_code
from backend.tools.registry import available_tools
from backend.tools.sandbox import GATE, SandboxBusy, SandboxLimits, run_sandboxed, sandbox_available

AVAILABLE, REASON = sandbox_available()
pytestmark = pytest.mark.skipif(not AVAILABLE, reason=f"bubblewrap sandbox unavailable: {REASON}")
needs_cgroup = pytest.mark.skipif(cgroups.layout() is None, reason="no writable cgroup hierarchy here")
PY = "/usr/bin/python3"

FORK_BOMB = """
import os
while True:
    try:
        os.fork()
    except OSError:
        pass
"""

FIVE_FORKS_200MB = """
import os, sys, time
kids = []
for i in range(5):
    pid = os.fork()
    if pid == 0:
        block = bytearray(200 * 1024 * 1024)
        for off in range(0, len(block), 4096):
            block[off] = 1
        print("ALLOCATED", i, flush=True)
        time.sleep(30)
        os._exit(0)
    kids.append(pid)
for pid in kids:
    os.waitpid(pid, 0)
"""

BUSY_CHILDREN = """
import os
for i in range(8):
    if os.fork() == 0:
        while True:
            pass
while True:
    pass
"""

FORK_FIVE = """
import os
pids = []
for i in range(5):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    pids.append(pid)
for pid in pids:
    os.waitpid(pid, 0)
print("FORKED 5")
"""


def _run(code: str, user: str, **limits: object):
    base = {"timeout_s": 3.0, "memory_mb": 256, "max_processes": 32}
    base.update(limits)
    return run_sandboxed([PY, "-I", "-S", "-c", code], b"", SandboxLimits(**base), user_id=user)  # type: ignore[arg-type]


def _tasks_of_uid_range(low: int, high: int) -> int:
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if low <= os.stat(f"/proc/{entry}").st_uid < high:
                    count += 1
            except OSError:
                continue
    return count


@pytest.mark.parametrize("code", [FORK_BOMB, BUSY_CHILDREN], ids=["fork_bomb", "busy_children"])
def test_hostile_run_ends_in_time_and_another_users_run_still_works(code):
    async def scenario():
        hostile = asyncio.create_task(_run(code, "user_a"))
        await asyncio.sleep(0.8)  # the bomb is going
        start = time.monotonic()
        other = await _run("print(6 * 7)", "user_b", timeout_s=10.0)
        other_took = time.monotonic() - start
        result = await hostile
        return result, other, other_took

    started = time.monotonic()
    result, other, other_took = asyncio.run(scenario())
    total = time.monotonic() - started
    assert result.timed_out and not result.ok
    assert total < 3.0 + 4.0, f"hostile run took {total:.1f}s against a 3 s limit"
    assert other.ok and other.stdout.strip() == "42", (other.stdout, other.stderr)
    assert other_took < 5.0
    limits = SandboxLimits()
    deadline = time.monotonic() + 3.0
    while _tasks_of_uid_range(limits.uid_base, limits.uid_base + 1000) and time.monotonic() < deadline:
        time.sleep(0.1)  # killed processes are reaped asynchronously
    assert _tasks_of_uid_range(limits.uid_base, limits.uid_base + 1000) == 0  # nothing survived


def test_one_users_fork_bomb_does_not_use_up_another_users_process_budget():
    async def scenario():
        hostile = asyncio.create_task(_run(FORK_BOMB, "user_a"))
        await asyncio.sleep(0.8)
        other = await _run(FORK_FIVE, "user_b", timeout_s=10.0)
        await hostile
        return other

    other = asyncio.run(scenario())
    assert other.ok and "FORKED 5" in other.stdout, (other.stdout, other.stderr)


@needs_cgroup
def test_fork_bomb_hits_the_runs_process_limit():
    result = asyncio.run(_run(FORK_BOMB, "user_a", timeout_s=2.0, max_processes=16))
    assert result.timed_out
    assert "process limit of the run reached (fork refused)" in result.notes


@needs_cgroup
def test_memory_spread_over_five_children_is_capped_for_the_run():
    result = asyncio.run(_run(FIVE_FORKS_200MB, "user_a", timeout_s=6.0, memory_mb=256))
    allocated = result.stdout.count("ALLOCATED")
    # 256 MB for the whole run: at most one 200 MB child fits; the kernel kills the rest
    assert allocated <= 1, result.stdout
    assert any("memory limit of the run" in n for n in result.notes), result.notes


def test_no_nested_user_namespaces_inside_the_sandbox():
    result = asyncio.run(
        run_sandboxed(["/usr/bin/unshare", "--user", "--map-root-user", "/usr/bin/id", "-u"], b"", SandboxLimits(timeout_s=5))
    )
    assert result.exit_code != 0, result.stdout
    assert result.stdout.strip() != "0"


def test_global_cap_on_concurrent_runs():
    peak = 0

    async def watch(stop: asyncio.Event) -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, GATE.running())
            await asyncio.sleep(0.01)

    async def scenario():
        stop = asyncio.Event()
        watcher = asyncio.create_task(watch(stop))
        runs = [_run("import time; time.sleep(0.6)", f"user_{i}", max_concurrent=2, max_per_user=2) for i in range(5)]
        results = await asyncio.gather(*runs)
        stop.set()
        await watcher
        return results

    started = time.monotonic()
    results = asyncio.run(scenario())
    assert all(r.ok for r in results)
    assert peak == 2
    assert time.monotonic() - started >= 3 * 0.6  # five runs, two at a time: three rounds


def test_per_user_cap_lets_other_users_through():
    async def scenario():
        flood = [
            asyncio.create_task(_run("import time; time.sleep(1.5)", "user_a", max_concurrent=4, max_per_user=1))
            for _ in range(3)
        ]
        await asyncio.sleep(0.3)
        start = time.monotonic()
        other = await _run("print('B')", "user_b", max_concurrent=4, max_per_user=1)
        other_wait = time.monotonic() - start
        await asyncio.gather(*flood)
        return other, other_wait

    other, other_wait = asyncio.run(scenario())
    assert other.ok and other.stdout.strip() == "B"
    assert other_wait < 1.2  # did not queue behind user_a's three runs (4.5 s of them)


def test_a_full_queue_fails_clearly():
    async def scenario():
        hold = asyncio.create_task(_run("import time; time.sleep(2)", "user_a", max_per_user=1))
        await asyncio.sleep(0.3)
        try:
            with pytest.raises(SandboxBusy, match="busy"):
                await _run("print(1)", "user_a", max_per_user=1, queue_timeout_s=0.3)
        finally:
            await hold

    asyncio.run(scenario())


def test_python_code_can_be_turned_off(tool_settings):
    on = tool_settings()
    off = tool_settings(python_code_enabled=False)
    assert "python_code" in available_tools(on)
    assert "python_code" not in available_tools(off)
    result = asyncio.run(python_code.run(ToolContext(user_id="u", settings=off), {"code": "print(1)"}))
    assert not result.ok and "turned off" in result.output
