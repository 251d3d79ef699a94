"""rag_retrieval through the Services contract, and the tool registry."""

from __future__ import annotations

import json

from backend.rag.types import Hit
from backend.tools.rag_retrieval import NO_DOCUMENTS, rag_retrieval
from backend.tools.registry import all_tools, openai_specs


class FakeRag:
    def __init__(self, hits: list[Hit], has_docs: bool = True) -> None:
        self.hits, self.has_docs, self.calls = hits, has_docs, []

    async def has_documents(self, user_id: str) -> bool:
        return self.has_docs

    async def search(self, user_id, query, top_k=5, file_ids=None):
        self.calls.append((user_id, query, top_k, file_ids))
        return self.hits[:top_k]


class FakeServices:
    def __init__(self, rag) -> None:
        self._rag = rag

    async def rag(self):
        if isinstance(self._rag, Exception):
            raise self._rag
        return self._rag


HITS = [
    Hit(file_id="file_1", filename="report.pdf", chunk_id="c1", text="Revenue grew 12%\nin 2024.", score=0.9, page=3),
    Hit(file_id="file_2", filename="notes.md", chunk_id="c7", text="Costs were flat.", score=0.5),
]


def test_passages_are_numbered_with_labels_and_sources(tool_settings, run_tool):
    rag = FakeRag(HITS)
    result = run_tool(rag_retrieval, tool_settings(), services=FakeServices(rag), query="revenue", top_k=2)
    assert result.ok
    assert result.output == "[1] [report.pdf p.3] Revenue grew 12% in 2024.\n\n[2] [notes.md] Costs were flat."
    assert result.data["sources"][0]["file_id"] == "file_1" and result.data["sources"][0]["page"] == 3
    assert rag.calls == [("user_test", "revenue", 2, None)]


def test_no_documents(tool_settings, run_tool):
    result = run_tool(rag_retrieval, tool_settings(), services=FakeServices(FakeRag([], has_docs=False)), query="x")
    assert result.output == NO_DOCUMENTS
    result = run_tool(rag_retrieval, tool_settings(), services=FakeServices(ImportError("no faiss")), query="x")
    assert result.output == NO_DOCUMENTS and not result.ok


def test_registry_lists_every_tool_with_valid_specs():
    tools = all_tools()
    assert set(tools) == {
        "web_search", "rag_retrieval", "data_analysis", "python_code", "math_calc", "wikipedia", "weather", "sql_query"
    }
    for spec in openai_specs():
        fn = spec["function"]
        assert fn["description"] and fn["parameters"]["type"] == "object"
        assert fn["parameters"]["required"], fn["name"]
        json.dumps(spec)


def test_tool_failures_are_observations_not_exceptions(tool_settings, run_tool):
    for tool in all_tools().values():
        result = run_tool(tool, tool_settings(), **{})  # missing required argument
        assert not result.ok and result.output.startswith("Error:"), tool.name
