"""The one tool registry. Adding a tool = one module + one line in ``_TOOL_MODULES``.

Tools of attached MCP servers (``backend.mcp``) join at run time: ``available_tools(settings, mcp)``
adds the tools of the app's MCP manager (those of the servers connected now) after the built-ins.
"""

from __future__ import annotations

import importlib
from functools import lru_cache
from typing import TYPE_CHECKING

from backend.settings import Settings
from backend.tools.base import Tool

if TYPE_CHECKING:
    from backend.mcp.client import McpManager

# module path : attribute holding the Tool
_TOOL_MODULES: list[str] = [
    "backend.tools.web_search:web_search",
    "backend.tools.rag_retrieval:rag_retrieval",
    "backend.tools.data_analysis:data_analysis",
    "backend.tools.python_code:python_code",
    "backend.tools.math_calc:math_calc",
    "backend.tools.wikipedia_tool:wikipedia_tool",
    "backend.tools.weather:weather",
    "backend.tools.sql_query:sql_query",
]


@lru_cache(maxsize=1)
def _load() -> dict[str, Tool]:
    tools: dict[str, Tool] = {}
    for entry in _TOOL_MODULES:
        module_name, attr = entry.split(":")
        t = getattr(importlib.import_module(module_name), attr)
        tools[t.name] = t
    return tools


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


def openai_specs(names: list[str] | None = None) -> list[dict]:
    tools = _load()
    selected = tools.values() if names is None else [tools[n] for n in names if n in tools]
    return [t.openai_spec() for t in selected]
