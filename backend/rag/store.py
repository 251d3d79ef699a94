"""Dense vector stores behind one interface, always partitioned by user.

* ``FaissStore``: one ``IndexIDMap2(IndexFlatIP)`` (IVF when large) per user under
  ``indexes_path/<user_id>/``. A commit writes a generation: ``faiss.<g>.index`` (``faiss.write_index``),
  ``faiss.<g>.rows.npz`` (the row map: FAISS id -> chunk id, file id, as numpy arrays) and the
  sidecars, then atomically rewrites ``faiss.json``, the commit point that names the generation and
  every file of it, so a crash leaves the old or the new generation, never a mix. Writers take a
  cross-process file lock; readers reload when ``faiss.json`` changes on disk. No pickle.
  Format 1 (the row map inside ``faiss.json`` as JSON) still loads; the next commit rewrites it.
* ``ChromaStore``: a Chroma collection per user (``PersistentClient`` under ``indexes_path/chroma``,
  or ``HttpClient`` when ``settings.chroma_host`` is set), cosine space.

Vectors must be L2-normalised: scores are cosine similarities.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import threading
from dataclasses import dataclass, field
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
    """Vectors per user, plus *sidecar* files committed with them (the service's BM25 index)."""

    def add(
        self, user_id: str, chunk_ids: list[str], file_ids: list[str], vectors: np.ndarray,
        sidecars: dict[str, bytes] | None = None,
    ) -> None: ...

    def search(
        self, user_id: str, vector: np.ndarray, k: int, file_ids: set[str] | None = None
    ) -> list[tuple[str, float]]:
        """(chunk_id, cosine score) best first."""
        ...

    def delete_file(self, user_id: str, file_id: str, sidecars: dict[str, bytes] | None = None) -> int: ...

    def delete_user(self, user_id: str) -> None: ...

    def count(self, user_id: str) -> int: ...

    def vectors(self, user_id: str, chunk_ids: list[str]) -> dict[str, np.ndarray]: ...

    def sidecar(self, user_id: str, name: str) -> tuple[Any, bytes | None]:
        """(a stamp that changes with every commit, the bytes committed last under ``name``)."""
        ...


def _faiss() -> Any:
    """The faiss module (imported on first use; typed loosely: its SWIG API is wider than its stubs)."""
    import faiss

    return faiss


# --- FAISS -----------------------------------------------------------------------------------------

ANN_NPROBE_FRACTION = 1 / 16  # share of the IVF lists scanned per query (recall ≈ 0.95+ on MiniLM vectors)
META_FORMAT = 2  # 1: the row map inside faiss.json as {"<id>": [chunk_id, file_id]}; 2: faiss.<g>.rows.npz


@dataclass
class RowMap:
    """FAISS id -> (chunk id, file id) for every row, ids ascending (numpy: loads without parsing JSON)."""

    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    chunk_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.str_))
    file_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.str_))

    def __len__(self) -> int:
        return int(self.ids.size)

    @classmethod
    def from_json_rows(cls, rows: dict[str, list[str]]) -> RowMap:
        """The format-1 map (``{"<id>": [chunk_id, file_id]}`` in faiss.json)."""
        items = sorted((int(i), c, f) for i, (c, f) in rows.items())
        if not items:
            return cls()
        ids, chunks, files = zip(*items, strict=True)
        return cls(np.array(ids, dtype=np.int64), np.array(chunks, dtype=np.str_), np.array(files, dtype=np.str_))

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, ids=self.ids, chunk_ids=self.chunk_ids, file_ids=self.file_ids)
        return buffer.getvalue()

    @classmethod
    def read(cls, path: Path) -> RowMap:
        with np.load(path, allow_pickle=False) as npz:
            return cls(npz["ids"].astype(np.int64), npz["chunk_ids"], npz["file_ids"])

    def appended(self, ids: np.ndarray, chunk_ids: list[str], file_ids: list[str]) -> RowMap:
        """A new map with these rows after the others (ids larger than every id here)."""
        if not chunk_ids:
            return self
        return RowMap(np.concatenate([self.ids, ids.astype(np.int64)]),
                      np.concatenate([self.chunk_ids, np.array(chunk_ids, dtype=np.str_)]),
                      np.concatenate([self.file_ids, np.array(file_ids, dtype=np.str_)]))

    def without(self, ids: np.ndarray) -> RowMap:
        keep = ~np.isin(self.ids, ids)
        return RowMap(self.ids[keep], self.chunk_ids[keep], self.file_ids[keep])

    def ids_for_files(self, file_ids: set[str]) -> np.ndarray:
        if not file_ids or not len(self):
            return np.zeros(0, dtype=np.int64)
        return self.ids[np.isin(self.file_ids, np.array(sorted(file_ids), dtype=np.str_))]

    def chunks_of(self, ids: list[int]) -> list[str | None]:
        """The chunk id of each FAISS id (None for an id with no row)."""
        if not ids or not len(self):
            return [None] * len(ids)
        wanted = np.asarray(ids, dtype=np.int64)
        at = np.minimum(np.searchsorted(self.ids, wanted), len(self) - 1)
        found = self.ids[at] == wanted
        names = self.chunk_ids[at].tolist()
        return [name if ok else None for name, ok in zip(names, found.tolist(), strict=True)]


@dataclass
class _FaissState:
    stamp: tuple[int, int, int]  # (inode, mtime_ns, size) of faiss.json when loaded (a commit replaces the file)
    index: Any
    meta: dict[str, Any]  # {"format", "dim", "generation", "next_id", "kind", "sidecars", "files", "ivf_trained_on"}
    rows: RowMap = field(default_factory=RowMap)
    sidecars: dict[str, bytes] = field(default_factory=dict)  # files committed in this generation
    _by_chunk: dict[str, int] | None = None

    def ids_for_files(self, file_ids: set[str]) -> np.ndarray:
        return self.rows.ids_for_files(file_ids)

    def id_of_chunk(self) -> dict[str, int]:
        if self._by_chunk is None:
            self._by_chunk = dict(zip(self.rows.chunk_ids.tolist(), self.rows.ids.tolist(), strict=True))
        return self._by_chunk


def all_vectors(index: Any) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors) of every row of an ``IndexIDMap2(IndexFlatIP)`` or an ``IndexIVFFlat``."""
    faiss = _faiss()

    if isinstance(index, faiss.IndexIVFFlat):
        invlists = index.invlists
        ids_parts, vector_parts = [], []
        for list_no in range(index.nlist):
            size = invlists.list_size(list_no)
            if size == 0:
                continue
            ids_parts.append(faiss.rev_swig_ptr(invlists.get_ids(list_no), size).copy())
            codes = faiss.rev_swig_ptr(invlists.get_codes(list_no), size * invlists.code_size)
            vector_parts.append(np.frombuffer(codes.tobytes(), dtype=np.float32).reshape(size, index.d))
        if not ids_parts:
            return np.zeros(0, dtype=np.int64), np.zeros((0, index.d), dtype=np.float32)
        return np.concatenate(ids_parts).astype(np.int64), np.vstack(vector_parts)
    flat = faiss.downcast_index(index.index)
    ids = faiss.vector_to_array(index.id_map).astype(np.int64)
    vectors = faiss.vector_to_array(flat.codes).view(np.float32).reshape(-1, index.d)
    return ids, vectors.copy()


def build_ivf(ids: np.ndarray, vectors: np.ndarray) -> Any:
    """An ``IndexIVFFlat`` (inner product) over these rows: ~4·sqrt(n) lists, k-means on a sample."""
    faiss = _faiss()

    n, dim = vectors.shape
    nlist = int(max(16, min(4096, 4 * np.sqrt(n))))
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.max_points_per_centroid = 64  # train on a sample: seconds, not minutes, at 100k rows
    index.cp.seed = 1234
    index.train(np.ascontiguousarray(vectors))
    index.set_direct_map_type(faiss.DirectMap.Hashtable)  # remove_ids and reconstruct by id
    index.add_with_ids(np.ascontiguousarray(vectors), ids)
    index.own_fields = True
    quantizer.this.disown()
    return index


class FaissStore:
    """Exact search (``IndexFlatIP``) up to ``ann_min_vectors`` rows per user, IVF beyond.

    Every commit writes a new generation: the index, then the named *sidecar* files the caller
    passes (the service's BM25 index), then ``faiss.json`` naming that generation and its files.
    Readers load the index and sidecars of one generation together, so they are never out of step.
    """

    def __init__(self, root: Path, dim: int, ann_min_vectors: int = 0, search_threads: int = 1) -> None:
        self.root = Path(root)
        self.dim = dim
        self.ann_min_vectors = ann_min_vectors  # 0 = always exact
        self.search_threads = search_threads
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
        faiss = _faiss()

        index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
        meta = {"format": META_FORMAT, "dim": self.dim, "generation": 0, "next_id": 0, "kind": "flat",
                "sidecars": [], "files": []}
        return _FaissState((0, 0, 0), index, meta)

    def _sidecar_path(self, user_id: str, name: str, generation: int) -> Path:
        return self._dir(user_id) / f"{name}.{generation}.bin"

    @staticmethod
    def _index_name(generation: int) -> str:
        return f"faiss.{generation}.index"

    @staticmethod
    def _rows_name(generation: int) -> str:
        return f"faiss.{generation}.rows.npz"

    def _generation_files(self, meta: dict[str, Any]) -> list[str]:
        """Every file of the generation ``meta`` commits (format 1 had no row-map file)."""
        generation = int(meta["generation"])
        files = [self._index_name(generation)]
        if int(meta.get("format", 1)) >= 2:
            files.append(self._rows_name(generation))
        return files + [f"{name}.{generation}.bin" for name in meta.get("sidecars", [])]

    @staticmethod
    def _read_index(path: Path) -> Any:
        """``faiss.read_index`` straight from the file (one copy; deserialising from numpy bytes cost two)."""
        try:
            return _faiss().read_index(str(path))
        except RuntimeError:
            if not path.exists():  # a commit in another process unlinked it: the caller reloads
                raise FileNotFoundError(path) from None
            raise

    def _load(self, user_id: str) -> _FaissState:
        """The current state, reloaded from disk if another writer changed it."""
        meta_path = self._meta_path(user_id)
        for _attempt in range(5):  # a commit in another process may unlink the files we were about to read
            stamp = self._stamp(meta_path)
            with self._mutex:
                cached = self._cache.get(user_id)
                if cached is not None and stamp == cached.stamp:
                    return cached
            if stamp is None:
                state = self._empty()
                break
            meta = read_json(meta_path)
            generation = int(meta["generation"])
            directory = self._dir(user_id)
            try:
                index = self._read_index(directory / self._index_name(generation))
                if int(meta.get("format", 1)) >= 2:
                    rows = RowMap.read(directory / self._rows_name(generation))
                else:  # format 1: migrated in memory, written as format 2 by the next commit
                    rows = RowMap.from_json_rows(meta.pop("rows", {}))
                    meta["files"] = self._generation_files(meta)
                sidecars = {
                    name: self._sidecar_path(user_id, name, generation).read_bytes() for name in meta.get("sidecars", [])
                }
            except FileNotFoundError:
                continue
            state = _FaissState(stamp, index, meta, rows, sidecars)
            break
        else:
            raise ServiceUnavailableError("The vector index is being rewritten; try again.", retry_after=1)
        with self._mutex:
            self._cache[user_id] = state
        return state

    def _commit(self, user_id: str, state: _FaissState, sidecars: dict[str, bytes] | None) -> None:
        faiss = _faiss()

        directory = self._dir(user_id)
        old_files = self._generation_files(state.meta) if int(state.meta["generation"]) else []
        generation = int(state.meta["generation"]) + 1
        state.meta["generation"], state.meta["format"] = generation, META_FORMAT
        atomic_write_bytes(directory / self._index_name(generation), faiss.serialize_index(state.index).tobytes())
        atomic_write_bytes(directory / self._rows_name(generation), state.rows.to_bytes())
        sidecars = dict(sidecars or {})
        for name, data in sidecars.items():
            if not _SIDECAR_RE.fullmatch(name):
                raise ValueError(f"bad sidecar name {name!r}")
            atomic_write_bytes(self._sidecar_path(user_id, name, generation), data)
        state.meta["sidecars"] = sorted(sidecars)
        state.meta["files"] = self._generation_files(state.meta)
        atomic_write_json(self._meta_path(user_id), state.meta)  # the commit point
        for name in old_files:
            (directory / name).unlink(missing_ok=True)
        state.stamp = self._stamp(self._meta_path(user_id)) or (0, 0, 0)
        state.sidecars = sidecars
        state._by_chunk = None
        with self._mutex:
            self._cache[user_id] = state

    def _lock(self, user_id: str) -> Any:
        return file_lock(self._dir(user_id) / "faiss")

    def _maybe_switch_to_ivf(self, state: _FaissState) -> None:
        """Exact below ``ann_min_vectors``; IVF at or above it, retrained when the user has grown 4×."""
        n = int(state.index.ntotal)
        if not self.ann_min_vectors or n < self.ann_min_vectors:
            return
        trained_on = int(state.meta.get("ivf_trained_on", 0))
        if state.meta.get("kind") == "ivf" and n < 4 * trained_on:
            return
        ids, vectors = all_vectors(state.index)
        state.index = build_ivf(ids, vectors)
        state.meta["kind"], state.meta["ivf_trained_on"] = "ivf", n

    def add(
        self, user_id: str, chunk_ids: list[str], file_ids: list[str], vectors: np.ndarray,
        sidecars: dict[str, bytes] | None = None,
    ) -> None:
        if len(chunk_ids) == 0 and sidecars is None:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        if vectors.shape != (len(chunk_ids), self.dim):
            raise ValueError(f"expected {(len(chunk_ids), self.dim)} vectors, got {vectors.shape}")
        with self._lock(user_id):
            state = self._load(user_id)
            start = int(state.meta["next_id"])
            ids = np.arange(start, start + len(chunk_ids), dtype=np.int64)
            if len(chunk_ids):
                state.index.add_with_ids(vectors, ids)
            state.rows = state.rows.appended(ids, list(chunk_ids), list(file_ids))
            state.meta["next_id"] = start + len(chunk_ids)
            self._maybe_switch_to_ivf(state)
            self._commit(user_id, state, sidecars)

    def _params(self, state: _FaissState, selector: Any) -> Any:
        faiss = _faiss()

        if state.meta.get("kind") == "ivf":
            nprobe = max(1, int(round(state.index.nlist * ANN_NPROBE_FRACTION)))
            return faiss.SearchParametersIVF(sel=selector, nprobe=nprobe)
        return faiss.SearchParameters(sel=selector) if selector is not None else None

    def search(
        self, user_id: str, vector: np.ndarray, k: int, file_ids: set[str] | None = None
    ) -> list[tuple[str, float]]:
        faiss = _faiss()

        state = self._load(user_id)
        if state.index.ntotal == 0 or k <= 0:
            return []
        selector = None
        if file_ids is not None:
            allowed = state.ids_for_files(file_ids)
            if allowed.size == 0:
                return []
            selector = faiss.IDSelectorBatch(allowed)
        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, -1)
        if self.search_threads:
            faiss.omp_set_num_threads(self.search_threads)  # one query: threads only add wake-up latency
        scores, ids = state.index.search(query, min(k, state.index.ntotal), params=self._params(state, selector))
        found = [(score, int_id) for score, int_id in zip(scores[0].tolist(), ids[0].tolist(), strict=False) if int_id >= 0]
        chunk_ids = state.rows.chunks_of([int_id for _, int_id in found])
        return [(chunk_id, float(score)) for (score, _), chunk_id in zip(found, chunk_ids, strict=True) if chunk_id is not None]

    def vectors(self, user_id: str, chunk_ids: list[str]) -> dict[str, np.ndarray]:
        """Stored vectors of those ``chunk_ids`` this user has (for re-using unchanged chunks)."""
        state = self._load(user_id)
        by_chunk = state.id_of_chunk()
        out = {}
        for chunk_id in chunk_ids:
            int_id = by_chunk.get(chunk_id)
            if int_id is not None:
                out[chunk_id] = np.asarray(state.index.reconstruct(int_id), dtype=np.float32)
        return out

    def sidecar(self, user_id: str, name: str) -> tuple[tuple[int, int, int], bytes | None]:
        """(generation stamp, bytes) of a file committed with the current index (None if it has none)."""
        state = self._load(user_id)
        return state.stamp, state.sidecars.get(name)

    def delete_file(self, user_id: str, file_id: str, sidecars: dict[str, bytes] | None = None) -> int:
        faiss = _faiss()

        with self._lock(user_id):
            state = self._load(user_id)
            ids = state.ids_for_files({file_id})
            if ids.size == 0 and sidecars is None:
                return 0
            removed = 0
            if ids.size:
                ids = np.ascontiguousarray(ids, dtype=np.int64)
                # IVF's hashtable direct map removes only through an IDSelectorArray
                selector = faiss.IDSelectorArray(ids.size, faiss.swig_ptr(ids))
                removed = int(state.index.remove_ids(selector))
            state.rows = state.rows.without(ids)
            self._commit(user_id, state, sidecars)
            return removed

    def delete_user(self, user_id: str) -> None:
        directory = self._dir(user_id)
        with self._lock(user_id):
            for pattern in ("faiss.*", "*.bin"):
                for path in directory.glob(pattern):
                    if not path.name.endswith(".lock"):
                        path.unlink(missing_ok=True)
        with self._mutex:
            self._cache.pop(user_id, None)

    def count(self, user_id: str) -> int:
        return int(self._load(user_id).index.ntotal)


_SIDECAR_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


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

    def _sidecar_dir(self, user_id: str) -> Path:
        return self.settings.indexes_path / user_dir_name(user_id) / "chroma-sidecars"

    def _write_sidecars(self, user_id: str, sidecars: dict[str, bytes] | None) -> None:
        """Chroma cannot commit our files with its own: they get a generation pointer of their own."""
        if sidecars is None:
            return
        directory = self._sidecar_dir(user_id)
        with file_lock(directory / "sidecars"):
            meta = read_json(directory / "sidecars.json", {"generation": 0, "names": []})
            generation = int(meta["generation"]) + 1
            for name, data in sidecars.items():
                atomic_write_bytes(directory / f"{name}.{generation}.bin", data)
            atomic_write_json(directory / "sidecars.json", {"generation": generation, "names": sorted(sidecars)})
            for name in meta["names"]:
                (directory / f"{name}.{meta['generation']}.bin").unlink(missing_ok=True)

    def sidecar(self, user_id: str, name: str) -> tuple[Any, bytes | None]:
        directory = self._sidecar_dir(user_id)
        meta = read_json(directory / "sidecars.json", None)
        if meta is None or name not in meta["names"]:
            return None, None
        try:
            return int(meta["generation"]), (directory / f"{name}.{int(meta['generation'])}.bin").read_bytes()
        except FileNotFoundError:
            return None, None

    def vectors(self, user_id: str, chunk_ids: list[str]) -> dict[str, np.ndarray]:
        collection = self._collection(user_id, create=False)
        if collection is None or not chunk_ids:
            return {}
        got = collection.get(ids=chunk_ids, include=["embeddings"])
        return {cid: np.asarray(v, dtype=np.float32) for cid, v in zip(got["ids"], got["embeddings"], strict=False)}

    def add(
        self, user_id: str, chunk_ids: list[str], file_ids: list[str], vectors: np.ndarray,
        sidecars: dict[str, bytes] | None = None,
    ) -> None:
        if not chunk_ids:
            self._write_sidecars(user_id, sidecars)
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
        self._write_sidecars(user_id, sidecars)

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

    def delete_file(self, user_id: str, file_id: str, sidecars: dict[str, bytes] | None = None) -> int:
        collection = self._collection(user_id, create=False)
        ids = [] if collection is None else collection.get(where={"file_id": file_id}, include=[])["ids"]
        if ids:
            collection.delete(ids=ids)
        self._write_sidecars(user_id, sidecars)
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
    return FaissStore(settings.indexes_path, dim, ann_min_vectors=settings.rag_ann_min_vectors)


def remove_tree(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path, ignore_errors=True)
    with contextlib.suppress(OSError):
        os.rmdir(path)
