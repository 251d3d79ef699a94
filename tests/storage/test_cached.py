"""CachedJsonFile: one stat per read while unchanged; any replacement is noticed."""

from __future__ import annotations

import os

from backend.storage.cached import CachedJsonFile
from backend.storage.jsonstore import JsonFile, atomic_write_json


def test_same_size_same_mtime_replacement_is_noticed(tmp_path):
    path = tmp_path / "doc.json"
    atomic_write_json(path, {"v": "a"})
    cached = CachedJsonFile(path)
    assert cached.snapshot() == {"v": "a"}
    st = os.stat(path)
    atomic_write_json(path, {"v": "b"})  # same size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # and the same mtime: the inode still differs
    assert cached.snapshot() == {"v": "b"}
    assert cached.snapshot() == {"v": "b"} and cached.reloads == 2


def test_writes_through_update_and_deletion(tmp_path):
    path = tmp_path / "doc.json"
    cached = CachedJsonFile(path, lambda: {"n": 0})
    assert cached.snapshot() == {"n": 0}
    writer = JsonFile(path)  # another store object, as another process would hold
    for i in range(1, 4):
        with writer.update() as data:
            data["n"] = i
        assert cached.snapshot() == {"n": i}
    with cached.update() as data:  # read-modify-write reads the disk, not the cache
        data["n"] += 10
    assert writer.read() == {"n": 13} and cached.snapshot() == {"n": 13}
    path.unlink()
    assert cached.snapshot() == {"n": 0}


def test_in_place_edit_is_noticed(tmp_path):
    path = tmp_path / "doc.json"
    path.write_text('{"v": 1}')
    cached = CachedJsonFile(path)
    assert cached.snapshot() == {"v": 1}
    with open(path, "w") as fh:  # an editor writing in place: same inode, new size
        fh.write('{"v": 22}')
    assert cached.snapshot() == {"v": 22}
