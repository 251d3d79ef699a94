"""python_code: run a Python snippet in the bubblewrap sandbox and return what it printed.

The code never runs in this process. It runs as ``python3 -I -S /sandbox/main.py`` inside the
sandbox (see ``backend.tools.sandbox``): no network, nobody's uid, read-only system files, a private
``/tmp``, CPU/memory/process/file-size limits and a wall-clock timeout. If the sandbox cannot be
set up here, the tool refuses with the reason — it never falls back to running the code unsandboxed.

``python_code_with_tools(tools)`` is the same tool whose programs may also call server tools
(``from tools import sql, search_documents, calc``) through ``backend.tools.tool_channel``: the
calls run on the server with the caller's ``ToolContext``, bounded per run; the code agent uses it.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Mapping
from importlib.util import find_spec
from pathlib import Path

from backend.settings import Settings
from backend.tools.base import Tool, ToolContext, ToolError, ToolResult, tool
from backend.tools.sandbox import SandboxLimits, run_sandboxed, sandbox_available, sandbox_python
from backend.tools.tool_channel import ChannelLimits, ToolChannel

MAX_CODE_CHARS = 20_000


def _format(stdout: str, stderr: str, exit_code: int | None, notes: list[str]) -> str:
    parts = []
    if stdout.strip():
        parts.append(stdout.rstrip())
    if stderr.strip():
        parts.append("[stderr]\n" + stderr.rstrip())
    if notes:
        parts.append("[note] " + "; ".join(notes))
    if exit_code not in (0, None) and not stderr.strip():
        parts.append(f"[exit code {exit_code}]")
    return "\n".join(parts) if parts else "(no output — use print() to show results)"


def _needs_sandbox(settings: Settings) -> str | None:
    if not settings.python_code_enabled:
        return "python_code is turned off by the administrator (PYTHON_CODE_ENABLED=false)"
    ok, reason = sandbox_available()
    return None if ok else f"the code sandbox is unavailable: {reason}"


# Runs the user's script as __main__ with the read-only pure-Python libraries importable.
_BOOT = """import os, runpy, sys
sys.path.insert(0, "/pylib")
if os.path.isdir("/sandbox/lib"):
    sys.path.insert(0, "/sandbox/lib")
sys.argv = ["main.py"]
runpy.run_path("/sandbox/main.py", run_name="__main__")
"""
#: pure-Python packages offered inside the sandbox (bound read-only from this environment)
SANDBOX_LIBRARIES = ("sympy", "mpmath")


def _pure_python_libs() -> dict[str, str]:
    found = {}
    for name in SANDBOX_LIBRARIES:
        spec = find_spec(name)
        if spec is not None and spec.submodule_search_locations:
            found[name] = str(Path(next(iter(spec.submodule_search_locations))).resolve())
    return found


@tool(
    timeout_s=120,
    requires=_needs_sandbox,
    categories=("math", "code", "data"),
    hint="python_code runs a full Python program; print() the result.",
    deterministic=True,
)
async def python_code(ctx: ToolContext, code: str) -> ToolResult:
    """Run Python 3 code in an isolated sandbox (standard library plus sympy, no network) and return its output.

    Print what you want to see. Each run starts fresh; /tmp is the only writable directory.

    Args:
        code: the Python source to run; use print() to show results.
    """
    return await run_python(ctx, code)


def python_code_with_tools(tools: Mapping[str, Tool]) -> Tool:
    """``python_code`` whose programs can call those of ``tools`` the channel offers (see the module docstring)."""
    offered = dict(tools)

    async def run(ctx: ToolContext, code: str) -> ToolResult:
        return await run_python(ctx, code, offered)

    registered: Tool = python_code
    return dataclasses.replace(registered, func=run)


async def run_python(ctx: ToolContext, code: str, channel_tools: Mapping[str, Tool] | None = None) -> ToolResult:
    """Run ``code`` in the sandbox; with ``channel_tools``, it may call them through the tool channel."""
    if not code or not code.strip():
        raise ToolError("no code given")
    if len(code) > MAX_CODE_CHARS:
        raise ToolError(f"code is too long (at most {MAX_CODE_CHARS} characters)")
    if "\x00" in code:
        raise ToolError("code contains a NUL byte")
    if not ctx.settings.python_code_enabled:
        raise ToolError("python_code is turned off by the administrator")
    ok, reason = sandbox_available()
    if not ok:
        raise ToolError(f"code execution is disabled because the sandbox is unavailable: {reason}")
    python = sandbox_python()
    if python is None:
        raise ToolError("code execution is disabled: no system Python 3 under /usr for the sandbox")
    limits = SandboxLimits.from_settings(ctx.settings)
    channel = None
    if channel_tools and ctx.settings.code_tools_enabled:
        channel = ToolChannel(ctx, channel_tools, ChannelLimits.from_settings(ctx.settings))
        channel = channel if channel.functions else None
    workdir = Path(tempfile.mkdtemp(prefix="pycode-"))
    try:
        workdir.chmod(0o755)
        script = workdir / "main.py"
        script.write_text(code, encoding="utf-8")
        boot = workdir / "_boot.py"
        boot.write_text(_BOOT, encoding="utf-8")
        files = [script, boot]
        if channel is not None:
            (workdir / "lib").mkdir(mode=0o755)
            (workdir / "lib").chmod(0o755)
            files.append(workdir / "lib" / "tools.py")
            files[-1].write_text(channel.stub(), encoding="utf-8")
        for path in files:
            path.chmod(0o644)
        binds = [(str(workdir), "/sandbox")]
        binds += [(host, f"/pylib/{name}") for name, host in _pure_python_libs().items()]
        result = await run_sandboxed(
            [python, "-I", "-S", "-B", "/sandbox/_boot.py"], b"", limits, ro_binds=binds, user_id=ctx.user_id,
            channel=channel, channel_read_limit=channel.limits.max_request_bytes if channel is not None else 1 << 20,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    notes = list(result.notes)
    if result.truncated:
        notes.append(f"output truncated to {limits.max_output_bytes} bytes")
    if result.timed_out:
        notes.append(f"stopped after {limits.timeout_s:.0f}s (time limit)")
    text = _format(result.stdout, result.stderr, result.exit_code, notes)
    return ToolResult(
        ok=result.ok,
        output=text,
        data={
            "exit_code": result.exit_code,
            "timed_out": result.timed_out,
            "truncated": result.truncated,
            # the printed output alone: the code agent's answer is exactly this text
            "stdout": result.stdout,
            "stderr": result.stderr,
            "sandboxed": True,
            "tool_calls": [
                {"fn": c.fn, "args": c.args, "ok": c.ok, "output": c.output[:2000], "duration_s": c.duration_s}
                for c in (channel.calls if channel is not None else [])
            ],
        },
    )
