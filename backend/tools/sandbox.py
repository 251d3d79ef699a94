"""Run untrusted programs out of process, inside a bubblewrap sandbox.

What the sandboxed process gets:

* fresh user, pid, network, ipc, uts and cgroup namespaces (``--unshare-all``): no network at all,
  it sees only its own processes, and it is uid/gid 65534 (nobody) — not root;
* a read-only view of ``/usr`` (plus the ``/lib``, ``/lib64``, ``/bin`` links), a minimal ``/etc``
  (passwd, group, ld.so.cache), ``/proc``, a minimal ``/dev``, and a private size-limited tmpfs
  ``/tmp`` as its only writable place. The data directory, ``/root``, ``/work``, ``/home`` and the
  project tree are simply not there;
* rlimits: CPU seconds, address space (``settings.sandbox_memory_mb``), file size, open files and
  number of processes, and a lower CPU priority (nice 10);
* per-run limits on the run as a whole (``backend.tools.cgroups``): its own cgroup with
  ``memory.max`` (= ``sandbox_memory_mb`` for all its processes together), ``pids.max`` and one CPU
  of quota, killed as a group at the end. Where no cgroup hierarchy is writable the fallback is:
  when the server runs as root, each run gets a host uid no other running run holds (rotating
  through ``sandbox_uid_base`` … ``+ 8 × sandbox_max_concurrent``), so ``RLIMIT_NPROC`` counts only
  that run's processes and one run's fork bomb cannot use up another's process budget; otherwise
  RLIMIT_NPROC on top of the server uid's current task count;
* at most ``sandbox_max_concurrent`` runs at once, at most ``sandbox_max_per_user`` of them for
  one user; a run waits up to ``sandbox_queue_timeout_s`` for a slot, then fails with a clear error;
* no nested user namespaces (``--disable-userns``, where bubblewrap supports it);
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
import threading
import time
import uuid
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from backend.tools.base import ToolError

if TYPE_CHECKING:
    from backend.settings import Settings
from backend.tools.cgroups import RunCgroup

log = logging.getLogger("backend.tools.sandbox")

NOBODY_UID = 65534
UID_POOL_PER_SLOT = 8  # private uids rotate through this many per concurrent slot
NPROC_SLACK = 8  # RLIMIT_NPROC headroom for bubblewrap's processes
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
    memory_mb: int = 256  # per process (RLIMIT_AS) and, with a cgroup, for the whole run
    cpu_s: int | None = None  # default: ceil(timeout_s) + 1
    max_output_bytes: int = 16_384
    max_file_bytes: int = 16 * 1024 * 1024
    max_processes: int = 32
    max_open_files: int = 64
    tmpfs_bytes: int = 64 * 1024 * 1024
    max_concurrent: int = 4  # runs at once in this process, all users
    max_per_user: int = 2  # runs at once for one user
    queue_timeout_s: float = 30.0  # wait for a run slot at most this long
    cgroup: bool = True  # a cgroup per run where the hierarchy is writable
    cpu_quota: float | None = 1.0  # CPUs one run may use (cgroup)
    uid_base: int = 200_000  # as root: runs use private host uids from here (0 = all run as nobody)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: object) -> SandboxLimits:
        limits = cls(
            timeout_s=settings.sandbox_timeout_s,
            memory_mb=settings.sandbox_memory_mb,
            max_output_bytes=settings.sandbox_max_output_bytes,
            max_processes=settings.sandbox_max_processes,
            max_concurrent=settings.sandbox_max_concurrent,
            max_per_user=settings.sandbox_max_per_user,
            queue_timeout_s=settings.sandbox_queue_timeout_s,
            cgroup=settings.sandbox_cgroup != "off",
            uid_base=settings.sandbox_uid_base,
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


class ChannelServer(Protocol):
    """The server side of a request/response channel into a run (``backend.tools.tool_channel``)."""

    def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Awaitable[None]: ...

    def busy_s(self) -> float:
        """Seconds spent answering so far: the run's wall-clock limit is extended by this."""
        ...


#: the environment variable naming the channel's file descriptors inside the sandbox ("request,reply")
CHANNEL_FDS_ENV = "TOOL_CHANNEL_FDS"
CHANNEL_READ_LIMIT = 1 << 20


@dataclass
class _ChannelPipes:
    """Two pipes: the program writes requests to ``child_req`` and reads replies from ``child_rep``."""

    req_r: int
    child_req: int
    child_rep: int
    rep_w: int

    @classmethod
    def open(cls) -> _ChannelPipes:
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        return cls(req_r, req_w, rep_r, rep_w)

    def child_fds(self) -> tuple[int, int]:
        return (self.child_req, self.child_rep)

    def close_child_ends(self) -> None:
        for fd in self.child_fds():
            with contextlib.suppress(OSError):
                os.close(fd)

    def close_all(self) -> None:
        for fd in (self.req_r, self.child_req, self.child_rep, self.rep_w):
            with contextlib.suppress(OSError):
                os.close(fd)


async def _serve_channel(channel: ChannelServer, pipes: _ChannelPipes, limit: int) -> None:
    """Connect the server ends of the pipes to the event loop and let ``channel`` answer on them."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit)
    rfile = os.fdopen(pipes.req_r, "rb", buffering=0)
    wfile = os.fdopen(pipes.rep_w, "wb", buffering=0)
    pipes.req_r = pipes.rep_w = -1  # the file objects own them now
    r_transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), rfile)
    w_transport, w_protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, wfile)
    writer = asyncio.StreamWriter(w_transport, w_protocol, None, loop)
    try:
        await channel.serve(reader, writer)
    finally:
        r_transport.close()
        w_transport.close()


class SandboxUnavailable(RuntimeError):
    """The sandbox cannot be used on this machine; the message says why."""


class SandboxBusy(ToolError):
    """No run slot became free in time (too many concurrent runs, for everyone or for this user)."""


class _RunGate:
    """Counts running sandboxed processes, in total and per user; hands out slot numbers.

    Thread-safe and loop-agnostic (tests and the server may use different event loops): waiters
    poll briefly. The per-user cap keeps one user from holding every slot.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slots: dict[int, str] = {}  # slot -> user key
        self._uids: dict[int, int] = {}  # slot -> uid offset it was given
        self._next_uid = 0

    def uid_offset(self, slot: int, pool: int) -> int:
        """A uid offset no other running slot holds, rotating through ``pool`` of them.

        Rotation gives the kernel time to reap a finished run's last processes before its uid is
        used again (their count would otherwise still weigh on the next run's RLIMIT_NPROC).
        """
        with self._lock:
            held = set(self._uids.values())
            for _ in range(pool):
                offset = self._next_uid % pool
                self._next_uid += 1
                if offset not in held:
                    self._uids[slot] = offset
                    return offset
            return slot

    def _try(self, user: str, max_total: int, max_per_user: int) -> int | None:
        with self._lock:
            if len(self._slots) >= max(1, max_total):
                return None
            if user and sum(1 for u in self._slots.values() if u == user) >= max(1, max_per_user):
                return None  # (runs without a user, e.g. internal checks, count only globally)
            slot = next(i for i in range(len(self._slots) + 1) if i not in self._slots)
            self._slots[slot] = user
            return slot

    async def acquire(self, user_id: str | None, limits: SandboxLimits) -> int:
        user = user_id or ""
        deadline = time.monotonic() + max(0.0, limits.queue_timeout_s)
        while True:
            slot = self._try(user, limits.max_concurrent, limits.max_per_user)
            if slot is not None:
                return slot
            if time.monotonic() >= deadline:
                raise SandboxBusy(
                    f"the code sandbox is busy (at most {limits.max_concurrent} runs at once, "
                    f"{limits.max_per_user} per user); try again shortly"
                )
            await asyncio.sleep(0.02)

    def release(self, slot: int) -> None:
        with self._lock:
            self._slots.pop(slot, None)
            self._uids.pop(slot, None)

    def running(self, user_id: str | None = None) -> int:
        with self._lock:
            if user_id is None:
                return len(self._slots)
            return sum(1 for u in self._slots.values() if u == user_id)


GATE = _RunGate()


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


@functools.lru_cache(maxsize=1)
def bwrap_supports(option: str) -> bool:
    """Whether the installed bubblewrap knows ``option`` (e.g. ``--disable-userns``, bwrap >= 0.8)."""
    bwrap = bwrap_path()
    if not bwrap:
        return False
    try:
        out = subprocess.run([bwrap, "--help"], capture_output=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return option in (out.stdout + out.stderr).decode("utf-8", "replace")


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
    args = [bwrap, "--unshare-all"]
    if bwrap_supports("--disable-userns"):  # the sandbox cannot create user namespaces of its own
        args += ["--unshare-user", "--disable-userns"]
    args += [
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


def _preexec(
    limits: SandboxLimits,
    nproc: int,
    drop: bool = True,
    uid: int = NOBODY_UID,
    cgroup: RunCgroup | None = None,
) -> None:
    """Runs in the child between fork and exec: join the run's cgroup, drop privileges, set rlimits."""
    if cgroup is not None:
        cgroup.join_self()
    os.nice(10)  # the server's own work comes first on a busy machine
    if drop:
        os.setgroups([])
        os.setgid(uid if uid != NOBODY_UID else NOBODY_GID)
        os.setuid(uid)
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


def _task_bytes(task: asyncio.Future[tuple[bytes, int]]) -> tuple[bytes, int]:
    if task.done() and not task.cancelled() and task.exception() is None:
        data, total = task.result()
        return data, total
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
    user_id: str | None = None,
    channel: ChannelServer | None = None,
    channel_read_limit: int = CHANNEL_READ_LIMIT,
) -> SandboxResult:
    """Run ``argv`` inside the sandbox. Raises ``SandboxUnavailable`` if it cannot be set up.

    ``user_id`` (who the run is for) counts against ``limits.max_per_user``; raises ``SandboxBusy``
    when no run slot frees up within ``limits.queue_timeout_s``. With a ``channel`` the process
    gets two pipe descriptors (named in ``$TOOL_CHANNEL_FDS``) and nothing else: the channel answers
    its requests (reading lines of at most ``channel_read_limit`` bytes) while it runs, and the
    wall-clock limit is extended by the time the channel spent answering.
    """
    limits = limits or SandboxLimits()
    ok, reason = sandbox_available()
    if not ok:
        raise SandboxUnavailable(reason)
    slot = await GATE.acquire(user_id, limits)
    pipes = _ChannelPipes.open() if channel is not None else None
    try:
        if pipes is not None:
            env = {**(env or {}), CHANNEL_FDS_ENV: ",".join(str(fd) for fd in pipes.child_fds())}
        full = build_bwrap_argv(argv, limits, ro_binds, env)
        drop = _drop_to_nobody()
        private = drop and limits.uid_base > 0
        uid = limits.uid_base + GATE.uid_offset(slot, UID_POOL_PER_SLOT * max(1, limits.max_concurrent)) if private else NOBODY_UID
        # bubblewrap's own processes count too (and exiting ones until reaped); with a private uid
        # nothing else does. The cgroup's pids.max, where there is one, is the exact bound.
        nproc = limits.max_processes + NPROC_SLACK + (0 if private else _own_task_count())
        wired = (channel, pipes, channel_read_limit) if channel is not None and pipes is not None else None
        return await _run_in_cgroup(full, stdin, limits, nproc, drop, uid, None, wired)
    finally:
        if pipes is not None:
            pipes.close_all()
        GATE.release(slot)


async def run_limited(
    argv: Sequence[str],
    stdin: bytes | None = None,
    limits: SandboxLimits | None = None,
    user_id: str | None = None,
) -> SandboxResult:
    """Run a *trusted* helper in its own rlimited, killable process group, without bubblewrap.

    For workers that only ever receive validated data (never code), as a fallback where the
    sandbox is unavailable. Untrusted code must use ``run_sandboxed``.
    """
    limits = limits or SandboxLimits()
    env = {"PATH": SANDBOX_PATH, "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
    slot = await GATE.acquire(user_id, limits)
    try:
        nproc = limits.max_processes + _own_task_count()
        return await _run_in_cgroup(list(argv), stdin, limits, nproc, False, NOBODY_UID, env)
    finally:
        GATE.release(slot)


async def _run_in_cgroup(
    full: list[str],
    stdin: bytes | None,
    limits: SandboxLimits,
    nproc: int,
    drop: bool,
    uid: int,
    env: dict[str, str] | None,
    channel: tuple[ChannelServer, _ChannelPipes, int] | None = None,
) -> SandboxResult:
    group = None
    if limits.cgroup:
        group = await asyncio.to_thread(
            RunCgroup.create,
            f"sandbox-{uuid.uuid4().hex[:12]}",
            limits.memory_mb * 1024 * 1024,
            limits.max_processes + 4,  # + bubblewrap's own processes
            limits.cpu_quota,
        )
    try:
        preexec = functools.partial(_preexec, limits, nproc, drop, uid, group)
        result = await _run_process(full, stdin, limits, preexec, env, channel)
        if group is not None:
            result.notes.extend(n for n in group.events() if n not in result.notes)
    finally:
        if group is not None:
            await asyncio.shield(asyncio.to_thread(group.close))
    return result


async def _run_process(
    full: list[str],
    stdin: bytes | None,
    limits: SandboxLimits,
    preexec: object,
    env: dict[str, str] | None = None,
    channel: tuple[ChannelServer, _ChannelPipes, int] | None = None,
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
        pass_fds=channel[1].child_fds() if channel is not None else (),
    )
    server: asyncio.Future[None] | None = None
    if channel is not None:
        channel[1].close_child_ends()  # only the sandboxed process holds them now
        server = asyncio.ensure_future(_serve_channel(channel[0], channel[1], channel[2]))
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
    waiter = asyncio.ensure_future(proc.wait())
    try:
        try:
            while True:  # the wall clock, extended by the time the channel spends answering
                extra = channel[0].busy_s() if channel is not None else 0.0
                remaining = start + limits.timeout_s + extra - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                done, _ = await asyncio.wait({waiter}, timeout=min(remaining, 0.5) if channel is not None else remaining)
                if done:
                    break
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
        pending: list[asyncio.Future[object]] = [*tasks, waiter]  # type: ignore[list-item]
        for future in pending:
            if not future.done():
                future.cancel()
        if server is not None:
            server.cancel()
            await asyncio.wait({server}, timeout=2)
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
