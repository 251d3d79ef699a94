"""The contract between RAG and its callers (chat, the rag_retrieval tool, the API)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol


@dataclass
class Hit:
    file_id: str
    filename: str
    chunk_id: str
    text: str
    score: float
    page: int | None = None  # 1-based page for paged formats
    start: int | None = None  # char span in the page / document text
    end: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Retriever(Protocol):
    async def search(
        self, user_id: str, query: str, top_k: int = 5, file_ids: list[str] | None = None
    ) -> list[Hit]:
        """Hybrid search over *this user's* documents only."""
        ...

    async def has_documents(self, user_id: str) -> bool: ...
