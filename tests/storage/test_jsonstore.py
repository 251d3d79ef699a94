"""Atomic writes and locked read-modify-write: no torn files, no lost updates."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from backend.errors import StorageError
from backend.storage.jsonstore import JsonFile, atomic_write_json, clean_temp_files, read_json

REPO = Path(__file__).resolve().parents[2]


def _increment(path: str, n: int) -> None:
    f = JsonFile(Path(path))
    for _ in range(n):
        with f.update() as data:
            data["count"] = data.get("count", 0) + 1


def test_threads_lose_no_update(tmp_path):
    path = tmp_path / "counter.json"
    threads = [threading.Thread(target=_increment, args=(str(path), 50)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert read_json(path)["count"] == 400


def test_two_processes_lose_no_update(tmp_path):
    path = tmp_path / "counter.json"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_increment, args=(str(path), 100)) for _ in range(2)]
    for p in procs:
        p.start()
    _increment(str(path), 100)
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert read_json(path)["count"] == 300


_WRITER = """
import sys
from pathlib import Path
from backend.storage.jsonstore import JsonFile
f = JsonFile(Path(sys.argv[1]))
i = 0
while True:
    i += 1
    with f.update() as data:
        data["i"] = i
        data["payload"] = "x" * 200_000  # big enough that a kill lands mid-write
"""


def test_sigkill_mid_write_leaves_old_or_new(tmp_path):
    path = tmp_path / "state.json"
    atomic_write_json(path, {"i": 0, "payload": ""})
    for _ in range(8):
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], cwd=REPO)
        time.sleep(0.3)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        data = json.loads(path.read_text())  # always parses
        assert isinstance(data["i"], int)
    # leftovers from killed writers are cleaned at start
    clean_temp_files(tmp_path)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_disk_full_keeps_old_data(tmp_path, monkeypatch):
    path = tmp_path / "users.json"
    atomic_write_json(path, {"users": {"a": 1}})
    real_fsync = os.fsync

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(StorageError), JsonFile(path).update() as data:
        data["users"]["b"] = 2
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert read_json(path) == {"users": {"a": 1}}
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
