"""Chat details clients trip on: agent steps stream as ``reasoning`` beside ``reasoning_content``,
and ``presence_penalty``/``frequency_penalty`` reach the model backend instead of being dropped."""

from __future__ import annotations

import json

from tests.openai_schema import validate


def sse(text: str) -> list:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ") and line[6:] != "[DONE]"]


def test_agent_steps_stream_reasoning_and_reasoning_content(api):
    call = json.dumps({"name": "math_calc", "arguments": {"expression": "6*7"}})
    api.provider.outputs = [call, "The answer is 42."]
    r = api.client.post("/v1/chat/completions", headers=api.auth("bob"), json={
        "model": "scripted-model:react", "stream": True, "messages": [{"role": "user", "content": "what is 6*7?"}]})
    assert r.status_code == 200
    chunks = sse(r.text)
    for chunk in chunks:
        validate(chunk, "CreateChatCompletionStreamResponse")
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"] and "reasoning_content" in c["choices"][0]["delta"]]
    assert deltas, "no agent step was streamed"
    assert all(d["reasoning"] == d["reasoning_content"] for d in deltas)
    assert any("math_calc" in d["reasoning"] and "42" in d["reasoning"] for d in deltas)


def test_chat_penalties_reach_the_provider(api):
    body = {"model": "scripted-model:chat", "messages": [{"role": "user", "content": "hi"}],
            "presence_penalty": 1.5, "frequency_penalty": 0.75}
    assert api.client.post("/v1/chat/completions", json=body, headers=api.auth("bob")).status_code == 200
    params = api.provider.calls[-1]["params"]
    assert (params.presence_penalty, params.frequency_penalty) == (1.5, 0.75)
    r = api.client.post("/v1/chat/completions", json=body | {"presence_penalty": 3}, headers=api.auth("bob"))
    assert r.status_code == 400 and r.json()["error"]["param"] == "presence_penalty"
