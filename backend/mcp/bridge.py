"""MCP tools as registry tools: names, JSON-schema argument checks, results as observations.

An attached server's tool ``search`` on server ``docs`` becomes the registry tool ``mcp_docs_search``
with the server's own input schema. Its calls run through ``Tool.run`` like any built-in tool: bad
arguments, a server error, a timeout or a dropped connection are error observations, never the end
of an agent's run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

import jsonschema

from backend.tools.base import Tool, ToolContext, ToolError, ToolResult

#: every attached server's tool name starts with this (the agents always offer these tools)
MCP_TOOL_PREFIX = "mcp_"
MAX_NAME_CHARS = 64  # OpenAI's limit on function names
MAX_DESCRIPTION_CHARS = 1024
_NOT_NAME = re.compile(r"[^A-Za-z0-9_-]+")


def tool_name(server: str, tool: str) -> str:
    """``mcp_<server>_<tool>``, made a valid function name (letters, digits, ``_``, ``-``; 64 at most)."""
    name = f"{MCP_TOOL_PREFIX}{server}_{_NOT_NAME.sub('_', tool).strip('_') or 'tool'}"
    return name[:MAX_NAME_CHARS]


def is_mcp_tool(name: str) -> bool:
    return name.startswith(MCP_TOOL_PREFIX)


def input_schema(schema: dict[str, Any] | None) -> dict[str, Any]:
    """The server's input schema as function parameters (always an object schema)."""
    schema = dict(schema or {})
    if schema.get("type") != "object":
        schema = {"type": "object", "properties": {}, **{k: v for k, v in schema.items() if k != "type"}}
    schema.setdefault("properties", {})
    return schema


class JsonSchemaArguments:
    """Stands where a built-in tool has its pydantic model: ``Tool.parse_arguments`` calls
    ``model_validate(arguments).model_dump()``; here the check is the server's JSON schema."""

    def __init__(self, tool: str, schema: dict[str, Any]) -> None:
        self._tool = tool
        try:
            cls = jsonschema.validators.validator_for(schema)
            cls.check_schema(schema)
            self._validator: Any = cls(schema)
        except jsonschema.SchemaError:
            self._validator = None  # an unusable schema: let the server judge the arguments

    def model_validate(self, arguments: dict[str, Any]) -> JsonSchemaArguments._Valid:
        if self._validator is not None:
            error = jsonschema.exceptions.best_match(self._validator.iter_errors(arguments))
            if error is not None:
                where = ".".join(str(p) for p in error.absolute_path)
                raise ToolError(f"invalid arguments for {self._tool}{f' at {where!r}' if where else ''}: {error.message}")
        return self._Valid(arguments)

    class _Valid:
        def __init__(self, arguments: dict[str, Any]) -> None:
            self._arguments = arguments

        def model_dump(self) -> dict[str, Any]:
            return dict(self._arguments)


def result_text(result: Any, max_chars: int) -> str:
    """A ``CallToolResult``'s content as one observation: text parts joined, other parts named."""
    parts: list[str] = []
    for block in getattr(result, "content", None) or []:
        kind = getattr(block, "type", "")
        if kind == "text":
            parts.append(block.text)
        elif kind in ("image", "audio"):
            parts.append(f"[{kind} content: {getattr(block, 'mimeType', 'unknown type')}]")
        elif kind == "resource_link":
            parts.append(f"[resource: {block.uri}]")
        elif kind == "resource":
            resource = block.resource
            text = getattr(resource, "text", None)
            parts.append(text if isinstance(text, str) else f"[resource: {resource.uri}]")
    structured = getattr(result, "structuredContent", None)
    if not parts and structured is not None:
        parts.append(json.dumps(structured, ensure_ascii=False, default=str))
    text = "\n".join(parts) if parts else "(the tool returned no content)"
    if len(text) > max_chars:
        text = text[:max_chars] + f"\n[... {len(text) - max_chars} more characters cut]"
    return text


def make_tool(
    server: str,
    definition: Any,
    call: Callable[[str, dict[str, Any]], Awaitable[ToolResult]],
    timeout_s: float,
) -> Tool:
    """A registry ``Tool`` for one MCP tool definition (``mcp.types.Tool``); ``call(tool, args)`` runs it."""
    name = tool_name(server, definition.name)
    schema = input_schema(definition.inputSchema)
    summary = (definition.description or getattr(definition, "title", None) or definition.name).strip()
    description = f"{summary} (MCP server '{server}')"[:MAX_DESCRIPTION_CHARS]
    remote = definition.name

    async def run(ctx: ToolContext, **arguments: Any) -> ToolResult:
        return await call(remote, arguments)

    return Tool(
        name=name,
        description=description,
        parameters=schema,
        func=run,
        _model=JsonSchemaArguments(name, schema),
        timeout_s=timeout_s,
    )
