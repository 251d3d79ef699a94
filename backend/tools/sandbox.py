"""Run untrusted programs out of process, inside a bubblewrap sandbox.

What the sandboxed process gets:

* fresh user, pid, network, ipc, uts and cgroup namespaces (``--unshare-all``): no network at all,
  it sees only its own processes, and it is uid/gid 65534 (nobody) — not root;
* a read-only view of ``/usr`` (plus the ``/lib``, ``/lib64``, ``/bin`` links), a minimal ``/etc``
  (passwd, group, ld.so.cache), ``/proc``, a minimal ``/dev``, and a private size-limited tmpfs
  ``/tmp`` as its only writable place. The data directory, ``/root``, ``/work``, ``/home`` and the
  project tree are simply not there;
* rlimits: CPU seconds, address space (``settings.sandbox_memory_mb``), file size, open files and
  number of processes. When the server runs as root, bubblewrap itself is started as the host user
  ``nobody`` so that the process limit counts only sandboxed processes;
* a wall-clock limit: on timeout or cancellation the whole process group is killed (bubblewrap is
  pid 1 of the sandbox's pid namespace, so every process inside dies with it);
* stdout/stderr captured and truncated to ``max_output_bytes``.

If bubblewrap is missing or cannot create namespaces here, ``sandbox_available()`` says why and
callers refuse to run the code. Nothing here ever falls back to running code in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import resource
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("backend.tools.sandbox")

NOBODY_UID = 65534
NOBODY_GID = 65534
SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"
_MIN_ETC_FILES = {
    "passwd": "root:x:0:0:root:/nonexistent:/usr/sbin/nologin\n"
    "nobody:x:65534:65534:nobody:/tmp:/usr/sbin/nologin\n",
    "group": "root:x:0:\nnogroup:x:65534:\n",
    "hostname": "sandbox\n",
    "hosts": "127.0.0.1 localhost sandbox\n",
}


@dataclass
class SandboxLimits:
    timeout_s: float = 10.0
    memory_mb: int = 256
    cpu_s: int | None = None  # default: ceil(timeout_s) + 1
    max_output_bytes: int = 16_384
    max_file_bytes: int = 16 * 1024 * 1024
    max_processes: int = 32
    max_open_files: int = 64
    tmpfs_bytes: int = 64 * 1024 * 1024

    @classmethod
    def from_settings(cls, settings: object, **overrides: object) -> SandboxLimits:
        limits = cls(
            timeout_s=float(getattr(settings, "sandbox_timeout_s", 10.0)),
            memory_mb=int(getattr(settings, "sandbox_memory_mb", 256)),
            max_output_bytes=int(getattr(settings, "sandbox_max_output_bytes", 16_384)),
        )
        for key, value in overrides.items():
            setattr(limits, key, value)
        return limits


@dataclass
class SandboxResult:
    exit_code: int | None
    stdout: str
    stderr: str
    timed_out: bool = False
    truncated: bool = False
    duration_s: float = 0.0
    signal: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


class SandboxUnavailable(RuntimeError):
    """The sandbox cannot be used on this machine; the message says why."""


def bwrap_path() -> str | None:
    return shutil.which("bwrap") or (str(Path("/usr/bin/bwrap")) if Path("/usr/bin/bwrap").exists() else None)


@functools.lru_cache(maxsize=1)
def _etc_dir() -> str:
    directory = tempfile.mkdtemp(prefix="sandbox-etc-")
    for name, content in _MIN_ETC_FILES.items():
        path = Path(directory, name)
        path.write_text(content, encoding="utf-8")
        path.chmod(0o644)
    Path(directory).chmod(0o755)
    return directory


def _drop_to_nobody() -> bool:
    return os.geteuid() == 0


def _own_task_count() -> int:
    """Tasks (processes+threads) owned by our real uid: RLIMIT_NPROC counts all of them."""
    uid = os.getuid()
    count = 0
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                if entry.stat().st_uid == uid:
                    count += len(os.listdir(f"/proc/{entry.name}/task"))
            except OSError:
                continue
    return count


def _bind_args(host: str, dest: str | None = None) -> list[str]:
    """Read-only bind of a host path; recreate top-level symlinks (e.g. /lib -> usr/lib) as symlinks."""
    dest = dest or host
    p = Path(host)
    if p.is_symlink() and dest == host and p.parent == Path("/"):
        return ["--symlink", os.readlink(host), dest]
    if p.exists():
        return ["--ro-bind", host, dest]
    return []


def build_bwrap_argv(
    argv: Sequence[str],
    limits: SandboxLimits,
    ro_binds: Sequence[tuple[str, str]] = (),
    env: dict[str, str] | None = None,
) -> list[str]:
    bwrap = bwrap_path()
    if not bwrap:
        raise SandboxUnavailable("bubblewrap (bwrap) is not installed; install the 'bubblewrap' package")
    etc = _etc_dir()
    args = [
        bwrap,
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--uid", str(NOBODY_UID),
        "--gid", str(NOBODY_GID),
        "--hostname", "sandbox",
        "--ro-bind", "/usr", "/usr",
    ]
    for top in ("/lib", "/lib64", "/lib32", "/bin", "/sbin"):
        args += _bind_args(top)
    args += ["--dir", "/etc"]
    for name in _MIN_ETC_FILES:
        args += ["--ro-bind", f"{etc}/{name}", f"/etc/{name}"]
    if Path("/etc/ld.so.cache").exists():
        args += ["--ro-bind", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    args += [
        "--proc", "/proc",
        "--dev", "/dev",
        "--size", str(limits.tmpfs_bytes), "--tmpfs", "/tmp",
        "--chdir", "/tmp",
    ]
    for host, dest in ro_binds:
        args += ["--ro-bind", host, dest]
    # the sandbox's root and /dev are private tmpfs mounts: make them read-only; only /tmp stays writable
    args += ["--remount-ro", "/dev", "--remount-ro", "/"]
    args += ["--clearenv"]
    base_env = {
        "PATH": SANDBOX_PATH, "HOME": "/tmp", "LANG": "C.UTF-8", "TMPDIR": "/tmp", "PYTHONDONTWRITEBYTECODE": "1"
    }
    for key, value in {**base_env, **(env or {})}.items():
        args += ["--setenv", key, value]
    args += ["--", *argv]
    return args


def _preexec(limits: SandboxLimits, nproc: int, drop: bool = True) -> None:
    """Runs in the child between fork and exec: drop privileges, then set the rlimits."""
    if drop:
        os.setgroups([])
        os.setgid(NOBODY_GID)
        os.setuid(NOBODY_UID)
    cpu = limits.cpu_s if limits.cpu_s is not None else int(limits.timeout_s) + 1
    mem = limits.memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.max_file_bytes, limits.max_file_bytes))
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits.max_open_files, limits.max_open_files))
    resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


@functools.lru_cache(maxsize=1)
def _probe() -> tuple[bool, str]:
    if not bwrap_path():
        return False, "bubblewrap (bwrap) is not installed; install the 'bubblewrap' package"
    limits = SandboxLimits(timeout_s=10, memory_mb=256)
    try:
        argv = build_bwrap_argv(["/bin/sh", "-c", "id -u"], limits)
        proc = subprocess.run(
            argv,
            capture_output=True,
            timeout=15,
            preexec_fn=functools.partial(
                _preexec, limits, 64 + (0 if _drop_to_nobody() else _own_task_count()), _drop_to_nobody()
            ),
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return False, f"bubblewrap could not be started: {exc}"
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip()[:300]
        return False, f"bubblewrap cannot create a sandbox here (exit {proc.returncode}): {err}"
    if proc.stdout.strip() != str(NOBODY_UID).encode():
        return False, "bubblewrap sandbox did not drop to an unprivileged user"
    return True, "ok"


def sandbox_available() -> tuple[bool, str]:
    """(True, "ok") when bubblewrap works here; otherwise (False, reason). Result is cached."""
    return _probe()


@functools.lru_cache(maxsize=1)
def sandbox_python() -> str | None:
    """The interpreter used inside the sandbox: a system Python under /usr (bound read-only)."""
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if Path(candidate).exists() and os.access(candidate, os.X_OK):
            return candidate
    return None


def _decode(data: bytes, limit: int) -> tuple[str, bool]:
    truncated = len(data) > limit
    text = data[:limit].decode("utf-8", "replace")
    return text, truncated


async def _read_capped(stream: asyncio.StreamReader | None, limit: int) -> tuple[bytes, int]:
    """Read everything (so the child never blocks on a full pipe) but keep at most ``limit`` bytes."""
    if stream is None:
        return b"", 0
    kept = bytearray()
    total = 0
    while True:
        chunk = await stream.read(65536)
        if not chunk:
            break
        total += len(chunk)
        if len(kept) < limit + 1:
            kept.extend(chunk[: limit + 1 - len(kept)])
    return bytes(kept), total


def _task_bytes(task: asyncio.Future) -> tuple[bytes, int]:
    if task.done() and not task.cancelled() and task.exception() is None:
        return task.result()
    return b"", 0


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()


async def run_sandboxed(
    argv: Sequence[str],
    stdin: bytes | None = None,
    limits: SandboxLimits | None = None,
    *,
    ro_binds: Sequence[tuple[str, str]] = (),
    env: dict[str, str] | None = None,
) -> SandboxResult:
    """Run ``argv`` inside the sandbox. Raises ``SandboxUnavailable`` if it cannot be set up."""
    limits = limits or SandboxLimits()
    ok, reason = sandbox_available()
    if not ok:
        raise SandboxUnavailable(reason)
    full = build_bwrap_argv(argv, limits, ro_binds, env)
    drop = _drop_to_nobody()
    nproc = limits.max_processes + (0 if drop else _own_task_count())
    return await _run_process(full, stdin, limits, functools.partial(_preexec, limits, nproc, drop))


async def run_limited(
    argv: Sequence[str], stdin: bytes | None = None, limits: SandboxLimits | None = None
) -> SandboxResult:
    """Run a *trusted* helper in its own rlimited, killable process group, without bubblewrap.

    For workers that only ever receive validated data (never code), as a fallback where the
    sandbox is unavailable. Untrusted code must use ``run_sandboxed``.
    """
    limits = limits or SandboxLimits()
    nproc = limits.max_processes + _own_task_count()
    env = {"PATH": SANDBOX_PATH, "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
    return await _run_process(list(argv), stdin, limits, functools.partial(_preexec, limits, nproc, False), env)


async def _run_process(
    full: list[str], stdin: bytes | None, limits: SandboxLimits, preexec: object, env: dict[str, str] | None = None
) -> SandboxResult:
    start = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *full,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
        preexec_fn=preexec,  # type: ignore[arg-type]
        env=env,
        close_fds=True,
    )
    cap = limits.max_output_bytes
    timed_out = False

    async def feed() -> None:
        if proc.stdin is None:
            return
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            proc.stdin.write(stdin or b"")
            await proc.stdin.drain()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            proc.stdin.close()

    feeder = asyncio.ensure_future(feed())
    out_reader = asyncio.ensure_future(_read_capped(proc.stdout, cap))
    err_reader = asyncio.ensure_future(_read_capped(proc.stderr, cap))
    tasks = (feeder, out_reader, err_reader)
    try:
        try:
            await asyncio.wait_for(proc.wait(), timeout=limits.timeout_s)
        except TimeoutError:
            timed_out = True
            _kill_group(proc)
            await asyncio.wait_for(proc.wait(), 5)
        # the pipes close when the sandbox (its whole pid namespace) is gone
        await asyncio.wait(tasks, timeout=2)
    except asyncio.CancelledError:
        _kill_group(proc)
        for task in tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(proc.wait()), 1)
        raise
    finally:
        if proc.returncode is None:
            _kill_group(proc)
        for task in tasks:
            if not task.done():
                task.cancel()
    out, out_total = _task_bytes(out_reader)
    err, err_total = _task_bytes(err_reader)
    duration = time.monotonic() - start
    stdout, t1 = _decode(out, cap)
    stderr, t2 = _decode(err, cap)
    code = proc.returncode
    sig = -code if code is not None and code < 0 else None
    result = SandboxResult(
        exit_code=code,
        stdout=stdout,
        stderr=stderr,
        timed_out=timed_out,
        truncated=t1 or t2 or out_total > cap or err_total > cap,
        duration_s=duration,
        signal=sig,
    )
    if code == 128 + signal.SIGXCPU or sig == signal.SIGXCPU:
        result.notes.append("CPU time limit exceeded")
    if sig == signal.SIGKILL and not timed_out:
        result.notes.append("killed (likely memory limit)")
    return result
