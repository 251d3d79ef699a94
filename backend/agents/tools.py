"""The agents' view of the tool registry: which tools, how they are described, how a call runs."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from backend.agents.router import tool_categories
from backend.mcp.bridge import is_mcp_tool
from backend.settings import Settings
from backend.tools.base import Tool, ToolContext, ToolResult, arguments_dict
from backend.tools.registry import all_tools, available_tools

if TYPE_CHECKING:
    from backend.mcp.client import McpManager

#: how much of one observation goes back into the prompt (the default model has an 8k context)
OBSERVATION_PROMPT_CHARS = 1500
#: how much of one observation is kept in the trace
OBSERVATION_TRACE_CHARS = 8000


def select_tools(
    names: list[str] | None = None, settings: Settings | None = None, mcp: McpManager | None = None
) -> dict[str, Tool]:
    """The registry's tools, restricted to ``names`` (in registry order) when given.

    With ``settings``, only tools that can run with that configuration (no web search without a key);
    with the app's MCP manager too, the attached MCP servers' tools as well.
    """
    tools = available_tools(settings, mcp) if settings is not None else all_tools()
    if names is None:
        return dict(tools)
    return {n: t for n, t in tools.items() if n in names}


_WEB = re.compile(r"\b(web|internet|online|google|news)\b", re.IGNORECASE)


def relevant_tools(query: str, tools: dict[str, Tool]) -> dict[str, Tool]:
    """The tools a request's keywords point at, in registry order; all of them when none is clear.

    A short tool list keeps the prompt small (the default model has 8k context and little compute)
    and makes a small model far more likely to pick the right tool.
    """
    cats = tool_categories(query)
    wanted = {name for name, t in tools.items() if cats & set(t.categories)}
    if "wikipedia" in cats and not _WEB.search(query):
        wanted.discard("web_search")  # "look up X on Wikipedia" names its source
    chosen = {n: t for n, t in tools.items() if n in wanted}
    if not chosen:
        return dict(tools)
    # the router knows no keywords for attached MCP servers' tools: they are always offered
    return {n: t for n, t in tools.items() if n in chosen or is_mcp_tool(n)}


def specs(tools: dict[str, Tool]) -> list[dict[str, Any]]:
    return [t.openai_spec() for t in tools.values()]


def signature(t: Tool) -> str:
    """``name(arg: type, ...): description`` for text prompts."""
    props = t.parameters.get("properties", {})
    args = ", ".join(f"{k}: {v.get('type', 'any')}" for k, v in props.items())
    return f"- {t.name}({args}): {t.description}"


async def run_tool(tools: dict[str, Tool], ctx: ToolContext, name: str, arguments: Any) -> ToolResult:
    """Run a call; an unknown tool is an error observation, like any other tool failure."""
    t = tools.get(name)
    if t is None:
        return ToolResult(False, f"Error: unknown tool '{name}'. Available tools: {', '.join(tools) or 'none'}.")
    return await t.run(ctx, arguments)


def prompt_observation(text: str) -> str:
    if len(text) <= OBSERVATION_PROMPT_CHARS:
        return text
    return text[:OBSERVATION_PROMPT_CHARS] + f"\n[... {len(text) - OBSERVATION_PROMPT_CHARS} more characters cut]"


def trace_observation(text: str) -> str:
    return text if len(text) <= OBSERVATION_TRACE_CHARS else text[:OBSERVATION_TRACE_CHARS] + " [...]"


def normalize_args(arguments: Any) -> dict[str, Any] | str | None:
    """Arguments as given to the trace: a dict when they are a JSON object, else as they came."""
    if arguments is None:
        return None
    as_dict = arguments_dict(arguments)
    return as_dict if as_dict is not None and arguments != "" else arguments


def hints(tools: dict[str, Tool]) -> str:
    """The offered tools' usage tips (``Tool.hint``) as a prompt paragraph, or ""."""
    lines = [t.hint for t in tools.values() if t.hint]
    return ("\nTool tips:\n- " + "\n- ".join(lines)) if lines else ""
