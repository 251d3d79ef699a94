"""Vector stores: FAISS and Chroma (embedded and over HTTP) behave the same through one interface."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from backend.errors import BadRequestError
from backend.rag.store import ChromaStore, FaissStore, VectorStore
from tests.rag.conftest import make_rag_settings

DIM = 8


def _vectors(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def exercise_store(store: VectorStore) -> None:
    a, b = _vectors(3, 1), _vectors(2, 2)
    store.add("u_alice", ["file_a:0", "file_a:1", "file_a:2"], ["file_a"] * 3, a)
    store.add("u_alice", ["file_b:0", "file_b:1"], ["file_b"] * 2, b)
    store.add("u_bob", ["file_c:0"], ["file_c"], _vectors(1, 3))
    assert store.count("u_alice") == 5 and store.count("u_bob") == 1

    top = store.search("u_alice", a[1], 3)
    assert top[0][0] == "file_a:1" and top[0][1] == pytest.approx(1.0, abs=1e-3)
    assert all(cid.startswith(("file_a", "file_b")) for cid, _ in top)  # never bob's
    only_b = store.search("u_alice", a[1], 5, {"file_b"})
    assert {cid for cid, _ in only_b} == {"file_b:0", "file_b:1"}
    assert store.search("u_alice", a[1], 5, {"file_c"}) == []  # bob's file id is not a key into alice's data

    assert store.delete_file("u_alice", "file_a") == 3
    assert store.count("u_alice") == 2
    assert all(cid.startswith("file_b") for cid, _ in store.search("u_alice", a[1], 5))
    store.delete_user("u_alice")
    assert store.count("u_alice") == 0 and store.search("u_alice", a[1], 5) == []
    assert store.count("u_bob") == 1


def test_faiss_store_roundtrip_and_persistence(tmp_path: Path) -> None:
    exercise_store(FaissStore(tmp_path, DIM))
    store = FaissStore(tmp_path, DIM)
    store.add("u_carol", ["file_x:0", "file_x:1"], ["file_x"] * 2, _vectors(2, 4))
    reopened = FaissStore(tmp_path, DIM)  # another process would see the committed index
    assert reopened.count("u_carol") == 2
    assert sorted(p.name for p in (tmp_path / "u_carol").iterdir() if "lock" not in p.name) == [
        "faiss.1.index", "faiss.1.rows.npz", "faiss.json"
    ]
    # no pickle: the metadata is plain JSON
    assert (tmp_path / "u_carol" / "faiss.json").read_text().startswith("{")


def test_faiss_sees_other_writers(tmp_path: Path) -> None:
    reader, writer = FaissStore(tmp_path, DIM), FaissStore(tmp_path, DIM)
    assert reader.count("u_dave") == 0
    writer.add("u_dave", ["file_y:0"], ["file_y"], _vectors(1, 5))
    assert reader.count("u_dave") == 1


def test_user_ids_cannot_escape_the_index_dir(tmp_path: Path) -> None:
    store = FaissStore(tmp_path, DIM)
    for bad in ("../x", "a/b", "", ".hidden"):
        with pytest.raises(BadRequestError):
            store.count(bad)


def test_chroma_persistent_store(tmp_path: Path) -> None:
    settings = make_rag_settings(tmp_path, vector_store="chroma")
    exercise_store(ChromaStore(settings))
    assert (settings.indexes_path / "chroma").is_dir()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def chroma_server(tmp_path: Path) -> Iterator[int]:
    cli = shutil.which("chroma") or str(Path(sys.executable).with_name("chroma"))
    if not Path(cli).exists():
        pytest.skip("the chroma CLI is not installed")
    port = _free_port()
    proc = subprocess.Popen(
        [cli, "run", "--path", str(tmp_path / "chroma-server"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            pytest.fail("chroma server did not start")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_chroma_http_store(tmp_path: Path, chroma_server: int) -> None:
    settings = make_rag_settings(tmp_path, vector_store="chroma", chroma_host="127.0.0.1", chroma_port=chroma_server)
    exercise_store(ChromaStore(settings))
    assert not (settings.indexes_path / "chroma").exists()  # everything went to the server
