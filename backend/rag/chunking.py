"""Split parsed pages into overlapping chunks that remember where they came from."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from langchain_text_splitters import RecursiveCharacterTextSplitter

from backend.rag.loaders import ParsedDocument


@dataclass
class Chunk:
    chunk_id: str  # "{file_id}:{n}"
    file_id: str
    text: str
    page: int | None
    start: int  # char offsets into the page (or whole-document) text
    end: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_splitter(chunk_size: int, chunk_overlap: int) -> RecursiveCharacterTextSplitter:
    return RecursiveCharacterTextSplitter(
        chunk_size=chunk_size,
        chunk_overlap=min(chunk_overlap, max(0, chunk_size - 1)),
        add_start_index=True,
        strip_whitespace=True,
    )


class TooManyChunks(Exception):
    """More chunks than ``max_chunks``; raised as soon as the cap is passed."""


def _spans(text: str, chunk_size: int, chunk_overlap: int) -> list[tuple[int, int, bool]]:
    """(start, end, is_long_run): whitespace-free runs longer than two chunks are cut apart.

    The recursive splitter falls back to single characters on such runs (a 25 MB file without a
    space would become 25 million one-character strings); those runs get fixed windows instead.
    """
    spans: list[tuple[int, int, bool]] = []
    pos = 0
    for match in re.finditer(rf"\S{{{max(2, 2 * chunk_size)},}}", text):
        if match.start() > pos:
            spans.append((pos, match.start(), False))
        spans.append((match.start(), match.end(), True))
        pos = match.end()
    if pos < len(text):
        spans.append((pos, len(text), False))
    return spans


def _windows(start: int, end: int, chunk_size: int, chunk_overlap: int) -> list[tuple[int, int]]:
    step = max(1, chunk_size - min(chunk_overlap, chunk_size - 1))
    return [(s, min(s + chunk_size, end)) for s in range(start, end, step) if s == start or s + chunk_overlap < end]


def chunk_document(
    doc: ParsedDocument,
    file_id: str,
    chunk_size: int = 1000,
    chunk_overlap: int = 200,
    max_chunks: int | None = None,
) -> list[Chunk]:
    """Overlapping chunks of every page; raises ``TooManyChunks`` past ``max_chunks``."""
    splitter = make_splitter(chunk_size, chunk_overlap)
    chunks: list[Chunk] = []

    def add(text: str, page: int | None, start: int) -> None:
        if max_chunks is not None and len(chunks) >= max_chunks:
            raise TooManyChunks(max_chunks)
        chunks.append(Chunk(f"{file_id}:{len(chunks)}", file_id, text, page, start, start + len(text)))

    for page in doc.pages:
        if not page.text.strip():
            continue
        for span_start, span_end, long_run in _spans(page.text, chunk_size, chunk_overlap):
            if long_run:
                for s, e in _windows(span_start, span_end, chunk_size, chunk_overlap):
                    add(page.text[s:e], page.page, s)
                continue
            part = page.text[span_start:span_end]
            if not part.strip():
                continue
            for piece in splitter.create_documents([part]):
                text = piece.page_content
                if not text.strip():
                    continue
                start = int(piece.metadata.get("start_index", -1))
                if start < 0 or part[start : start + len(text)] != text:
                    start = part.find(text)
                add(text, page.page, span_start + start)
    return chunks
