"""Enforcing ``tool_choice`` on models that only produce text.

* ``forced_call_schema``: JSON schema of one call ``{"name", "arguments"}`` restricted to the allowed
  tool(s); providers turn it into a grammar (llama.cpp) or a ``format`` (Ollama), so a forced
  call always parses and always names an allowed tool.
* ``parse_tool_calls``: recovers calls a model wrote as text under ``tool_choice="auto"``
  (Qwen's ``<tool_call>`` tags, a ```json fence, or a bare JSON object / list).
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from typing import Any, Literal

from backend.errors import BadRequestError
from backend.llm.types import ToolCall, ToolSpec

ChoiceKind = Literal["none", "auto", "required", "named"]


@dataclass(frozen=True)
class ToolChoice:
    kind: ChoiceKind
    name: str | None = None


def tool_names(tools: list[ToolSpec]) -> list[str]:
    return [t["function"]["name"] for t in tools if t.get("type", "function") == "function"]


def resolve_tool_choice(tools: list[ToolSpec] | None, tool_choice: Any) -> ToolChoice:
    """Validate ``tool_choice`` against ``tools``; OpenAI's defaults: auto with tools, none without."""
    if not tools:
        if tool_choice in (None, "none", "auto"):
            return ToolChoice("none")
        raise BadRequestError(
            "tool_choice requires 'tools' to be set.", param="tool_choice", code="invalid_value"
        )
    if tool_choice is None or tool_choice == "auto":
        return ToolChoice("auto")
    if tool_choice == "none":
        return ToolChoice("none")
    if tool_choice == "required":
        return ToolChoice("required")
    if isinstance(tool_choice, dict):
        name = (tool_choice.get("function") or {}).get("name")
        if tool_choice.get("type") == "function" and isinstance(name, str):
            if name not in tool_names(tools):
                raise BadRequestError(
                    f"tool_choice names function '{name}', which is not in 'tools'.",
                    param="tool_choice",
                    code="invalid_value",
                )
            return ToolChoice("named", name)
    raise BadRequestError(
        "tool_choice must be 'none', 'auto', 'required' or {\"type\": \"function\", \"function\": {\"name\": ...}}.",
        param="tool_choice",
        code="invalid_value",
    )


def _arguments_schema(tool: ToolSpec) -> dict[str, Any]:
    params = tool["function"].get("parameters") or {"type": "object", "properties": {}}
    if params.get("type") != "object":
        params = {"type": "object", "properties": {}}
    return params


def forced_call_schema(tools: list[ToolSpec], choice: ToolChoice) -> dict[str, Any]:
    allowed = [t for t in tools if choice.kind != "named" or t["function"]["name"] == choice.name]
    variants = [
        {
            "type": "object",
            "properties": {"name": {"const": t["function"]["name"]}, "arguments": _arguments_schema(t)},
            "required": ["name", "arguments"],
        }
        for t in allowed
    ]
    return variants[0] if len(variants) == 1 else {"anyOf": variants}


def new_call_id() -> str:
    return "call_" + secrets.token_hex(12)


def make_call(name: str, arguments: Any) -> ToolCall:
    args = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
    return ToolCall(id=new_call_id(), name=name, arguments=args)


_TAG_RE = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)
_FENCE_RE = re.compile(r"```(?:json|tool_call)?\s*(.*?)```", re.S)


def _candidates(text: str) -> list[str]:
    tags = _TAG_RE.findall(text)
    if tags:
        return tags
    fences = _FENCE_RE.findall(text)
    if fences:
        return fences
    return [text.strip()]


def _as_calls(obj: Any, allowed: set[str]) -> list[ToolCall] | None:
    items = obj if isinstance(obj, list) else [obj]
    calls: list[ToolCall] = []
    for item in items:
        if not isinstance(item, dict):
            return None
        if "function" in item and isinstance(item["function"], dict):  # OpenAI-shaped
            item = item["function"]
        name = item.get("name")
        args = item.get("arguments", item.get("parameters", {}))
        if not isinstance(name, str) or name not in allowed:
            return None
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except json.JSONDecodeError:
                return None
        if not isinstance(args, dict):
            return None
        calls.append(make_call(name, args))
    return calls or None


def parse_tool_calls(text: str, tools: list[ToolSpec]) -> list[ToolCall] | None:
    """Tool calls written as text, or ``None`` if ``text`` is an ordinary answer."""
    allowed = set(tool_names(tools))
    calls: list[ToolCall] = []
    for chunk in _candidates(text):
        try:
            obj = json.loads(chunk)
        except json.JSONDecodeError:
            continue
        found = _as_calls(obj, allowed)
        if found:
            calls.extend(found)
    return calls or None


def looks_like_call_start(prefix: str) -> bool | None:
    """For streaming under ``auto``: True (buffer it), False (plain text), None (undecided)."""
    s = prefix.lstrip()
    if not s:
        return None
    for marker in ("<tool_call>", "```", "{", "["):
        if s.startswith(marker):
            return True
        if marker.startswith(s):
            return None
    return False
