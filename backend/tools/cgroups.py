"""One control group per sandbox run: memory, process-count and CPU limits for the run as a whole.

rlimits are per process (``RLIMIT_AS``) or per uid (``RLIMIT_NPROC``); a run that forks five
children of 200 MB each stays under every per-process limit. A cgroup bounds the run's *sum*:

* cgroup v2 (``memory.max``, ``memory.swap.max``, ``pids.max``, ``cpu.max``, ``cgroup.kill``) when
  the unified hierarchy has those controllers for our cgroup (or can enable them);
* else cgroup v1 (``memory.limit_in_bytes`` + ``memory.memsw.limit_in_bytes``, ``pids.max``,
  ``cpu.cfs_quota_us``), one directory per controller, under this process's own cgroup so the
  host's limits on the server still apply;
* else nothing: ``RunCgroup.create`` returns None and the sandbox relies on its fallback (rlimits,
  a per-run uid when running as root, and the concurrency caps; see ``backend.tools.sandbox``).

Creating cgroups needs write access to the hierarchy (root, or a delegated subtree). The child
process joins the cgroup between fork and exec by writing its pid to ``cgroup.procs``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("backend.tools.cgroups")

_V1_CONTROLLERS = ("memory", "pids", "cpu")


def _mounts() -> list[tuple[str, str, set[str]]]:
    """(mount point, fs type, options) of the cgroup mounts."""
    found = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 4 and parts[2] in ("cgroup", "cgroup2"):
                found.append((parts[1], parts[2], set(parts[3].split(","))))
    return found


def _own_paths() -> dict[str, str]:
    """controller ('' for v2) -> this process's cgroup path."""
    paths: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for name in controllers.split(",") if controllers else [""]:
                paths[name] = path
    return paths


def _writable(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK)


@dataclass(frozen=True)
class _Layout:
    version: int
    parents: dict[str, Path]  # controller -> directory under which run cgroups are created


@functools.lru_cache(maxsize=1)
def layout() -> _Layout | None:
    """Where per-run cgroups can be created here, or None (cached; see the module docstring)."""
    mounts = _mounts()
    own = _own_paths()
    for point, fstype, _opts in mounts:
        if fstype != "cgroup2":
            continue
        parent = Path(point) / own.get("", "/").lstrip("/")
        try:
            available = set((parent / "cgroup.controllers").read_text().split())
        except OSError:
            continue
        if not {"memory", "pids"} <= available or not _writable(parent):
            continue
        enabled = set((parent / "cgroup.subtree_control").read_text().split())
        wanted = {"memory", "pids"} | ({"cpu"} & available)
        if not wanted <= enabled:
            try:
                (parent / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in sorted(wanted - enabled)))
            except OSError:  # our cgroup has processes in it (no internal processes in v2)
                continue
        return _Layout(2, {"": parent})
    parents: dict[str, Path] = {}
    for point, fstype, opts in mounts:
        if fstype != "cgroup":
            continue
        for controller in _V1_CONTROLLERS:
            if controller in opts and controller not in parents:
                parent = Path(point) / own.get(controller, "/").lstrip("/")
                if _writable(parent):
                    parents[controller] = parent
    if {"memory", "pids"} <= set(parents):
        return _Layout(1, parents)
    return None


def describe() -> str:
    """How runs are limited here, for health output and logs."""
    found = layout()
    if found is None:
        return "no writable cgroup hierarchy: per-process rlimits, per-run uid (as root) and run caps only"
    return f"cgroup v{found.version} per run ({', '.join(sorted(found.parents)) or 'memory, pids, cpu'})"


def _write(path: Path, value: str) -> bool:
    try:
        path.write_text(value)
        return True
    except OSError as exc:
        log.debug("cgroup write %s=%s failed: %s", path, value, exc)
        return False


@dataclass
class RunCgroup:
    version: int
    dirs: list[Path]
    procs_files: list[str] = field(default_factory=list)

    @classmethod
    def create(cls, name: str, memory_bytes: int, pids_max: int, cpu_quota: float | None = 1.0) -> RunCgroup | None:
        found = layout()
        if found is None:
            return None
        dirs: list[Path] = []
        try:
            if found.version == 2:
                d = found.parents[""] / name
                d.mkdir()
                dirs.append(d)
                ok = _write(d / "memory.max", str(memory_bytes)) and _write(d / "pids.max", str(pids_max))
                _write(d / "memory.swap.max", "0")
                if cpu_quota:
                    _write(d / "cpu.max", f"{int(cpu_quota * 100_000)} 100000")
            else:
                ok = True
                for controller, parent in found.parents.items():
                    d = parent / name
                    d.mkdir()
                    dirs.append(d)
                    if controller == "memory":
                        ok = ok and _write(d / "memory.limit_in_bytes", str(memory_bytes))
                        if (d / "memory.memsw.limit_in_bytes").exists():
                            _write(d / "memory.memsw.limit_in_bytes", str(memory_bytes))
                    elif controller == "pids":
                        ok = ok and _write(d / "pids.max", str(pids_max))
                    elif controller == "cpu" and cpu_quota:
                        _write(d / "cpu.cfs_period_us", "100000")
                        _write(d / "cpu.cfs_quota_us", str(int(cpu_quota * 100_000)))
        except OSError as exc:
            log.warning("could not create the sandbox cgroup %s: %s", name, exc)
            ok = False
        group = cls(found.version, dirs, [str(d / "cgroup.procs") for d in dirs])
        if not ok:
            group.close()
            return None
        return group

    def join_self(self) -> None:
        """Move the calling process into the cgroup (called in the child between fork and exec)."""
        pid = str(os.getpid()).encode()
        for path in self.procs_files:
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, pid)
            finally:
                os.close(fd)

    def pids(self) -> list[int]:
        found: set[int] = set()
        for d in self.dirs:
            with contextlib.suppress(OSError, ValueError):
                found.update(int(x) for x in (d / "cgroup.procs").read_text().split())
        return sorted(found)

    def kill(self) -> None:
        """SIGKILL every process of the run (v2: ``cgroup.kill``; v1: until the group is empty)."""
        if self.version == 2 and self.dirs and (self.dirs[0] / "cgroup.kill").exists():
            _write(self.dirs[0] / "cgroup.kill", "1")
        for _ in range(50):  # a fork bomb cannot outrun this: pids.max caps how many there are
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.01)

    def events(self) -> list[str]:
        """What the kernel had to enforce during the run, as notes for the observation."""
        notes: list[str] = []
        for d in self.dirs:
            with contextlib.suppress(OSError):
                if self.version == 2:
                    mem = dict(line.split() for line in (d / "memory.events").read_text().splitlines())
                    if int(mem.get("oom_kill", 0)) or int(mem.get("max", 0)):
                        notes.append("memory limit of the run reached (processes killed)")
                    pids = dict(line.split() for line in (d / "pids.events").read_text().splitlines())
                    if int(pids.get("max", 0)):
                        notes.append("process limit of the run reached (fork refused)")
                else:
                    if (d / "memory.oom_control").exists():
                        oom = dict(line.split() for line in (d / "memory.oom_control").read_text().splitlines())
                        if int(oom.get("oom_kill", 0)):
                            notes.append("memory limit of the run reached (processes killed)")
                    if (d / "pids.events").exists():
                        events = dict(line.split() for line in (d / "pids.events").read_text().splitlines())
                        if int(events.get("max", 0)):
                            notes.append("process limit of the run reached (fork refused)")
        return notes

    def close(self) -> None:
        """Kill what is left and remove the directories (retrying briefly while processes exit)."""
        self.kill()
        for d in self.dirs:
            for _ in range(100):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    self.kill()
                    time.sleep(0.01)
            else:
                log.warning("sandbox cgroup %s could not be removed", d)
