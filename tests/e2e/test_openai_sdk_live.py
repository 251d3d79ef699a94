"""End to end: the real server (subprocess on loopback) + the real embedded model + the official SDK.

The assertions are the server's guarantees (the response and every stream chunk validate against OpenAI's
schema, usage adds up, JSON output parses, a forced tool is called with schema-valid arguments, the
conversation is stored exactly as exchanged), never the 0.5B model's wording: answer quality is a rate,
measured in bench/. Where a known text is needed, a JSON-schema ``const`` makes the grammar force it.
"""

from __future__ import annotations

import json

import httpx
import jsonschema
import openai
import pytest

from tests.openai_schema import validate

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def chat_model(live_server) -> str:
    return live_server.model() + ":chat"


def test_models_listed(live_server):
    models = live_server.openai().models.list()
    ids = [m.id for m in models.data]
    base = ids[0]
    assert ids == [base, base + ":chat", base + ":code", base + ":react", base + ":plan-execute", "all-MiniLM-L6-v2"]
    raw = httpx.get(live_server.v1 + "/models", headers={"Authorization": f"Bearer {live_server.tokens['bob']}"}).json()
    validate(raw, "ListModelsResponse")


COUNT = "1 2 3 4 5"
FORCED = {"type": "json_schema", "json_schema": {"name": "count", "strict": True, "schema": {
    "type": "object", "properties": {"count": {"const": COUNT}}, "required": ["count"], "additionalProperties": False}}}


def test_non_stream_real_answer(live_server, chat_model):
    client = live_server.openai("bob")
    r = client.chat.completions.create(
        model=chat_model, messages=[{"role": "user", "content": "What is the capital of France? Answer in one word."}],
        max_tokens=16, temperature=0, seed=1)
    validate(r.model_dump(exclude_unset=True), "CreateChatCompletionResponse")
    assert isinstance(r.choices[0].message.content, str) and r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens > 5 and 1 <= r.usage.completion_tokens <= 16
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_stream_with_usage_ends_with_done(live_server, chat_model):
    body = {"model": chat_model, "stream": True, "stream_options": {"include_usage": True}, "max_tokens": 40,
            "response_format": FORCED, "messages": [{"role": "user", "content": "Count from 1 to 5, as JSON."}]}
    with httpx.stream("POST", live_server.v1 + "/chat/completions", json=body, timeout=300,
                      headers={"Authorization": f"Bearer {live_server.tokens['bob']}"}) as r:
        assert r.status_code == 200
        lines = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    for c in chunks:
        validate(c, "CreateChatCompletionStreamResponse")
    assert len({c["id"] for c in chunks}) == 1
    assert sum(1 for c in chunks for ch in c["choices"] if ch["finish_reason"]) == 1
    text = "".join(ch["delta"].get("content") or "" for c in chunks for ch in c["choices"])
    assert json.loads(text) == {"count": COUNT}  # the pieces join up to exactly what the grammar forced
    assert sum(1 for c in chunks for ch in c["choices"] if ch["delta"].get("content")) >= 3  # streamed in pieces
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] >= 1
    # and the SDK parses the same stream
    stream = live_server.openai("bob").chat.completions.create(
        model=chat_model, messages=[{"role": "user", "content": "Say hi."}], stream=True, max_tokens=8,
        stream_options={"include_usage": True})
    pieces = list(stream)
    assert pieces[-1].usage is not None and pieces[-1].usage.total_tokens > 0


def test_json_mode_output_parses(live_server, chat_model):
    r = live_server.openai("bob").chat.completions.create(
        model=chat_model, response_format={"type": "json_object"}, max_tokens=80, temperature=0,
        messages=[{"role": "user", "content": "Give a JSON object with keys name and age for Ada Lovelace (36)."}])
    assert isinstance(json.loads(r.choices[0].message.content), dict)


def test_json_schema_output_validates(live_server, chat_model):
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "population_millions": {"type": "number"}},
              "required": ["city", "population_millions"], "additionalProperties": False}
    r = live_server.openai("bob").chat.completions.create(
        model=chat_model, max_tokens=60, temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": schema, "strict": True}},
        messages=[{"role": "user", "content": "Tokyo's population in millions, as JSON."}])
    jsonschema.validate(json.loads(r.choices[0].message.content), schema)


def test_forced_tool_choice_yields_that_call(live_server, chat_model):
    tools = [
        {"type": "function", "function": {"name": "get_weather", "description": "Current weather for a city",
                                          "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                         "required": ["city"]}}},
        {"type": "function", "function": {"name": "get_time", "description": "Current time in a timezone",
                                          "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}}}},
    ]
    r = live_server.openai("bob").chat.completions.create(
        model=chat_model, tools=tools, tool_choice={"type": "function", "function": {"name": "get_weather"}},
        messages=[{"role": "user", "content": "How warm is it in Berlin?"}], max_tokens=60, temperature=0)
    (call,) = r.choices[0].message.tool_calls
    assert r.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and call.id
    jsonschema.validate(json.loads(call.function.arguments), tools[0]["function"]["parameters"])
    # "required" also always yields a call, streamed as indexed deltas
    stream = live_server.openai("bob").chat.completions.create(
        model=chat_model, tools=tools, tool_choice="required", stream=True, max_tokens=60, temperature=0,
        messages=[{"role": "user", "content": "What time is it in Tokyo?"}])
    names, args = [], ""
    for chunk in stream:
        for ch in chunk.choices:
            for tc in ch.delta.tool_calls or []:
                assert tc.index == 0
                if tc.function.name:
                    names.append(tc.function.name)
                args += tc.function.arguments or ""
    assert len(names) == 1 and names[0] in {"get_weather", "get_time"}
    spec = next(t for t in tools if t["function"]["name"] == names[0])
    jsonschema.validate(json.loads(args), spec["function"]["parameters"])


def test_multi_turn_conversation_stored_and_listed(live_server, chat_model):
    client = live_server.openai("bob")
    first = client.chat.completions.create(model=chat_model, max_tokens=20, temperature=0,
                                           messages=[{"role": "user", "content": "My name is Zorblax. Say hello."}],
                                           extra_body={"conversation_id": "new"})
    conv_id = first.model_extra["conversation_id"]
    history = [{"role": "user", "content": "My name is Zorblax. Say hello."},
               {"role": "assistant", "content": first.choices[0].message.content},
               {"role": "user", "content": "What is my name?"}]
    second = client.chat.completions.create(model=chat_model, max_tokens=20, temperature=0, messages=history,
                                            extra_body={"conversation_id": conv_id})
    assert second.model_extra["conversation_id"] == conv_id
    assert second.usage.prompt_tokens > first.usage.prompt_tokens  # the history reached the model
    headers = {"Authorization": f"Bearer {live_server.tokens['bob']}"}
    listing = httpx.get(live_server.base_url + "/api/conversations", headers=headers).json()
    assert conv_id in [c["id"] for c in listing["data"]]
    conv = httpx.get(f"{live_server.base_url}/api/conversations/{conv_id}", headers=headers).json()
    assert [m["role"] for m in conv["messages"]] == ["user", "assistant", "user", "assistant"]
    assert [m["content"] for m in conv["messages"]] == [history[0]["content"], first.choices[0].message.content,
                                                        "What is my name?", second.choices[0].message.content]
    other = httpx.get(f"{live_server.base_url}/api/conversations/{conv_id}",
                      headers={"Authorization": f"Bearer {live_server.tokens['alice']}"})
    assert other.status_code == 404


def test_errors_through_the_sdk(live_server, chat_model):
    bad = openai.OpenAI(base_url=live_server.v1, api_key="not-a-token", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model=chat_model, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.NotFoundError):
        live_server.openai().chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError) as info:
        live_server.openai().chat.completions.create(model=chat_model, messages=[{"role": "user", "content": "x"}], n=3)
    assert info.value.body["param"] == "n"
    r = httpx.post(live_server.v1 + "/chat/completions", content=b'{"model": 1,',
                   headers={"Authorization": f"Bearer {live_server.tokens['bob']}", "content-type": "application/json"})
    assert r.status_code == 400
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}


def test_api_key_works_with_sdk(live_server, chat_model):
    headers = {"Authorization": f"Bearer {live_server.tokens['bob']}"}
    key = httpx.post(live_server.base_url + "/api/keys", json={"name": "sdk"}, headers=headers).json()["key"]
    client = openai.OpenAI(base_url=live_server.v1, api_key=key, max_retries=0)
    r = client.chat.completions.create(model=chat_model, messages=[{"role": "user", "content": "Say OK."}], max_tokens=5)
    assert r.choices[0].finish_reason in ("stop", "length") and 1 <= r.usage.completion_tokens <= 5


def test_health_detailed_reports_model_without_secrets(live_server):
    r = httpx.get(live_server.base_url + "/health/detailed")
    body = r.json()
    assert r.status_code == 200 and body["model"]["ok"] is True and body["storage"]["ok"] is True
    assert "secret" not in r.text.lower() and str(live_server.data_dir) not in r.text
