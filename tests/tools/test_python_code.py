"""python_code runs untrusted code only inside the bubblewrap sandbox — and the sandbox holds."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from backend.tools import sandbox
from backend.tools.python_code import python_code
from backend.tools.sandbox import SandboxLimits, run_sandboxed, sandbox_available

AVAILABLE, REASON = sandbox_available()
needs_sandbox = pytest.mark.skipif(not AVAILABLE, reason=f"bubblewrap sandbox unavailable: {REASON}")


@needs_sandbox
def test_runs_code_and_returns_output(tool_settings, run_tool):
    result = run_tool(python_code, tool_settings(), code="import math\nprint(sum(i*i for i in range(10)), math.pi)")
    assert result.ok, result.output
    assert result.output.startswith("285 3.14159")


@needs_sandbox
def test_exception_is_reported_not_raised(tool_settings, run_tool):
    result = run_tool(python_code, tool_settings(), code="print('before')\n1/0")
    assert not result.ok
    assert "before" in result.output and "ZeroDivisionError" in result.output


@needs_sandbox
def test_not_root_and_host_secrets_invisible(tool_settings, run_tool, tmp_path):
    secret_dir = tmp_path / "data"
    secret_dir.mkdir(parents=True, exist_ok=True)
    (secret_dir / "secret.txt").write_text("top-secret-value")
    code = f"""
import os
print("uid", os.getuid(), "gid", os.getgid())
for p in ["/root", "/work", "/home", "{secret_dir}", "{Path.cwd()}", "/etc/shadow", "/var", "/opt"]:
    try:
        visible = bool(os.listdir(p)) if os.path.isdir(p) else os.path.exists(p)
    except OSError:
        visible = False
    print(p, "VISIBLE" if visible else "absent")
try:
    print(open("{secret_dir}/secret.txt").read())
except OSError as e:
    print("read failed", type(e).__name__)
print("passwd:", open("/etc/passwd").read().count("\\n"), "lines")
"""
    result = run_tool(python_code, tool_settings(data_dir=secret_dir), code=code)
    assert result.ok, result.output
    assert "uid 65534 gid 65534" in result.output
    assert "VISIBLE" not in result.output
    assert "top-secret-value" not in result.output and "read failed" in result.output
    assert "passwd: 2 lines" in result.output  # the sandbox's minimal /etc/passwd, not the host's


@needs_sandbox
def test_no_network(tool_settings, run_tool):
    code = """
import socket
for target in [("1.1.1.1", 53), ("127.0.0.1", 8000)]:
    try:
        socket.create_connection(target, timeout=2)
        print("CONNECTED", target)
    except OSError as e:
        print("refused", target, e.errno)
"""
    result = run_tool(python_code, tool_settings(), code=code)
    assert "CONNECTED" not in result.output
    assert result.output.count("refused") == 2


@needs_sandbox
def test_writes_only_to_private_tmp(tool_settings, run_tool):
    code = """
import os
open("/tmp/scratch.txt", "w").write("ok")
print("tmp write ok", open("/tmp/scratch.txt").read())
for p in ["/usr/evil", "/etc/evil", "/evil", "/sandbox/evil", "/dev/evil", "/proc/evil"]:
    try:
        open(p, "w").write("x")
        print("WROTE", p)
    except OSError as e:
        print("denied", p)
"""
    result = run_tool(python_code, tool_settings(), code=code)
    assert "tmp write ok ok" in result.output
    assert "WROTE" not in result.output and result.output.count("denied") == 6
    assert not Path("/tmp/scratch.txt").exists()  # the sandbox /tmp is not the host's


@needs_sandbox
def test_infinite_loop_is_killed_by_the_timeout(tool_settings, run_tool):
    start = time.monotonic()
    result = run_tool(python_code, tool_settings(sandbox_timeout_s=2), code="print('spinning', flush=True)\nwhile True: pass")
    elapsed = time.monotonic() - start
    assert not result.ok
    assert "time limit" in result.output and "spinning" in result.output
    assert elapsed < 6


@needs_sandbox
def test_fork_bomb_is_contained(tool_settings, run_tool):
    code = """
import os, time
n = 0
try:
    while n < 10000:
        if os.fork() == 0:
            time.sleep(20)
            os._exit(0)
        n += 1
    print("FORKED", n)
except OSError as e:
    print("fork refused after", n)
"""
    result = run_tool(python_code, tool_settings(sandbox_timeout_s=5), code=code)
    assert "fork refused after" in result.output, result.output
    forked = int(result.output.split("fork refused after")[1].split()[0])
    assert forked <= 64


@needs_sandbox
def test_memory_limit(tool_settings, run_tool):
    result = run_tool(python_code, tool_settings(sandbox_memory_mb=128), code="x = bytearray(512 * 1024 * 1024)\nprint('ALLOCATED')")
    assert not result.ok
    assert "ALLOCATED" not in result.output and "MemoryError" in result.output


@needs_sandbox
def test_huge_output_is_truncated(tool_settings, run_tool):
    result = run_tool(python_code, tool_settings(sandbox_max_output_bytes=1000), code="print('y' * 5_000_000)")
    assert "output truncated to 1000 bytes" in result.output
    assert len(result.output) < 1500


@needs_sandbox
def test_cancellation_kills_the_process_group_quickly():
    marker = f"sandbox-cancel-{os.getpid()}-{time.time_ns()}"

    async def scenario() -> float:
        task = asyncio.create_task(
            run_sandboxed(["/usr/bin/python3", "-I", "-S", "-c", f"#{marker}\nwhile True: pass"], None, SandboxLimits(timeout_s=60))
        )
        await asyncio.sleep(1.0)
        start = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic() - start

    took = asyncio.run(scenario())
    assert took < 1.5
    time.sleep(0.3)
    survivors = [p for p in os.listdir("/proc") if p.isdigit() and _cmdline_has(p, marker)]
    assert survivors == []


def _cmdline_has(pid: str, marker: str) -> bool:
    try:
        return marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def test_fails_closed_without_sandbox(tool_settings, run_tool, monkeypatch):
    monkeypatch.setattr("backend.tools.python_code.sandbox_available", lambda: (False, "bwrap missing (test)"))
    called = []
    monkeypatch.setattr(sandbox, "run_sandboxed", lambda *a, **k: called.append(a))
    result = run_tool(python_code, tool_settings(), code="print('should not run')")
    assert not result.ok
    assert "sandbox is unavailable" in result.output and "bwrap missing (test)" in result.output
    assert not called


def test_rejects_empty_and_oversized_code(tool_settings, run_tool):
    assert "no code" in run_tool(python_code, tool_settings(), code="   ").output
    assert "too long" in run_tool(python_code, tool_settings(), code="x" * 20_001).output


def test_sympy_is_importable_read_only(tool_settings, run_tool):
    code = (
        "import sympy as sp\nx = sp.symbols('x')\nprint(sp.diff(x**3*sp.sin(x), x))\n"
        "import mpmath, os\ntry:\n    open(os.path.join(os.path.dirname(sp.__file__), 'x.py'), 'w')\n"
        "except OSError:\n    print('read-only')\n"
    )
    result = run_tool(python_code, tool_settings(), code=code)
    assert result.ok, result.output
    assert "x**3*cos(x) + 3*x**2*sin(x)" in result.output and "read-only" in result.output
