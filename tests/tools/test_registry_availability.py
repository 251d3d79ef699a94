"""Agents are only offered tools that can run with the current configuration."""

from __future__ import annotations

from backend.settings import Settings
from backend.tools.registry import all_tools, available_tools, unavailable_tools


def test_unconfigured_tools_are_withheld_with_a_reason(tmp_path):
    bare = Settings(_env_file=None, data_dir=tmp_path)
    names = set(available_tools(bare))
    assert "web_search" not in names and "sql_query" not in names
    assert "TAVILY_API_KEY" in unavailable_tools(bare)["web_search"]
    assert {"math_calc", "wikipedia", "weather", "data_analysis", "rag_retrieval"} <= names


def test_configuring_a_tool_makes_it_available(tmp_path):
    db = tmp_path / "x.db"
    db.write_bytes(b"")
    configured = Settings(_env_file=None, data_dir=tmp_path, tavily_api_key="tvly-test", sql_database_path=db)
    assert {"web_search", "sql_query"} <= set(available_tools(configured))
    assert set(available_tools(configured)) | set(unavailable_tools(configured)) == set(all_tools())
