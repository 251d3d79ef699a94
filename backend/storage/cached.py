"""A ``JsonFile`` whose reads cost one ``stat`` while the file is unchanged.

For documents read on every request (``users.json``, the API-key file). The parsed value is kept
with the file's signature — device, inode, size, mtime and ctime in nanoseconds — and reloaded when
``os.stat`` reports a different one. That stays correct across processes and replicas on a shared
volume: every writer in this project replaces the file atomically (``atomic_write_json``: a new
inode each time), and the cache keeps the file it read *open*, so that inode number cannot be
recycled for a later version while it is remembered. A hand edit in place changes size or mtime.

``snapshot()`` returns the shared parsed value: callers treat it as read-only and copy what they
hand out. ``update()`` (read-modify-write under the file lock) still reads the disk, never the
cache, so concurrent writers lose nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from backend.storage.jsonstore import JsonFile

Signature = tuple[int, int, int, int, int]


def _signature(st: os.stat_result) -> Signature:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


class CachedJsonFile(JsonFile):
    def __init__(self, path: Path, default_factory: Callable[[], Any] = dict) -> None:
        super().__init__(path, default_factory)
        self._lock = threading.Lock()
        self._entry: tuple[Signature, Any] | None = None  # one object: readers see both or neither
        self._fd: int | None = None  # the version in the cache, held open (its inode stays unique)
        self.reloads = 0  # how often the disk was read (tests, diagnostics)

    def snapshot(self) -> Any:
        """The current document (read-only): from the cache while the file's signature holds."""
        try:
            signature = _signature(os.stat(self.path))
        except FileNotFoundError:
            self._forget()
            return self._default_factory()
        entry = self._entry
        if entry is not None and entry[0] == signature:
            return entry[1]
        return self._reload()

    def _reload(self) -> Any:
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            self._forget()
            return self._default_factory()
        try:
            signature = _signature(os.fstat(fd))  # of the very file read below
            with os.fdopen(os.dup(fd), "rb") as fh:
                raw = fh.read()
            value = json.loads(raw.decode("utf-8")) if raw else None
        except BaseException:
            os.close(fd)
            raise
        if value is None:
            value = self._default_factory()
        with self._lock:
            old, self._fd = self._fd, fd
            self._entry = (signature, value)
            self.reloads += 1
        if old is not None:
            with contextlib.suppress(OSError):
                os.close(old)
        return value

    def _forget(self) -> None:
        with self._lock:
            old, self._fd = self._fd, None
            self._entry = None
        if old is not None:
            with contextlib.suppress(OSError):
                os.close(old)

    def close(self) -> None:
        self._forget()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self._forget()
