"""Recovering tool calls from model text: the one place every agent reads calls out of prose.

Providers already turn Qwen's ``<tool_call>`` tags and a lone JSON object into native
``Completion.tool_calls`` (``backend.llm.tool_calling``). What is left for the agents:

* ``recover_calls``: calls written after some text, or several bare ``{"name", "arguments"}``
  objects in one reply (a small model often writes call after call): the first one not made yet;
* ``failed_call_problem``: a reply that tried to call a tool and failed (bad JSON, unknown tool),
  so the agent can say what was wrong instead of showing the attempt as the answer;
* ``parse_input``: a text-format ``Action Input:`` (a JSON object, possibly fenced, or bare text);
* ``call_key``: the identity of a call (tool + normalised arguments), to spot repeats.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from typing import Any

from backend.llm.tool_calling import make_call, parse_tool_calls
from backend.llm.types import ToolCall
from backend.tools.base import Tool, arguments_dict

_JSON_OBJ_RE = re.compile(r"\{.*\}", re.DOTALL)
#: at most this many JSON objects are read from one reply
MAX_OBJECTS = 8


def call_key(name: str, arguments: Any) -> str:
    """``tool:{sorted JSON arguments}``: equal for the same call however its arguments were written."""
    args = arguments_dict(arguments)
    return name + ":" + json.dumps(args if args is not None else arguments, sort_keys=True, default=str)


def recover_calls(
    text: str, tools: Mapping[str, Tool], made: Collection[str] = ()
) -> tuple[list[ToolCall], str]:
    """(one call to run, the text before it) from a reply's text; ``([], text)`` if it holds none.

    Prefers a call whose ``call_key`` is not in ``made`` (the calls already run).
    """
    if "<tool_call>" in text:
        specs = [t.openai_spec() for t in tools.values()]
        calls = parse_tool_calls(text, specs) or []
        return calls[:1], text[: text.index("<tool_call>")]
    found: list[tuple[ToolCall, int]] = []
    decoder = json.JSONDecoder()
    pos = text.find("{")
    while pos != -1 and len(found) < MAX_OBJECTS:
        try:
            obj, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            pos = text.find("{", pos + 1)
            continue
        if isinstance(obj, dict) and obj.get("name") in tools and isinstance(obj.get("arguments"), dict):
            found.append((make_call(obj["name"], obj["arguments"]), pos))
        pos = text.find("{", end)
    if not found:
        return [], text
    fresh = [(c, p) for c, p in found if call_key(c.name, c.arguments) not in made]
    call, at = (fresh or found)[0]
    before = text[:at]
    return [call], before if not before.lstrip().startswith("```") else ""


def failed_call_problem(text: str, tool_names: Collection[str]) -> str | None:
    """What went wrong when a reply tried to call a tool but produced no usable call; else None."""
    s = text.strip()
    m = _JSON_OBJ_RE.search(s)
    if m and '"name"' in m.group(0):
        try:
            obj = json.loads(m.group(0))
        except json.JSONDecodeError:
            return "the tool call was not valid JSON"
        if isinstance(obj, dict) and isinstance(obj.get("name"), str) and ("arguments" in obj or "parameters" in obj):
            if obj["name"] not in tool_names:
                return f"'{obj['name']}' is not a tool (the tools are: {', '.join(tool_names)})"
            return "the tool call's arguments were not a JSON object"
    if "<tool_call>" in s:
        return "the <tool_call> did not contain a JSON object with a tool 'name' and 'arguments'"
    return None


def parse_input(raw: str) -> dict[str, Any] | str:
    """A text-format Action Input: a JSON object if it is one (or contains one), else the bare text."""
    text = raw.strip()
    if text.startswith("```"):
        text = text.strip("`")
        if text.lower().startswith("json"):
            text = text[4:]
        text = text.strip()
    whole = arguments_dict(text)
    if whole is not None and text:
        return whole
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        inner = arguments_dict(text[start : end + 1])
        if inner is not None:
            return inner
    return text.strip().strip('"')


def forced_arguments(tool: Tool, calls: list[ToolCall] | None, text: str) -> dict[str, Any] | None:
    """The arguments of a forced call to ``tool``: from the native call, else recovered from ``text``."""
    if not calls:
        calls, _ = recover_calls(text, {tool.name: tool})
    for c in calls or []:
        if c.name == tool.name:
            return arguments_dict(c.arguments)
    return None
