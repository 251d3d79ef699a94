"""How OpenAI messages are shaped for a chat template (no model needed)."""

from __future__ import annotations

import json

import pytest

from backend.errors import BadRequestError
from backend.llm.embedded import normalise_messages, physical_cores
from backend.llm.factory import create_provider
from backend.llm.ollama_provider import OllamaProvider
from backend.llm.openai_provider import OpenAIProvider

TOOL = {"type": "function", "function": {"name": "lookup", "description": "Look up.", "parameters": {"type": "object"}}}
CONVO = [
    {"role": "developer", "content": "Be brief."},
    {"role": "user", "content": [{"type": "text", "text": "part one"}, {"type": "text", "text": "part two"}]},
    {"role": "assistant", "content": None,
     "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": "x"}'}}]},
    {"role": "tool", "tool_call_id": "c1", "content": "result text"},
]


def test_template_with_tool_support_gets_structured_calls():
    out = normalise_messages(CONVO, native_tools=True, tools=[TOOL])
    assert out[0] == {"role": "system", "content": "Be brief."}
    assert out[1]["content"] == "part one\npart two"
    assert out[2] == {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "lookup", "arguments": {"q": "x"}}}]}
    assert out[3] == {"role": "tool", "content": "result text"}


def test_template_without_tool_support_gets_text_protocol():
    out = normalise_messages(CONVO, native_tools=False, tools=[TOOL])
    assert out[0]["role"] == "system" and out[0]["content"].startswith("Be brief.")
    assert "<tools>" in out[0]["content"] and '"name": "lookup"' in out[0]["content"]
    assert out[2]["role"] == "assistant"
    body = out[2]["content"].removeprefix("<tool_call>\n").removesuffix("\n</tool_call>")
    assert json.loads(body) == {"name": "lookup", "arguments": {"q": "x"}}
    assert out[3] == {"role": "user", "content": "<tool_response>\nresult text\n</tool_response>"}


@pytest.mark.parametrize(
    ("messages", "fragment"),
    [
        ([], "at least one message"),
        ([{"role": "wizard", "content": "hi"}], "Unsupported message role 'wizard'"),
        ([{"role": "user", "content": 42}], "string or a list"),
    ],
)
def test_bad_messages_are_400s(messages, fragment):
    with pytest.raises(BadRequestError, match=fragment):
        normalise_messages(messages, native_tools=True, tools=None)


def test_factory_builds_each_provider_without_connecting(settings_factory):
    assert isinstance(create_provider(settings_factory(llm_provider="ollama")), OllamaProvider)
    assert isinstance(create_provider(settings_factory(llm_provider="openai")), OpenAIProvider)
    embedded = create_provider(settings_factory(llm_provider="embedded"))
    assert embedded.model_id == "qwen2.5-coder-0.5b-instruct" and not embedded.loaded
    named = create_provider(settings_factory(llm_provider="embedded", embedded_model_name="my-model"))
    assert named.model_id == "my-model"


def test_thread_default_is_physical_cores():
    assert 1 <= physical_cores() <= 64
