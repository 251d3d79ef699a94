"""The one tool registry. Adding a tool = one module + one entry in the list in ``_load``.

Tools of attached MCP servers (``backend.mcp``) join at run time: ``available_tools(settings, mcp)``
adds the tools of the app's MCP manager (those of the servers connected now) after the built-ins.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

from backend.settings import Settings
from backend.tools.base import Tool

if TYPE_CHECKING:
    from backend.mcp.client import McpManager


@lru_cache(maxsize=1)
def _load() -> dict[str, Tool]:
    """name -> Tool, in registry order (the tool modules are imported on first use, not at import)."""
    from backend.tools.data_analysis import data_analysis
    from backend.tools.math_calc import math_calc
    from backend.tools.python_code import python_code
    from backend.tools.rag_retrieval import rag_retrieval
    from backend.tools.sql_query import sql_query
    from backend.tools.weather import weather
    from backend.tools.web_search import web_search
    from backend.tools.wikipedia_tool import wikipedia_tool

    #: the registry: a plain list, in the order the tools are offered. Everything an agent or the
    #: router needs to know about a tool (categories, hint, requirements, determinism) is on the Tool.
    tools: list[Tool] = [
        web_search,
        rag_retrieval,
        data_analysis,
        python_code,
        math_calc,
        wikipedia_tool,
        weather,
        sql_query,
    ]
    return {t.name: t for t in tools}


def all_tools() -> dict[str, Tool]:
    """name -> Tool, in registry order (imports tool modules on first use)."""
    return _load()


def get_tool(name: str) -> Tool | None:
    return _load().get(name)


def available_tools(settings: Settings, mcp: McpManager | None = None) -> dict[str, Tool]:
    """The tools that can run with this configuration (agents are only offered these), described for it.

    With the app's MCP manager, the connected MCP servers' tools are included too.
    """
    tools = {name: t.for_settings(settings) for name, t in _load().items() if t.unavailable_reason(settings) is None}
    for name, t in (mcp.tools() if mcp is not None else {}).items():
        tools.setdefault(name, t)
    return tools


def unavailable_tools(settings: Settings) -> dict[str, str]:
    """name -> why it cannot run here (shown in health and docs, never offered to a model)."""
    return {name: reason for name, t in _load().items() if (reason := t.unavailable_reason(settings))}


def openai_specs(names: list[str] | None = None) -> list[dict[str, Any]]:
    tools = _load()
    selected = tools.values() if names is None else [tools[n] for n in names if n in tools]
    return [t.openai_spec() for t in selected]
