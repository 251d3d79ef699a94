"""One user's chunks in memory plus a BM25 index over them (``bm25s``), rebuilt when they change.

Tokens are cached per file, so adding a document re-tokenises only that document; the BM25
matrix itself is rebuilt from the cached tokens (fast, sparse).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger("backend.rag.lexical")

_stemmer: Any = None


def tokenize(texts: list[str]) -> list[list[str]]:
    """Lower-case word tokens, English stop words removed, Snowball-stemmed (PyStemmer if present)."""
    global _stemmer
    import bm25s

    if _stemmer is None:
        try:
            import Stemmer

            _stemmer = Stemmer.Stemmer("english")
        except ImportError:  # pragma: no cover - PyStemmer is a requirement, but BM25 still works without
            _stemmer = False
    return bm25s.tokenize(
        texts, stopwords="en", stemmer=_stemmer or None, return_ids=False, show_progress=False
    )


@dataclass
class UserCorpus:
    """Chunks of one user, in a fixed order, with a BM25 index over their text."""

    stamp: Any = None
    chunks: list[dict[str, Any]] = field(default_factory=list)
    by_id: dict[str, int] = field(default_factory=dict)
    file_of_row: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))
    chunks_by_file: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    tokens_by_file: dict[str, list[list[str]]] = field(default_factory=dict)
    retriever: Any = None

    def rebuild(self, chunks_by_file: dict[str, list[dict[str, Any]]], stamp: Any) -> None:
        import bm25s

        tokens: list[list[str]] = []
        chunks: list[dict[str, Any]] = []
        new_cache: dict[str, list[list[str]]] = {}
        for file_id, file_chunks in chunks_by_file.items():
            cached = self.tokens_by_file.get(file_id)
            if cached is None or len(cached) != len(file_chunks):
                cached = tokenize([c["text"] for c in file_chunks])
            new_cache[file_id] = cached
            tokens.extend(cached)
            chunks.extend(file_chunks)
        self.tokens_by_file = new_cache
        self.chunks_by_file = dict(chunks_by_file)
        self.chunks = chunks
        self.by_id = {c["chunk_id"]: i for i, c in enumerate(chunks)}
        self.file_of_row = np.array([c["file_id"] for c in chunks], dtype=object)
        self.retriever = None
        if chunks and any(tokens):
            retriever = bm25s.BM25()
            # bm25s cannot index an empty token list; a placeholder never matches a query
            retriever.index([t or ["\x00"] for t in tokens], show_progress=False)
            self.retriever = retriever
        self.stamp = stamp

    def search(self, query: str, k: int, file_ids: set[str] | None = None) -> list[tuple[str, float]]:
        if self.retriever is None or k <= 0:
            return []
        query_tokens = [t for t in tokenize([query])[0] if t in self.retriever.vocab_dict]
        if not query_tokens:
            return []
        mask = None
        if file_ids is not None:
            mask = np.isin(self.file_of_row, list(file_ids)).astype(np.float32)
            if not mask.any():
                return []
        k = min(k, len(self.chunks))
        rows, scores = self.retriever.retrieve(
            [query_tokens], k=k, show_progress=False, weight_mask=mask, n_threads=1
        )
        out = []
        for row, score in zip(rows[0].tolist(), scores[0].tolist(), strict=False):
            if score <= 0:
                continue
            chunk = self.chunks[row]
            if file_ids is not None and chunk["file_id"] not in file_ids:
                continue
            out.append((chunk["chunk_id"], float(score)))
        return out


def reciprocal_rank_fusion(
    rankings: list[list[str]], k: int = 60, weights: list[float] | None = None
) -> list[tuple[str, float]]:
    """Fuse ranked id lists: score(d) = sum_i w_i / (k + rank_i(d)), ranks starting at 1."""
    weights = weights or [1.0] * len(rankings)
    fused: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights, strict=False):
        for rank, item in enumerate(ranking, start=1):
            fused[item] = fused.get(item, 0.0) + weight / (k + rank)
    return sorted(fused.items(), key=lambda kv: kv[1], reverse=True)
