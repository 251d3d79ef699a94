"""The RAG service: ingest, search, list, fetch and delete a user's documents.

Layout (nothing here is built from a client-supplied name):

* ``uploads_path/<user_id>/<file_id>_<safe_name>``: the uploaded bytes.
* ``indexes_path/<user_id>/documents.json``: document metadata (the commit point of an ingestion).
* ``indexes_path/<user_id>/chunks/<file_id>.json``: chunk text and spans.
* the vector store (``backend.rag.store``): FAISS files under ``indexes_path/<user_id>/`` or Chroma,
  with the BM25 index (``backend.rag.lexical``) committed beside the vectors in the same generation
  (``bm25.<generation>.bin``), so a restart loads it instead of re-tokenising every chunk.

Chunks whose text the user already has indexed (same SHA-256) reuse their stored vector instead of
being embedded again; parsing of the next file overlaps embedding of the current one.

Every public method is async and runs CPU/disk work in a thread. Writers for one user are
serialised by an asyncio lock (this process) and a file lock (other processes).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from backend.errors import (
    APIError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    ServiceUnavailableError,
    UnprocessableError,
)
from backend.rag.chunking import Chunk
from backend.rag.embeddings import Embedder, build_embedder
from backend.rag.lexical import LexicalIndex, reciprocal_rank_fusion
from backend.rag.loaders import ParseLimits, detect_kind, safe_filename
from backend.rag.parse_worker import get_pool
from backend.rag.store import VectorStore, build_store, remove_tree, user_dir_name
from backend.rag.types import Hit
from backend.settings import Settings
from backend.storage.ids import new_id, require_id
from backend.storage.jsonstore import (
    JsonFile,
    atomic_write_bytes,
    atomic_write_json,
    file_lock,
    read_json,
)

log = logging.getLogger("backend.rag.service")


def check_quota(settings: Settings, usage: dict[str, int], new_files: int, new_bytes: int) -> None:
    """403 with a clear message when ``new_files``/``new_bytes`` more would pass the user's quota (0 = none)."""
    max_docs, max_bytes = settings.rag_max_documents_per_user, settings.rag_max_bytes_per_user
    if max_docs and usage["documents"] + new_files > max_docs:
        raise PermissionDeniedError(
            f"Document quota reached: you store {usage['documents']} of at most {max_docs} documents. "
            "Delete some before uploading more.",
            param="files",
            code="document_quota_exceeded",
        )
    if max_bytes and usage["bytes"] + new_bytes > max_bytes:
        raise PermissionDeniedError(
            f"Storage quota reached: this upload would take your documents to {usage['bytes'] + new_bytes} bytes; "
            f"the limit is {max_bytes} bytes. Delete some documents first.",
            param="files",
            code="storage_quota_exceeded",
        )

SearchMode = Literal["hybrid", "dense", "bm25"]
LEXICAL_SIDECAR = "bm25"  # name of the BM25 index file in the vector store's generation
CHUNK_FILES_CACHED = 256  # documents' chunk lists kept in memory for building hits
ProgressFn = Callable[[str, float], None]


@dataclass
class IngestItem:
    filename: str
    data: bytes | Path
    content_type: str | None = None


@dataclass
class _Prepared:
    file_id: str
    filename: str
    data: bytes
    content_type: str
    kind: str
    pages: int | None
    chars: int
    chunks: list[Chunk]


class RagService:
    def __init__(self, settings: Settings, embedder: Embedder | None = None, store: VectorStore | None = None) -> None:
        """``embedder`` and ``store`` default to the configured ones, built on first use."""
        self.settings = settings
        self._embedder: Embedder | None = embedder
        self._store: VectorStore | None = store
        self._init_lock = threading.Lock()
        self._lexical: dict[str, tuple[Any, LexicalIndex]] = {}  # user -> (store stamp, index)
        self._catalogs: dict[str, tuple[Any, dict[str, dict[str, Any]]]] = {}  # user -> (stamp, documents)
        self._chunk_files: OrderedDict[tuple[str, str], list[dict[str, Any]]] = OrderedDict()  # LRU
        self._corpus_lock = threading.Lock()
        self._user_locks: dict[str, asyncio.Lock] = {}
        # ingestion (parsing, embedding) gets threads of its own: a burst of uploads waits here
        # instead of filling the default executor that logins (bcrypt) and searches use
        self._ingest_pending = 0  # ingestions waiting or running (event-loop side only)
        self._ingest_executor = ThreadPoolExecutor(
            max_workers=max(1, settings.rag_ingest_workers), thread_name_prefix="rag-ingest"
        )

    # --- lazily built parts ---------------------------------------------------------------------

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            with self._init_lock:
                if self._embedder is None:
                    self._embedder = build_embedder(self.settings)
        return self._embedder

    @property
    def store(self) -> VectorStore:
        if self._store is None:
            dim = self.embedder.dim
            with self._init_lock:
                if self._store is None:
                    self._store = build_store(self.settings, dim)
        return self._store

    async def aclose(self) -> None:
        """On shutdown (after the app drained its ingestion jobs): stop the parse workers."""
        get_pool().close()  # workers restart lazily if another service instance parses later
        self._ingest_executor.shutdown(wait=False, cancel_futures=True)

    def warm_up(self) -> None:
        """Load the embedding model now (call from a start-up task to keep the first upload fast)."""
        self.embedder.embed(["warm up"])

    # --- paths ---------------------------------------------------------------------------------------

    def _index_dir(self, user_id: str) -> Path:
        return self.settings.indexes_path / user_dir_name(user_id)

    def _upload_dir(self, user_id: str) -> Path:
        return self.settings.uploads_path / user_dir_name(user_id)

    def _catalog(self, user_id: str) -> JsonFile:
        return JsonFile(self._index_dir(user_id) / "documents.json", lambda: {"documents": {}})

    def _chunk_path(self, user_id: str, file_id: str) -> Path:
        return self._index_dir(user_id) / "chunks" / f"{require_id(file_id, 'file', what='document')}.json"

    def _user_lock(self, user_id: str) -> asyncio.Lock:
        lock = self._user_locks.get(user_id)
        if lock is None:
            lock = self._user_locks.setdefault(user_id, asyncio.Lock())
        return lock

    def _documents(self, user_id: str) -> dict[str, dict[str, Any]]:
        """The user's catalog, re-read only when ``documents.json`` was replaced (atomic writes)."""
        path = self._index_dir(user_id) / "documents.json"
        try:
            st = path.stat()
            stamp: Any = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            return {}
        with self._corpus_lock:
            cached = self._catalogs.get(user_id)
        if cached is not None and cached[0] == stamp:
            return dict(cached[1])
        docs: dict[str, dict[str, Any]] = self._catalog(user_id).read().get("documents", {})
        with self._corpus_lock:
            self._catalogs[user_id] = (stamp, docs)
        return dict(docs)

    # --- ingestion -------------------------------------------------------------------------------------

    def _limits(self) -> ParseLimits:
        return ParseLimits(
            self.settings.max_pdf_pages,
            self.settings.max_docx_uncompressed_bytes,
            max_chars=self.settings.rag_max_chars_per_document,
            max_chunks=self.settings.rag_max_chunks_per_document,
        )

    def usage(self, user_id: str) -> dict[str, int]:
        """What one user stores now: documents and bytes (blocking; reads the catalog)."""
        docs = self._documents(user_id)
        return {"documents": len(docs), "bytes": sum(int(r.get("size", 0)) for r in docs.values())}

    def check_quota(self, user_id: str, new_files: int, new_bytes: int) -> None:
        """Refuse (403) an upload that would take the user past the document or storage quota."""
        check_quota(self.settings, self.usage(user_id), new_files, new_bytes)

    def _prepare(self, item: IngestItem) -> _Prepared:
        data = item.data.read_bytes() if isinstance(item.data, Path) else bytes(item.data)
        filename = safe_filename(item.filename)
        if len(data) > self.settings.max_upload_bytes:
            raise PayloadTooLargeError(
                f"'{filename}' is {len(data)} bytes; the limit is {self.settings.max_upload_bytes} bytes.",
                param="files",
            )
        kind = detect_kind(filename, item.content_type, data)
        parsed = get_pool().parse_chunks(
            data, filename, kind, self._limits(), self.settings.parse_timeout_s,
            self.settings.chunk_size, self.settings.chunk_overlap,
        )
        file_id = new_id("file")
        chunks = [
            Chunk(f"{file_id}:{n}", file_id, text, page, start, end)
            for n, (text, page, start, end) in enumerate(parsed.chunks)
        ]
        if not chunks:
            raise UnprocessableError(f"No text could be extracted from '{filename}'.", code="no_text")
        content_type = (item.content_type or "application/octet-stream").split(";")[0].strip()[:100]
        return _Prepared(file_id, filename, data, content_type, kind, parsed.page_count, parsed.char_count, chunks)

    def _commit(self, user_id: str, prepared: list[_Prepared], vectors: np.ndarray) -> list[dict[str, Any]]:
        index_dir, upload_dir = self._index_dir(user_id), self._upload_dir(user_id)
        records = []
        with file_lock(index_dir / "ingest"):
            all_ids: list[str] = []
            all_files: list[str] = []
            lexical = self._lexical_index(user_id).copy()  # searches keep using the committed one
            for p in prepared:
                stored_name = f"{p.file_id}_{p.filename}"
                atomic_write_bytes(upload_dir / stored_name, p.data)
                atomic_write_json(self._chunk_path(user_id, p.file_id), [c.to_dict() for c in p.chunks])
                all_ids.extend(c.chunk_id for c in p.chunks)
                all_files.extend(p.file_id for _ in p.chunks)
                lexical.add([p.file_id] * len(p.chunks), [c.chunk_id for c in p.chunks], [c.text for c in p.chunks])
                records.append({
                    "file_id": p.file_id,
                    "doc_id": "doc_" + hashlib.sha256(p.data).hexdigest()[:32],
                    "filename": p.filename,
                    "stored_name": stored_name,
                    "size": len(p.data),
                    "content_type": p.content_type,
                    "kind": p.kind,
                    "pages": p.pages,
                    "chunks": len(p.chunks),
                    "chars": p.chars,
                    "embedding_model": self.embedder.name,
                    "created_at": int(time.time()),
                })
            # vectors and BM25 in one generation; then the catalog makes the documents visible
            self.store.add(user_id, all_ids, all_files, vectors, sidecars={LEXICAL_SIDECAR: lexical.to_bytes()})
            with self._catalog(user_id).update() as catalog:  # the commit point: now it is visible
                docs = catalog.setdefault("documents", {})
                for record in records:
                    docs[record["file_id"]] = record
        return records

    def _embed_chunks(self, user_id: str, chunks: list[Chunk], known: dict[str, str]) -> tuple[np.ndarray, int]:
        """Vectors of ``chunks``: stored ones for texts the user already has (``known``: digest ->
        chunk id), embedded ones for the rest. Returns (vectors, how many were embedded)."""
        digests = [LexicalIndex.digest(c.text) for c in chunks]
        reuse = {d: known[d] for d in digests if d in known}
        stored = self.store.vectors(user_id, list(dict.fromkeys(reuse.values()))) if reuse else {}
        vectors = np.zeros((len(chunks), self.embedder.dim), dtype=np.float32)
        todo: dict[str, list[int]] = {}  # digest -> rows (a text repeated in this upload is embedded once)
        for row, digest in enumerate(digests):
            vector = stored.get(reuse.get(digest, ""))
            if vector is not None and vector.shape == (self.embedder.dim,):
                vectors[row] = vector
            else:
                todo.setdefault(digest, []).append(row)
        if todo:
            rows = [rs[0] for rs in todo.values()]
            fresh = self.embedder.embed([chunks[r].text for r in rows])
            for vector, rows_of_text in zip(fresh, todo.values(), strict=True):
                vectors[rows_of_text] = vector
        return vectors, len(todo)

    def _ingest_sync(
        self, user_id: str, items: list[IngestItem], progress: ProgressFn | None
    ) -> list[dict[str, Any] | APIError]:
        report = progress or (lambda stage, fraction: None)
        user_dir_name(user_id)
        results: list[dict[str, Any] | APIError] = []
        prepared: list[_Prepared] = []
        parts: list[np.ndarray] = []
        slots: list[int] = []
        usage = self.usage(user_id)  # under the user's lock: concurrent uploads cannot both pass
        known = self._lexical_index(user_id).digests()
        # parse file n+1 (in the parse worker process) while file n is embedded here
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="rag-parse") as parser:
            futures = [parser.submit(self._prepare, item) for item in items]
            for n, (item, future) in enumerate(zip(items, futures, strict=True)):
                try:
                    size = item.data.stat().st_size if isinstance(item.data, Path) else len(item.data)
                    check_quota(
                        self.settings, usage, len(prepared) + 1, sum(len(p.data) for p in prepared) + size
                    )
                    ready = future.result()
                except APIError as exc:
                    results.append(exc)
                    continue
                finally:
                    report("parsing", 0.3 * (n + 1) / len(items))
                vectors, _ = self._embed_chunks(user_id, ready.chunks, known)
                known.update({LexicalIndex.digest(c.text): c.chunk_id for c in ready.chunks})
                parts.append(vectors)
                prepared.append(ready)
                slots.append(n)
                results.append({})
                report("embedding", 0.3 + 0.6 * (n + 1) / len(items))
        if not prepared:
            return results
        vectors = np.concatenate(parts)
        report("indexing", 0.95)
        records = self._commit(user_id, prepared, vectors)
        for slot, record in zip(slots, records, strict=False):
            results[slot] = {**self._public(record), "status": "processed"}
        report("done", 1.0)
        return results

    def check_ingest_capacity(self) -> None:
        """503 with ``Retry-After`` when ``rag_ingest_queue_max`` ingestions are already waiting or running."""
        limit = self.settings.rag_ingest_queue_max
        if limit and self._ingest_pending >= limit:
            raise ServiceUnavailableError(
                f"The server is busy ingesting documents ({limit} uploads in progress); try again shortly.",
                retry_after=10,
                code="ingest_busy",
            )

    async def ingest_many(
        self, user_id: str, items: list[IngestItem], progress: ProgressFn | None = None
    ) -> list[dict[str, Any] | APIError]:
        """Ingest several files with one index commit; per-file result dicts or the error for that file.

        At most ``rag_ingest_queue_max`` ingestions wait or run at once (all users); beyond that the
        upload is refused with 503 and ``Retry-After`` instead of queueing without bound.
        """
        self.check_ingest_capacity()
        self._ingest_pending += 1
        try:
            async with self._user_lock(user_id):
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(self._ingest_executor, self._ingest_sync, user_id, items, progress)
        finally:
            self._ingest_pending -= 1

    async def ingest(
        self,
        user_id: str,
        filename: str,
        data: bytes | Path,
        content_type: str | None = None,
        progress: ProgressFn | None = None,
    ) -> dict[str, Any]:
        """Parse, chunk, embed and index one file; raises 4xx ``APIError`` for files we refuse."""
        result = (await self.ingest_many(user_id, [IngestItem(filename, data, content_type)], progress))[0]
        if isinstance(result, APIError):
            raise result
        return {k: result[k] for k in ("file_id", "doc_id", "filename", "size", "chunks", "pages")}

    # --- search ----------------------------------------------------------------------------------------

    def _rebuild_lexical(self, user_id: str) -> LexicalIndex:
        """BM25 from the chunk files (data written before it was persisted, or a Chroma store)."""
        lexical = LexicalIndex()
        for file_id in self._documents(user_id):
            chunks = read_json(self._chunk_path(user_id, file_id), [])
            lexical.add([file_id] * len(chunks), [c["chunk_id"] for c in chunks], [c["text"] for c in chunks])
        return lexical

    def _lexical_index(self, user_id: str) -> LexicalIndex:
        """The BM25 index committed with the current vectors (loaded from disk once per generation)."""
        stamp, blob = self.store.sidecar(user_id, LEXICAL_SIDECAR)
        with self._corpus_lock:
            cached = self._lexical.get(user_id)
        if cached is not None and cached[0] == stamp and stamp is not None:
            return cached[1]
        lexical: LexicalIndex | None = None
        if blob is not None:
            try:
                lexical = LexicalIndex.from_bytes(blob)
            except (ValueError, KeyError, OSError) as exc:
                log.warning("BM25 index of %s unreadable (%s); rebuilding it from the chunks", user_id, exc)
        if lexical is None:
            lexical = self._rebuild_lexical(user_id)
        with self._corpus_lock:
            self._lexical[user_id] = (stamp, lexical)
        return lexical

    def _chunks_of_file(self, user_id: str, file_id: str) -> list[dict[str, Any]]:
        """A document's chunk records (immutable once written: file ids are never reused)."""
        key = (user_id, file_id)
        with self._corpus_lock:
            cached = self._chunk_files.get(key)
            if cached is not None:
                self._chunk_files.move_to_end(key)
                return cached
        chunks: list[dict[str, Any]] = read_json(self._chunk_path(user_id, file_id), [])
        with self._corpus_lock:
            self._chunk_files[key] = chunks
            while len(self._chunk_files) > CHUNK_FILES_CACHED:
                self._chunk_files.popitem(last=False)
        return chunks

    def _chunk_record(self, user_id: str, chunk_id: str, file_id: str) -> dict[str, Any] | None:
        chunks = self._chunks_of_file(user_id, file_id)
        _, _, number = chunk_id.rpartition(":")
        if number.isdigit() and int(number) < len(chunks) and chunks[int(number)].get("chunk_id") == chunk_id:
            return chunks[int(number)]
        return next((c for c in chunks if c.get("chunk_id") == chunk_id), None)

    def _search_sync(
        self, user_id: str, query: str, top_k: int, file_ids: list[str] | None, mode: SearchMode
    ) -> list[Hit]:
        lexical = self._lexical_index(user_id)
        if len(lexical) == 0 or top_k <= 0:
            return []
        docs = self._documents(user_id)
        allowed: set[str] | None = None
        if file_ids is not None:
            allowed = {f for f in file_ids if f in docs}
            if not allowed:
                return []
        elif not lexical.files() <= docs.keys():
            allowed = lexical.files() & docs.keys()  # indexed but never catalogued (a crash mid-ingest)
        depth = max(top_k * 4, self.settings.rag_candidates)
        dense: list[tuple[str, float]] = []
        ranked_lexical: list[tuple[str, float]] = []
        if mode in ("hybrid", "dense"):
            vector = self.embedder.embed([query])[0]
            dense = [(c, s) for c, s in self.store.search(user_id, vector, depth, allowed) if c in lexical.by_id]
        if mode in ("hybrid", "bm25"):
            ranked_lexical = lexical.search(query, depth, allowed)
        if mode == "dense":
            ranked = dense
        elif mode == "bm25":
            ranked = ranked_lexical
        else:
            ranked = reciprocal_rank_fusion(
                [[cid for cid, _ in dense], [cid for cid, _ in ranked_lexical]],
                k=self.settings.rag_rrf_k,
                weights=[self.settings.rag_dense_weight, self.settings.rag_bm25_weight],
            )
        hits: list[Hit] = []
        for chunk_id, score in ranked:
            if len(hits) == top_k:
                break
            file_id = lexical.file_ids[lexical.by_id[chunk_id]]
            record = docs.get(file_id)
            chunk = self._chunk_record(user_id, chunk_id, file_id) if record is not None else None
            if record is None or chunk is None:
                continue
            hits.append(Hit(
                file_id=file_id,
                filename=record["filename"],
                chunk_id=chunk_id,
                text=chunk["text"],
                score=round(float(score), 6),
                page=chunk.get("page"),
                start=chunk.get("start"),
                end=chunk.get("end"),
            ))
        return hits

    async def search(
        self,
        user_id: str,
        query: str,
        top_k: int = 5,
        file_ids: list[str] | None = None,
        *,
        mode: SearchMode = "hybrid",
    ) -> list[Hit]:
        """Hybrid (dense + BM25, reciprocal-rank fused) search over this user's documents only."""
        if not query or not query.strip():
            return []
        top_k = max(1, min(int(top_k), 100))
        if file_ids is not None:
            file_ids = [require_id(f, "file", what="document") for f in file_ids]
        return await asyncio.to_thread(self._search_sync, user_id, query, top_k, file_ids, mode)

    # --- documents ------------------------------------------------------------------------------------------

    @staticmethod
    def _public(record: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in record.items() if k != "stored_name"}

    async def has_documents(self, user_id: str) -> bool:
        return bool(await asyncio.to_thread(self._documents, user_id))

    async def list_documents(self, user_id: str, limit: int = 20, offset: int = 0) -> dict[str, Any]:
        docs = await asyncio.to_thread(self._documents, user_id)
        ordered = sorted(docs.values(), key=lambda r: (r.get("created_at", 0), r["file_id"]), reverse=True)
        limit, offset = max(1, min(int(limit), 100)), max(0, int(offset))
        page = [self._public(r) for r in ordered[offset : offset + limit]]
        return {"object": "list", "data": page, "total": len(ordered), "has_more": offset + len(page) < len(ordered)}

    async def get_document(self, user_id: str, file_id: str) -> dict[str, Any]:
        file_id = require_id(file_id, "file", what="document")
        record = (await asyncio.to_thread(self._documents, user_id)).get(file_id)
        if record is None:
            raise NotFoundError(f"No document found with id '{file_id}'.", param="file_id")
        return self._public(record)

    async def document_path(self, user_id: str, file_id: str) -> tuple[Path, dict[str, Any]]:
        """The stored file of one of this user's documents (404 otherwise)."""
        file_id = require_id(file_id, "file", what="document")
        record = (await asyncio.to_thread(self._documents, user_id)).get(file_id)
        if record is None:
            raise NotFoundError(f"No document found with id '{file_id}'.", param="file_id")
        path = self._upload_dir(user_id) / safe_filename(record["stored_name"])
        if not path.is_file():
            raise NotFoundError(f"The file of document '{file_id}' is missing.", param="file_id")
        return path, self._public(record)

    def _delete_sync(self, user_id: str, file_id: str) -> bool:
        with file_lock(self._index_dir(user_id) / "ingest"):
            with self._catalog(user_id).update() as catalog:
                record = catalog.setdefault("documents", {}).pop(file_id, None)
            if record is None:
                return False
            lexical = self._lexical_index(user_id).copy()
            lexical.remove_files({file_id})
            self.store.delete_file(user_id, file_id, sidecars={LEXICAL_SIDECAR: lexical.to_bytes()})
            self._chunk_path(user_id, file_id).unlink(missing_ok=True)
            (self._upload_dir(user_id) / safe_filename(record["stored_name"])).unlink(missing_ok=True)
        return True

    async def delete_document(self, user_id: str, file_id: str) -> dict[str, Any]:
        file_id = require_id(file_id, "file", what="document")
        async with self._user_lock(user_id):
            deleted = await asyncio.to_thread(self._delete_sync, user_id, file_id)
        if not deleted:
            raise NotFoundError(f"No document found with id '{file_id}'.", param="file_id")
        return {"id": file_id, "object": "file", "deleted": True}

    def _delete_user_sync(self, user_id: str) -> int:
        count = len(self._documents(user_id))
        with contextlib.suppress(NotFoundError):
            self.store.delete_user(user_id)
        remove_tree(self._index_dir(user_id))
        remove_tree(self._upload_dir(user_id))
        with self._corpus_lock:
            self._lexical.pop(user_id, None)
            self._catalogs.pop(user_id, None)
            for key in [k for k in self._chunk_files if k[0] == user_id]:
                del self._chunk_files[key]
        return count

    async def delete_user(self, user_id: str) -> int:
        """Remove every document, chunk and vector of a user (account deletion); returns the count."""
        async with self._user_lock(user_id):
            return await asyncio.to_thread(self._delete_user_sync, user_id)

    async def export_user(self, user_id: str) -> list[dict[str, Any]]:
        docs = await asyncio.to_thread(self._documents, user_id)
        return [self._public(r) for r in sorted(docs.values(), key=lambda r: r.get("created_at", 0))]
