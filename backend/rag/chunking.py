"""Split parsed pages into overlapping chunks that remember where they came from."""

from __future__ import annotations

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


def chunk_document(doc: ParsedDocument, file_id: str, chunk_size: int = 1000, chunk_overlap: int = 200) -> list[Chunk]:
    splitter = make_splitter(chunk_size, chunk_overlap)
    chunks: list[Chunk] = []
    for page in doc.pages:
        if not page.text.strip():
            continue
        for piece in splitter.create_documents([page.text]):
            text = piece.page_content
            if not text.strip():
                continue
            start = int(piece.metadata.get("start_index", -1))
            if start < 0 or page.text[start : start + len(text)] != text:
                start = page.text.find(text)
            chunks.append(Chunk(f"{file_id}:{len(chunks)}", file_id, text, page.page, start, start + len(text)))
    return chunks
