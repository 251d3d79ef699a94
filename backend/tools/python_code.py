"""python_code: run a Python snippet in the bubblewrap sandbox and return what it printed.

The code never runs in this process. It runs as ``python3 -I -S /sandbox/main.py`` inside the
sandbox (see ``backend.tools.sandbox``): no network, nobody's uid, read-only system files, a private
``/tmp``, CPU/memory/process/file-size limits and a wall-clock timeout. If the sandbox cannot be
set up here, the tool refuses with the reason — it never falls back to running the code unsandboxed.
"""

from __future__ import annotations

import shutil
import tempfile
from importlib.util import find_spec
from pathlib import Path

from backend.settings import Settings
from backend.tools.base import ToolContext, ToolError, ToolResult, tool
from backend.tools.sandbox import SandboxLimits, run_sandboxed, sandbox_available, sandbox_python

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
_BOOT = """import runpy, sys
sys.path.insert(0, "/pylib")
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
    workdir = Path(tempfile.mkdtemp(prefix="pycode-"))
    try:
        workdir.chmod(0o755)
        script = workdir / "main.py"
        script.write_text(code, encoding="utf-8")
        boot = workdir / "_boot.py"
        boot.write_text(_BOOT, encoding="utf-8")
        for path in (script, boot):
            path.chmod(0o644)
        binds = [(str(workdir), "/sandbox")]
        binds += [(host, f"/pylib/{name}") for name, host in _pure_python_libs().items()]
        result = await run_sandboxed(
            [python, "-I", "-S", "-B", "/sandbox/_boot.py"], b"", limits, ro_binds=binds, user_id=ctx.user_id
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
        },
    )
