"""BM25 over one user's chunks: an inverted index in numpy that is updated in place and saved as bytes.

Scoring is BM25 as Lucene computes it (the ``bm25s`` default this replaces, same tokenizer):
``idf(t) = ln(1 + (N - df + 0.5) / (df + 0.5))`` and ``tf / (tf + k1 (1 - b + b dl / avgdl))``,
k1 = 1.5, b = 0.75. Term frequencies are stored, not scores, so adding or removing a document
touches only its own postings (IDF and the average length are computed at query time) and a
saved index loads without tokenising anything.

Postings are kept term-major: ``indptr[t]:indptr[t+1]`` slices ``rows`` (chunk rows, ascending)
and ``tf``. ``to_bytes`` writes format 2: a JSON header naming each array's dtype, shape and
offset, then the raw arrays (64-byte aligned), so ``from_bytes`` maps them with ``np.frombuffer``
without parsing or copying (read-only views: updates replace arrays, never write into them).
Format 1 (``np.savez``, no pickle) still loads.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

K1, B = 1.5, 0.75
FORMAT = 2
_MAGIC = b"BM25IDX\x02"  # format 2; format 1 was a zip (np.savez), b"PK\x03\x04"
_ALIGN = 64
_ARRAYS = ("chunk_ids", "file_ids", "text_digests", "vocab", "doc_len", "indptr", "rows", "tf")

_stemmer: Any = None


def tokenize(texts: list[str]) -> list[list[str]]:
    """NFKC-normalised, lower-cased word tokens, English stop words removed, Snowball-stemmed."""
    global _stemmer
    import bm25s

    if _stemmer is None:
        try:
            import Stemmer

            _stemmer = Stemmer.Stemmer("english")
        except ImportError:  # pragma: no cover - PyStemmer is a requirement, but BM25 still works without
            _stemmer = False
    # NFKC spells out ligatures ("ﬃ" -> "ffi") and width/compatibility forms before matching
    texts = [unicodedata.normalize("NFKC", t) for t in texts]
    tokens: list[list[str]] = bm25s.tokenize(
        texts, stopwords="en", stemmer=_stemmer or None, return_ids=False, show_progress=False
    )
    return tokens


@dataclass
class LexicalIndex:
    """Chunk ids, their files and BM25 postings, in row order."""

    chunk_ids: list[str] = field(default_factory=list)
    file_ids: list[str] = field(default_factory=list)
    text_digests: list[str] = field(default_factory=list)  # of each chunk's text: unchanged chunks reuse vectors
    vocab: dict[str, int] = field(default_factory=dict)
    doc_len: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    indptr: np.ndarray = field(default_factory=lambda: np.zeros(1, dtype=np.int64))
    rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    tf: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    _by_id: dict[str, int] | None = None
    _file_codes: tuple[dict[str, int], np.ndarray] | None = None
    _files: set[str] | None = None

    def __len__(self) -> int:
        return len(self.chunk_ids)

    @property
    def by_id(self) -> dict[str, int]:
        if self._by_id is None:
            self._by_id = {c: i for i, c in enumerate(self.chunk_ids)}
        return self._by_id

    def files(self) -> set[str]:
        if self._files is None:
            self._files = set(self.file_ids)
        return self._files

    @staticmethod
    def digest(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]

    def digests(self) -> dict[str, str]:
        """Text digest -> a chunk id with that text."""
        return dict(zip(self.text_digests, self.chunk_ids, strict=True))

    def copy(self) -> LexicalIndex:
        """An independent copy to update (arrays are replaced on update, never written in place)."""
        return LexicalIndex(list(self.chunk_ids), list(self.file_ids), list(self.text_digests), dict(self.vocab),
                            self.doc_len, self.indptr, self.rows, self.tf)

    def _codes(self) -> tuple[dict[str, int], np.ndarray]:
        """A small int per file and the file code of every row (for file filters)."""
        if self._file_codes is None:
            codes: dict[str, int] = {}
            per_row = np.array([codes.setdefault(f, len(codes)) for f in self.file_ids], dtype=np.int32)
            self._file_codes = (codes, per_row)
        return self._file_codes

    def _changed(self) -> None:
        self._by_id = None
        self._file_codes = None
        self._files = None

    # --- updates ----------------------------------------------------------------------------------

    def add(self, file_ids: list[str], chunk_ids: list[str], texts: list[str]) -> None:
        """Append chunks (new rows at the end): only their postings are inserted."""
        if not chunk_ids:
            return
        first = len(self.chunk_ids)
        token_lists = tokenize(texts)
        new_terms: list[int] = []
        new_rows: list[int] = []
        new_tf: list[int] = []
        lengths = np.zeros(len(token_lists), dtype=np.int32)
        for n, tokens in enumerate(token_lists):
            lengths[n] = len(tokens)
            for token, count in Counter(tokens).items():
                term = self.vocab.get(token)
                if term is None:
                    term = self.vocab[token] = len(self.vocab)
                new_terms.append(term)
                new_rows.append(first + n)
                new_tf.append(count)
        vocab_size = len(self.vocab)
        old_sizes = np.diff(self.indptr)
        old_sizes = np.concatenate([old_sizes, np.zeros(vocab_size - len(old_sizes), dtype=old_sizes.dtype)])
        terms = np.asarray(new_terms, dtype=np.int64)
        order = np.argsort(terms, kind="stable")  # rows ascending within a term (rows were appended in order)
        terms = terms[order]
        # each new posting goes at the end of its term's run: rows stay ascending per term
        old_indptr = np.concatenate([self.indptr, np.full(vocab_size + 1 - len(self.indptr), self.indptr[-1])])
        at = old_indptr[terms + 1]
        self.rows = np.insert(self.rows, at, np.asarray(new_rows, dtype=np.int32)[order])
        self.tf = np.insert(self.tf, at, np.asarray(new_tf, dtype=np.float32)[order])
        sizes = old_sizes + np.bincount(terms, minlength=vocab_size)
        self.indptr = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.doc_len = np.concatenate([self.doc_len, lengths])
        self.chunk_ids.extend(chunk_ids)
        self.file_ids.extend(file_ids)
        self.text_digests.extend(self.digest(t) for t in texts)
        self._changed()

    def remove_files(self, file_ids: set[str]) -> int:
        """Drop every chunk of these files; rows after them move up. Returns the chunks removed."""
        keep = np.array([f not in file_ids for f in self.file_ids], dtype=bool)
        removed = int((~keep).sum())
        if removed == 0:
            return 0
        new_row = np.cumsum(keep) - 1  # old row -> new row (valid where kept)
        terms = np.repeat(np.arange(len(self.indptr) - 1), np.diff(self.indptr))
        kept = keep[self.rows]
        self.rows = new_row[self.rows[kept]].astype(np.int32)
        self.tf = self.tf[kept]
        sizes = np.bincount(terms[kept], minlength=len(self.indptr) - 1)
        self.indptr = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.doc_len = self.doc_len[keep]
        self.chunk_ids = [c for c, k in zip(self.chunk_ids, keep.tolist(), strict=True) if k]
        self.file_ids = [f for f, k in zip(self.file_ids, keep.tolist(), strict=True) if k]
        self.text_digests = [d for d, k in zip(self.text_digests, keep.tolist(), strict=True) if k]
        self._changed()
        return removed

    # --- search -----------------------------------------------------------------------------------

    def scores(self, query: str) -> np.ndarray | None:
        """BM25 score of every row for ``query`` (None when no query term is in the vocabulary)."""
        terms = [self.vocab[t] for t in tokenize([query])[0] if t in self.vocab]
        n_docs = len(self.chunk_ids)
        if not terms or n_docs == 0:
            return None
        avg_len = max(float(self.doc_len.mean()), 1e-9)
        norm = (K1 * (1 - B + B * self.doc_len / avg_len)).astype(np.float32)
        scores = np.zeros(n_docs, dtype=np.float32)
        for term in terms:  # a repeated query term counts again, as in bm25s
            begin, end = int(self.indptr[term]), int(self.indptr[term + 1])
            if begin == end:
                continue
            rows, tf = self.rows[begin:end], self.tf[begin:end]
            idf = np.log(1.0 + (n_docs - (end - begin) + 0.5) / ((end - begin) + 0.5))
            scores[rows] += np.float32(idf) * tf / (tf + norm[rows])
        return scores

    def search(self, query: str, k: int, file_ids: set[str] | None = None) -> list[tuple[str, float]]:
        """(chunk_id, BM25 score) best first, only rows with a positive score, of ``file_ids`` if given."""
        if k <= 0:
            return []
        scores = self.scores(query)
        if scores is None:
            return []
        if file_ids is not None:
            codes, per_row = self._codes()
            wanted = np.array([codes[f] for f in file_ids if f in codes], dtype=np.int32)
            scores = np.where(np.isin(per_row, wanted), scores, 0.0)
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
        top = top[np.lexsort((top, -scores[top]))]  # best first, ties by row
        return [(self.chunk_ids[i], float(scores[i])) for i in top.tolist() if scores[i] > 0]

    # --- bytes --------------------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        terms = sorted(self.vocab, key=self.vocab.__getitem__)
        arrays = {
            "chunk_ids": np.array(self.chunk_ids, dtype=np.str_),
            "file_ids": np.array(self.file_ids, dtype=np.str_),
            "text_digests": np.array(self.text_digests, dtype=np.str_),
            "vocab": np.array(terms, dtype=np.str_),
            "doc_len": self.doc_len, "indptr": self.indptr, "rows": self.rows, "tf": self.tf,
        }
        header: dict[str, list[Any]] = {}
        offset = 0
        for name in _ARRAYS:
            array = np.ascontiguousarray(arrays[name])
            arrays[name] = array
            header[name] = [array.dtype.str, list(array.shape), offset]
            offset += -(-array.nbytes // _ALIGN) * _ALIGN
        encoded = json.dumps(header).encode()
        head = _MAGIC + struct.pack("<Q", len(encoded)) + encoded
        parts = [head, bytes(-len(head) % _ALIGN)]
        for name in _ARRAYS:
            parts += [arrays[name].tobytes(), bytes(-arrays[name].nbytes % _ALIGN)]
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes) -> LexicalIndex:
        """Format 2 (views into ``data``) or format 1 (``np.savez``); ValueError if it is neither."""
        if data[:4] == b"PK\x03\x04":
            return cls._from_npz(data)
        if data[: len(_MAGIC)] != _MAGIC or len(data) < len(_MAGIC) + 8:
            raise ValueError("unknown lexical index format")
        try:
            return cls._from_arrays(cls._views(data))
        except (KeyError, TypeError, struct.error) as exc:
            raise ValueError(f"lexical index: bad header ({exc})") from None

    @staticmethod
    def _views(data: bytes) -> dict[str, np.ndarray]:
        (head_len,) = struct.unpack_from("<Q", data, len(_MAGIC))
        head_end = len(_MAGIC) + 8 + head_len
        header = json.loads(data[len(_MAGIC) + 8 : head_end])
        start = -(-head_end // _ALIGN) * _ALIGN
        arrays: dict[str, np.ndarray] = {}
        for name in _ARRAYS:
            dtype_str, shape, offset = header[name]
            dtype = np.dtype(dtype_str)
            if dtype.kind not in "iufU" or len(shape) != 1:
                raise ValueError(f"lexical index: bad array {name!r}")
            count = int(shape[0])
            if start + int(offset) + count * dtype.itemsize > len(data):
                raise ValueError("lexical index: truncated")
            arrays[name] = np.frombuffer(data, dtype=dtype, count=count, offset=start + int(offset))
        return arrays

    @classmethod
    def _from_npz(cls, data: bytes) -> LexicalIndex:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            if int(npz["format"][0]) != 1:
                raise ValueError("unknown lexical index format")
            return cls._from_arrays({name: npz[name] for name in _ARRAYS})

    @classmethod
    def _from_arrays(cls, arrays: dict[str, np.ndarray]) -> LexicalIndex:
        return cls(
            chunk_ids=arrays["chunk_ids"].tolist(),
            file_ids=arrays["file_ids"].tolist(),
            text_digests=arrays["text_digests"].tolist(),
            vocab={t: i for i, t in enumerate(arrays["vocab"].tolist())},
            doc_len=arrays["doc_len"],
            indptr=arrays["indptr"],
            rows=arrays["rows"],
            tf=arrays["tf"],
        )


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
