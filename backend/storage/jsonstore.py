"""Atomic, locked JSON files.

* ``atomic_write_json``: temp file in the same directory, fsync, ``os.replace``, fsync the dir.
  A reader (or a process killed mid-write) sees the old or the new file, never a torn one.
* ``JsonFile.update()``: read-modify-write under an exclusive ``flock`` (via ``filelock``) on a
  sibling ``.lock`` file, so concurrent writers in threads *and* processes lose nothing.
* ``clean_temp_files``: removes temp files a killed process left behind (run at start-up).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock

from backend.errors import BadRequestError, StorageError

TEMP_SUFFIX = ".tmp"
TEMP_PREFIX = ".~"
LOCK_TIMEOUT_S = 30.0


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: Path, data: bytes, mode: int = 0o600) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=TEMP_PREFIX + path.name + ".", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES):
            raise StorageError("The server could not save your data (storage full or read-only); nothing was changed.") from exc
        raise
    _fsync_dir(path.parent)


def atomic_write_json(path: Path, value: Any) -> None:
    try:
        data = json.dumps(value, ensure_ascii=False, indent=1, sort_keys=False).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a "\ud800" escape: refuse it, store nothing
        raise BadRequestError("The text contains invalid Unicode (a lone surrogate escape).", code="invalid_unicode") from None
    atomic_write_bytes(path, data)


def read_json(path: Path, default: Any = None) -> Any:
    try:
        with open(path, "rb") as fh:
            return json.loads(fh.read().decode("utf-8"))
    except FileNotFoundError:
        return default


def file_lock(path: Path) -> FileLock:
    """A fresh exclusive lock object (new fd each time, so threads exclude each other too)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path) + ".lock", timeout=LOCK_TIMEOUT_S, is_singleton=False, thread_local=False)


class JsonFile:
    """One JSON document on disk with locked read-modify-write."""

    def __init__(self, path: Path, default_factory: Callable[[], Any] = dict) -> None:
        self.path = Path(path)
        self._default_factory = default_factory

    def read(self) -> Any:
        value = read_json(self.path, None)
        return self._default_factory() if value is None else value

    @contextlib.contextmanager
    def update(self) -> Iterator[Any]:
        """Yield the current value for in-place mutation; written atomically on normal exit."""
        with file_lock(self.path):
            value = self.read()
            yield value
            atomic_write_json(self.path, value)

    def delete(self) -> bool:
        with file_lock(self.path):
            try:
                self.path.unlink()
                return True
            except FileNotFoundError:
                return False


def clean_temp_files(root: Path) -> int:
    """Remove temp files left by killed writers; returns how many were removed."""
    removed = 0
    root = Path(root)
    if not root.exists():
        return 0
    for tmp in root.rglob(TEMP_PREFIX + "*" + TEMP_SUFFIX):
        with contextlib.suppress(OSError):
            tmp.unlink()
            removed += 1
    return removed
