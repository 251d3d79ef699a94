"""The grounded prompt and the OpenAI url_citation annotations built from search hits."""

from __future__ import annotations

from backend.rag.context import build_rag_context, context_from_hits
from backend.rag.service import RagService
from backend.rag.types import Hit
from tests.rag.conftest import PDF_DIR, run


def test_prompt_and_annotations() -> None:
    hits = [
        Hit("file_aaaaaaaa1", "report.pdf", "file_aaaaaaaa1:0", "Revenue grew 12% in 2023.", 0.03, page=4),
        Hit("file_bbbbbbbb2", "notes.txt", "file_bbbbbbbb2:3", "The CEO is Dana.", 0.02),
    ]
    ctx = context_from_hits(hits)
    assert "ONLY" in ctx.system_prompt and "[1]" in ctx.system_prompt and "not in the provided documents" in ctx.system_prompt
    assert "[1] (report.pdf, page 4)\nRevenue grew 12% in 2023." in ctx.system_prompt
    assert [s["index"] for s in ctx.sources] == [1, 2] and ctx.sources[0]["text"] == "Revenue grew 12% in 2023."
    content = "Revenue grew 12% [1]; the CEO is Dana [2]. Unknown [7]."
    notes = ctx.annotations(content, "http://127.0.0.1:8000/")
    assert len(notes) == 2  # [7] names no source
    first = notes[0]["url_citation"]
    assert notes[0]["type"] == "url_citation"
    assert first["url"] == "http://127.0.0.1:8000/api/files/documents/file_aaaaaaaa1#page=4"
    assert first["title"] == "report.pdf p.4"
    assert content[first["start_index"] : first["end_index"]] == "[1]"
    second = notes[1]["url_citation"]
    assert second["title"] == "notes.txt" and "#page" not in second["url"]
    assert content[second["start_index"] : second["end_index"]] == "[2]"


def test_no_hits_says_so() -> None:
    ctx = context_from_hits([])
    assert ctx.sources == [] and "not in the provided documents" in ctx.system_prompt
    assert ctx.annotations("anything [1]", "http://x") == []


def test_build_rag_context_searches_the_callers_documents(rag: RagService) -> None:
    run(rag.ingest("u_alice", "crazyones.pdf", PDF_DIR / "crazyones.pdf", "application/pdf"))
    ctx = run(build_rag_context(rag, "u_alice", "who are the crazy ones?", None, 3))
    assert ctx.sources[0]["filename"] == "crazyones.pdf" and ctx.sources[0]["page"] == 1
    assert "misfits" in ctx.system_prompt.lower() or "misﬁts" in ctx.system_prompt
    other = run(build_rag_context(rag, "u_bob", "who are the crazy ones?", None, 3))
    assert other.sources == []
