"""Dense vector stores behind one interface, always partitioned by user.

* ``FaissStore``: one ``IndexIDMap2(IndexFlatIP)`` per user under ``indexes_path/<user_id>/``.
  The index is saved with ``faiss.serialize_index`` to a generation-numbered file and committed
  by atomically rewriting ``faiss.json`` (its metadata, which names the live generation), so a
  crash leaves the old or the new index, never a mix. Writers take a cross-process file lock;
  readers reload when ``faiss.json`` changes on disk. No pickle.
* ``ChromaStore``: a Chroma collection per user (``PersistentClient`` under ``indexes_path/chroma``,
  or ``HttpClient`` when ``settings.chroma_host`` is set), cosine space.

Vectors must be L2-normalised: scores are cosine similarities.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from backend.errors import BadRequestError, ServiceUnavailableError
from backend.settings import Settings
from backend.storage.jsonstore import (
    atomic_write_bytes,
    atomic_write_json,
    file_lock,
    read_json,
)

_USER_DIR_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def user_dir_name(user_id: str) -> str:
    """``user_id`` if it is safe as one path component, else a 400 (never a path from outside)."""
    if not isinstance(user_id, str) or not _USER_DIR_RE.fullmatch(user_id):
        raise BadRequestError("Invalid user id.", code="invalid_user")
    return user_id


class VectorStore(Protocol):
    def add(self, user_id: str, chunk_ids: list[str], file_ids: list[str], vectors: np.ndarray) -> None: ...

    def search(
        self, user_id: str, vector: np.ndarray, k: int, file_ids: set[str] | None = None
    ) -> list[tuple[str, float]]:
        """(chunk_id, cosine score) best first."""
        ...

    def delete_file(self, user_id: str, file_id: str) -> int: ...

    def delete_user(self, user_id: str) -> None: ...

    def count(self, user_id: str) -> int: ...


# --- FAISS -----------------------------------------------------------------------------------------


@dataclass
class _FaissState:
    stamp: tuple[int, int, int]  # (inode, mtime_ns, size) of faiss.json when loaded (a commit replaces the file)
    index: Any
    meta: dict[str, Any]  # {"dim", "generation", "next_id", "rows": {int_id: [chunk_id, file_id]}}

    def ids_for_files(self, file_ids: set[str]) -> np.ndarray:
        return np.array([int(i) for i, (_, f) in self.meta["rows"].items() if f in file_ids], dtype=np.int64)


class FaissStore:
    def __init__(self, root: Path, dim: int) -> None:
        self.root = Path(root)
        self.dim = dim
        self._cache: dict[str, _FaissState] = {}
        self._mutex = threading.Lock()

    def _dir(self, user_id: str) -> Path:
        return self.root / user_dir_name(user_id)

    def _meta_path(self, user_id: str) -> Path:
        return self._dir(user_id) / "faiss.json"

    @staticmethod
    def _stamp(path: Path) -> tuple[int, int, int] | None:
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _empty(self) -> _FaissState:
        import faiss

        index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
        return _FaissState((0, 0, 0), index, {"dim": self.dim, "generation": 0, "next_id": 0, "rows": {}})

    def _load(self, user_id: str) -> _FaissState:
        """The current state, reloaded from disk if another writer changed it."""
        import faiss

        meta_path = self._meta_path(user_id)
        stamp = self._stamp(meta_path)
        with self._mutex:
            cached = self._cache.get(user_id)
            if cached is not None and stamp == cached.stamp:
                return cached
        if stamp is None:
            state = self._empty()
        else:
            meta = read_json(meta_path)
            index_path = self._dir(user_id) / f"faiss.{int(meta['generation'])}.index"
            raw = np.fromfile(index_path, dtype=np.uint8)
            index = faiss.deserialize_index(raw)
            state = _FaissState(stamp, index, meta)
        with self._mutex:
            self._cache[user_id] = state
        return state

    def _commit(self, user_id: str, state: _FaissState) -> None:
        import faiss

        directory = self._dir(user_id)
        old_generation = int(state.meta["generation"])
        state.meta["generation"] = old_generation + 1
        new_index = directory / f"faiss.{state.meta['generation']}.index"
        atomic_write_bytes(new_index, faiss.serialize_index(state.index).tobytes())
        atomic_write_json(self._meta_path(user_id), state.meta)  # the commit point
        with contextlib.suppress(FileNotFoundError):
            (directory / f"faiss.{old_generation}.index").unlink()
        state.stamp = self._stamp(self._meta_path(user_id)) or (0, 0, 0)
        with self._mutex:
            self._cache[user_id] = state

    def _lock(self, user_id: str) -> Any:
        return file_lock(self._dir(user_id) / "faiss")

    def add(self, user_id: str, chunk_ids: list[str], file_ids: list[str], vectors: np.ndarray) -> None:
        if len(chunk_ids) == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape != (len(chunk_ids), self.dim):
            raise ValueError(f"expected {(len(chunk_ids), self.dim)} vectors, got {vectors.shape}")
        with self._lock(user_id):
            state = self._load(user_id)
            start = int(state.meta["next_id"])
            ids = np.arange(start, start + len(chunk_ids), dtype=np.int64)
            state.index.add_with_ids(vectors, ids)
            for i, chunk_id, file_id in zip(ids.tolist(), chunk_ids, file_ids, strict=False):
                state.meta["rows"][str(i)] = [chunk_id, file_id]
            state.meta["next_id"] = start + len(chunk_ids)
            self._commit(user_id, state)

    def search(
        self, user_id: str, vector: np.ndarray, k: int, file_ids: set[str] | None = None
    ) -> list[tuple[str, float]]:
        import faiss

        state = self._load(user_id)
        if state.index.ntotal == 0 or k <= 0:
            return []
        params = None
        if file_ids is not None:
            allowed = state.ids_for_files(file_ids)
            if allowed.size == 0:
                return []
            params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(allowed))
        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, -1)
        scores, ids = state.index.search(query, min(k, state.index.ntotal), params=params)
        out = []
        for score, int_id in zip(scores[0].tolist(), ids[0].tolist(), strict=False):
            if int_id < 0:
                continue
            row = state.meta["rows"].get(str(int_id))
            if row is not None:
                out.append((row[0], float(score)))
        return out

    def delete_file(self, user_id: str, file_id: str) -> int:
        import faiss

        with self._lock(user_id):
            state = self._load(user_id)
            ids = state.ids_for_files({file_id})
            if ids.size == 0:
                return 0
            removed = int(state.index.remove_ids(faiss.IDSelectorBatch(ids)))
            for i in ids.tolist():
                state.meta["rows"].pop(str(i), None)
            self._commit(user_id, state)
            return removed

    def delete_user(self, user_id: str) -> None:
        directory = self._dir(user_id)
        with self._lock(user_id):
            for path in directory.glob("faiss.*"):
                if not path.name.endswith(".lock"):
                    path.unlink(missing_ok=True)
        with self._mutex:
            self._cache.pop(user_id, None)

    def count(self, user_id: str) -> int:
        return int(self._load(user_id).index.ntotal)


# --- Chroma ----------------------------------------------------------------------------------------


class ChromaStore:
    """A Chroma collection per user; embeddings are supplied by us (no embedding function)."""

    MAX_BATCH = 1000

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: Any = None
        self._lock = threading.Lock()

    def _get_client(self) -> Any:
        with self._lock:
            if self._client is None:
                import chromadb
                from chromadb.config import Settings as ChromaSettings

                chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
                if self.settings.chroma_host:
                    try:
                        self._client = chromadb.HttpClient(
                            host=self.settings.chroma_host, port=self.settings.chroma_port, settings=chroma_settings
                        )
                    except Exception as exc:
                        raise ServiceUnavailableError(
                            f"Chroma is not reachable at {self.settings.chroma_host}:{self.settings.chroma_port}."
                        ) from exc
                else:
                    path = self.settings.indexes_path / "chroma"
                    path.mkdir(parents=True, exist_ok=True)
                    self._client = chromadb.PersistentClient(path=str(path), settings=chroma_settings)
            return self._client

    @staticmethod
    def _name(user_id: str) -> str:
        return f"rag-{user_dir_name(user_id)}"

    def _collection(self, user_id: str, create: bool = True) -> Any:
        client = self._get_client()
        if create:
            return client.get_or_create_collection(
                self._name(user_id), embedding_function=None, configuration={"hnsw": {"space": "cosine"}}
            )
        try:
            return client.get_collection(self._name(user_id), embedding_function=None)
        except Exception:  # noqa: BLE001 - chroma raises NotFoundError/ValueError by version
            return None

    def add(self, user_id: str, chunk_ids: list[str], file_ids: list[str], vectors: np.ndarray) -> None:
        if not chunk_ids:
            return
        collection = self._collection(user_id)
        vectors = np.asarray(vectors, dtype=np.float32)
        for begin in range(0, len(chunk_ids), self.MAX_BATCH):
            end = begin + self.MAX_BATCH
            collection.add(
                ids=chunk_ids[begin:end],
                embeddings=vectors[begin:end],
                metadatas=[{"file_id": f} for f in file_ids[begin:end]],
            )

    def search(
        self, user_id: str, vector: np.ndarray, k: int, file_ids: set[str] | None = None
    ) -> list[tuple[str, float]]:
        collection = self._collection(user_id, create=False)
        if collection is None or k <= 0:
            return []
        if file_ids is not None and not file_ids:
            return []
        total = collection.count()
        if total == 0:
            return []
        where = {"file_id": {"$in": sorted(file_ids)}} if file_ids is not None else None
        result = collection.query(
            query_embeddings=np.asarray(vector, dtype=np.float32).reshape(1, -1),
            n_results=min(k, total),
            where=where,
            include=["distances"],
        )
        return [(cid, 1.0 - float(d)) for cid, d in zip(result["ids"][0], result["distances"][0], strict=False)]

    def delete_file(self, user_id: str, file_id: str) -> int:
        collection = self._collection(user_id, create=False)
        if collection is None:
            return 0
        ids = collection.get(where={"file_id": file_id}, include=[])["ids"]
        if ids:
            collection.delete(ids=ids)
        return len(ids)

    def delete_user(self, user_id: str) -> None:
        if self._collection(user_id, create=False) is not None:
            self._get_client().delete_collection(self._name(user_id))

    def count(self, user_id: str) -> int:
        collection = self._collection(user_id, create=False)
        return 0 if collection is None else int(collection.count())


def build_store(settings: Settings, dim: int) -> VectorStore:
    if settings.vector_store == "chroma":
        return ChromaStore(settings)
    return FaissStore(settings.indexes_path, dim)


def remove_tree(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path, ignore_errors=True)
    with contextlib.suppress(OSError):
        os.rmdir(path)
