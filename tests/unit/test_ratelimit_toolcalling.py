from __future__ import annotations

import json

import pytest

from backend.errors import BadRequestError, RateLimitError
from backend.llm.tool_calling import forced_call_schema, parse_tool_calls, resolve_tool_choice
from backend.ratelimit import RateLimiter

TOOLS = [
    {"type": "function", "function": {"name": "add", "parameters": {"type": "object", "properties": {"a": {"type": "number"}}}}},
    {"type": "function", "function": {"name": "mul", "parameters": {"type": "object", "properties": {}}}},
]


def test_requests_per_minute():
    rl = RateLimiter(rpm=3, tpm=0)
    for _ in range(3):
        state = rl.check("u")
    assert state.remaining_requests == 0
    with pytest.raises(RateLimitError) as info:
        rl.check("u")
    assert int(info.value.headers["Retry-After"]) >= 1
    assert info.value.headers["x-ratelimit-remaining-requests"] == "0"
    rl.check("other")  # per user


def test_tokens_per_minute():
    rl = RateLimiter(rpm=100, tpm=1000)
    rl.check("u", 10)
    rl.record_tokens("u", 990)
    with pytest.raises(RateLimitError):
        rl.check("u", 50)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"name": "add", "arguments": {"a": 1}}', [("add", {"a": 1})]),
        ('<tool_call>\n{"name": "mul", "arguments": {}}\n</tool_call>', [("mul", {})]),
        ('```json\n{"name": "add", "arguments": "{\\"a\\": 2}"}\n```', [("add", {"a": 2})]),
        ('[{"name": "add", "arguments": {"a": 1}}, {"name": "mul", "arguments": {}}]', [("add", {"a": 1}), ("mul", {})]),
        ('{"name": "rm_rf", "arguments": {}}', None),
        ("The answer is 42.", None),
        ('{"a": 1}', None),
    ],
)
def test_parse_tool_calls(text, expected):
    calls = parse_tool_calls(text, TOOLS)
    if expected is None:
        assert calls is None
    else:
        assert [(c.name, json.loads(c.arguments)) for c in calls] == expected


def test_tool_choice_resolution_and_schemas():
    assert resolve_tool_choice(TOOLS, None).kind == "auto"
    assert resolve_tool_choice(None, None).kind == "none"
    named = resolve_tool_choice(TOOLS, {"type": "function", "function": {"name": "mul"}})
    assert forced_call_schema(TOOLS, named)["properties"]["name"] == {"const": "mul"}
    required = forced_call_schema(TOOLS, resolve_tool_choice(TOOLS, "required"))
    assert [v["properties"]["name"]["const"] for v in required["anyOf"]] == ["add", "mul"]
    with pytest.raises(BadRequestError):
        resolve_tool_choice(TOOLS, {"type": "function", "function": {"name": "nope"}})
    with pytest.raises(BadRequestError):
        resolve_tool_choice(TOOLS, "sometimes")
