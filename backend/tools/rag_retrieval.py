"""rag_retrieval: search the calling user's uploaded documents (hybrid retrieval via the RAG service)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from backend.rag.context import clip_passage
from backend.tools.base import ToolContext, ToolError, ToolResult, tool

if TYPE_CHECKING:
    from backend.rag.types import Hit

log = logging.getLogger("backend.tools.rag_retrieval")

NO_DOCUMENTS = "No documents are indexed for this user."


def _label(hit: Hit) -> str:
    return f"[{hit.filename} p.{hit.page}]" if hit.page else f"[{hit.filename}]"


@tool(
    timeout_s=60,
    question_argument="query",
    categories=("documents",),
    route_patterns=(
        r"\b(?:my|our|these|those|uploaded|attached|the uploaded|the attached) (?:documents?|docs?|files?|"
        r"pdfs?|notes|reports?|papers?|contracts?|handbook|manuals?|policy|policies|slides|memo|minutes|"
        r"invoices?|cv|resume|spreadsheets?)\b",
        r"\b(?:uploaded|attached)\b",
        r"\baccording to (?:the|my|our) (?:doc|file|pdf|report|notes|contract|handbook|manual|policy|memo|minutes)",
        r"\b(?:in|from) (?:my|our) (?:notes|files|documents|docs|knowledge base)\b",
    ),
    hint="rag_retrieval searches the user's uploaded documents.",
)
async def rag_retrieval(ctx: ToolContext, query: str, top_k: int = 5) -> ToolResult:
    """Search the user's uploaded documents and return the most relevant passages with [file p.N] labels.

    Args:
        query: what to look for in the documents.
        top_k: how many passages to return (1-20).
    """
    if not query or not query.strip():
        raise ToolError("query is empty")
    top_k = max(1, min(int(top_k), 20))
    if ctx.documents is None:
        return ToolResult(True, NO_DOCUMENTS, data={"sources": []})
    try:
        rag = await ctx.documents()
    except ImportError as exc:  # the RAG stack is not installed / not importable
        log.warning("RAG service unavailable: %s", exc)
        return ToolResult(False, NO_DOCUMENTS, data={"sources": []})
    if not await rag.has_documents(ctx.user_id):
        return ToolResult(True, NO_DOCUMENTS, data={"sources": []})
    hits = await rag.search(ctx.user_id, query.strip(), top_k, ctx.file_ids)
    if not hits:
        return ToolResult(True, f"No passages in your documents match {query.strip()!r}.", data={"sources": []})
    blocks = [f"[{i}] {_label(hit)} {clip_passage(hit.text)}" for i, hit in enumerate(hits, 1)]
    return ToolResult(True, "\n\n".join(blocks), data={"sources": [hit.to_dict() for hit in hits]})
