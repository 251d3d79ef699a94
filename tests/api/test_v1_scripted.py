"""/v1 behaviour on a scripted model: response shapes, streaming protocol, tool_choice, errors."""

from __future__ import annotations

import json

import openai
import pytest

from tests.openai_schema import validate


def sdk(api, who: str = "alice") -> openai.OpenAI:
    return openai.OpenAI(base_url="http://testserver/v1", api_key=api.tokens[who], http_client=api.client, max_retries=0)


def sse_events(text: str) -> list:
    out = []
    for line in text.splitlines():
        if line.startswith("data: "):
            payload = line[6:]
            out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


def test_models_list_and_modes(api):
    r = api.client.get("/v1/models", headers=api.auth("bob"))
    assert r.status_code == 200
    validate(r.json(), "ListModelsResponse")
    ids = [m["id"] for m in r.json()["data"]]
    assert ids == ["scripted-model", "scripted-model:chat", "scripted-model:code", "scripted-model:react",
                   "scripted-model:plan-execute", "all-MiniLM-L6-v2"]  # the /v1/embeddings model, listed last
    one = api.client.get("/v1/models/scripted-model:react", headers=api.auth("bob"))
    validate(one.json(), "Model")
    missing = api.client.get("/v1/models/nope", headers=api.auth("bob"))
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"


def test_non_stream_completion_validates(api):
    body = {"model": "scripted-model:chat", "messages": [{"role": "user", "content": "hi"}]}
    r = api.client.post("/v1/chat/completions", json=body, headers=api.auth("bob"))
    assert r.status_code == 200, r.text
    data = r.json()
    validate(data, "CreateChatCompletionResponse")
    assert data["choices"][0]["message"]["content"] == "Hello from the scripted model."
    assert data["usage"]["total_tokens"] == data["usage"]["prompt_tokens"] + data["usage"]["completion_tokens"] > 0


def test_stream_protocol(api):
    body = {"model": "scripted-model:chat", "stream": True, "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "hi"}]}
    r = api.client.post("/v1/chat/completions", json=body, headers=api.auth("bob"))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    for c in chunks:
        validate(c, "CreateChatCompletionStreamResponse")
    assert len({c["id"] for c in chunks}) == 1
    finishes = [ch["finish_reason"] for c in chunks for ch in c["choices"] if ch["finish_reason"]]
    assert finishes == ["stop"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0
    text = "".join(ch["delta"].get("content") or "" for c in chunks for ch in c["choices"])
    assert text == "Hello from the scripted model."


def test_sdk_forced_tool_choice_streams_indexed_tool_calls(api):
    api.provider.outputs = ['{"name": "get_weather", "arguments": {"city": "Paris"}}']
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
             {"type": "function", "function": {"name": "other", "parameters": {"type": "object", "properties": {}}}}]
    stream = sdk(api).chat.completions.create(
        model="scripted-model", messages=[{"role": "user", "content": "weather in Paris?"}], tools=tools,
        tool_choice={"type": "function", "function": {"name": "get_weather"}}, stream=True)
    calls: dict[int, dict] = {}
    finish = []
    for chunk in stream:
        for ch in chunk.choices:
            for tc in ch.delta.tool_calls or []:
                entry = calls.setdefault(tc.index, {"name": "", "arguments": ""})
                if tc.function.name:
                    entry["name"] = tc.function.name
                entry["arguments"] += tc.function.arguments or ""
            if ch.finish_reason:
                finish.append(ch.finish_reason)
    assert finish == ["tool_calls"]
    assert calls[0]["name"] == "get_weather" and json.loads(calls[0]["arguments"]) == {"city": "Paris"}
    # the provider was constrained to the named tool's schema (grammar), not just asked nicely
    constraint = api.provider.calls[-1]["constraint"]
    assert constraint.schema["properties"]["name"] == {"const": "get_weather"}


def test_tool_choice_none_never_returns_calls(api):
    api.provider.outputs = ['{"name": "get_weather", "arguments": {"city": "Paris"}}']
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}}]
    r = sdk(api).chat.completions.create(model="scripted-model", messages=[{"role": "user", "content": "x"}],
                                         tools=tools, tool_choice="none")
    assert r.choices[0].message.tool_calls is None
    assert api.provider.calls[-1]["params"].tools is None  # tools were not even shown to the model


def test_auto_recovers_call_written_as_text(api):
    api.provider.outputs = ['```json\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n```']
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
    r = sdk(api).chat.completions.create(model="scripted-model", messages=[{"role": "user", "content": "x"}], tools=tools)
    validate(r.model_dump(exclude_unset=True), "CreateChatCompletionResponse")
    assert r.choices[0].finish_reason == "tool_calls"
    assert r.choices[0].message.content is None
    assert json.loads(r.choices[0].message.tool_calls[0].function.arguments) == {"city": "Oslo"}


def test_all_message_roles_accepted(api):
    messages = [
        {"role": "developer", "content": "be brief"},
        {"role": "system", "content": [{"type": "text", "text": "sys"}]},
        {"role": "user", "content": [{"type": "text", "text": "weather?"}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "w", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    r = api.client.post("/v1/chat/completions", json={"model": "scripted-model:chat", "messages": messages,
                                                      "some_future_field": 1}, headers=api.auth("bob"))
    assert r.status_code == 200, r.text
    sent = api.provider.calls[-1]["messages"]
    assert [m["role"] for m in sent] == ["system", "system", "user", "assistant", "tool"]
    assert sent[3]["content"] is None and sent[3]["tool_calls"][0]["id"] == "call_1"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "scripted-model", "messages": []}, "messages"),
        ({"model": "scripted-model", "messages": [{"role": "wizard", "content": "x"}]}, "messages[0]"),
        ({"model": "scripted-model", "messages": [{"role": "user", "content": "x"}], "n": 2}, "n"),
        ({"model": "scripted-model", "messages": [{"role": "user", "content": "x"}], "temperature": 7}, "temperature"),
        ({"model": "scripted-model", "messages": [{"role": "user", "content": "x"}], "tool_choice": "required"}, "tool_choice"),
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
    ],
)
def test_bad_requests_are_openai_shaped_400(api, body, param):
    r = api.client.post("/v1/chat/completions", json=body, headers=api.auth("bob"))
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["type"] == "invalid_request_error"
    assert err["param"] is not None and err["param"].startswith(param)


def test_malformed_json_and_sdk_errors(api):
    r = api.client.post("/v1/chat/completions", content=b"{nope", headers=api.auth("bob") | {"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    bad = openai.OpenAI(base_url="http://testserver/v1", api_key="wrong", http_client=api.client, max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    with pytest.raises(openai.NotFoundError):
        sdk(api).chat.completions.create(model="gpt-nope", messages=[{"role": "user", "content": "x"}])


def test_image_input_is_a_clear_400(api):
    msg = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}
    r = api.client.post("/v1/chat/completions", json={"model": "scripted-model", "messages": [msg]}, headers=api.auth("bob"))
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages[0].content[0]"


def test_context_length_exceeded(api):
    long = "word " * 20000
    r = api.client.post("/v1/chat/completions", json={"model": "scripted-model", "messages": [{"role": "user", "content": long}]},
                        headers=api.auth("bob"))
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"


def test_conversation_continuity_and_isolation(api):
    client = sdk(api, "bob")
    first = client.chat.completions.create(model="scripted-model:chat", messages=[{"role": "user", "content": "first question"}],
                                           extra_body={"conversation_id": "new"})
    conv_id = first.model_extra["conversation_id"]
    assert conv_id.startswith("conv_")
    raw = client.chat.completions.with_raw_response.create(
        model="scripted-model:chat",
        messages=[{"role": "user", "content": "first question"}, {"role": "assistant", "content": first.choices[0].message.content},
                  {"role": "user", "content": "second"}],
        extra_headers={"X-Conversation-Id": conv_id})
    assert raw.headers["x-conversation-id"] == conv_id
    listing = api.client.get("/api/conversations", headers=api.auth("bob")).json()
    assert listing["total"] == 1 and listing["data"][0]["message_count"] == 4
    conv = api.client.get(f"/api/conversations/{conv_id}", headers=api.auth("bob")).json()
    assert [m["role"] for m in conv["messages"]] == ["user", "assistant", "user", "assistant"]
    assert conv["title"] == "first question"
    # alice (even an admin) does not see bob's conversation through the user API
    assert api.client.get(f"/api/conversations/{conv_id}", headers=api.auth("alice")).status_code == 404
    assert api.client.get("/api/conversations", headers=api.auth("alice")).json()["total"] == 0
    r = api.client.post("/v1/chat/completions", headers=api.auth("alice"),
                        json={"model": "scripted-model", "messages": [{"role": "user", "content": "x"}], "conversation_id": conv_id})
    assert r.status_code == 404
    assert api.client.delete(f"/api/conversations/{conv_id}", headers=api.auth("bob")).status_code == 204
    assert api.client.get(f"/api/conversations/{conv_id}", headers=api.auth("bob")).status_code == 404


def test_idempotent_retry_appends_once(api):
    conv = api.client.post("/api/conversations", json={}, headers=api.auth("bob")).json()
    body = {"model": "scripted-model:chat", "messages": [{"role": "user", "content": "once"}], "conversation_id": conv["id"]}
    headers = api.auth("bob") | {"Idempotency-Key": "retry-key-1"}
    a = api.client.post("/v1/chat/completions", json=body, headers=headers)
    b = api.client.post("/v1/chat/completions", json=body, headers=headers)
    assert a.status_code == b.status_code == 200
    assert b.headers.get("idempotent-replayed") == "true" and b.json()["id"] == a.json()["id"]
    stored = api.client.get(f"/api/conversations/{conv['id']}", headers=api.auth("bob")).json()
    assert stored["message_count"] == 2


def test_backend_failure_is_503_not_500(api):
    from backend.errors import ServiceUnavailableError

    api.provider.fail = ServiceUnavailableError("The model backend is not reachable.", retry_after=7)
    r = api.client.post("/v1/chat/completions", json={"model": "scripted-model:chat", "messages": [{"role": "user", "content": "x"}],
                                                      "stream": True}, headers=api.auth("bob"))
    assert r.status_code == 503 and r.headers["retry-after"] == "7"
    assert r.json()["error"]["type"] == "server_error"


def test_unexpected_error_has_no_trace(api):
    api.provider.fail = RuntimeError("secret internal detail /etc/passwd")
    r = api.client.post("/v1/chat/completions", json={"model": "scripted-model:chat", "messages": [{"role": "user", "content": "x"}]},
                        headers=api.auth("bob"))
    assert r.status_code == 500
    assert "secret" not in r.text and "Traceback" not in r.text
    assert r.json()["error"]["message"]
