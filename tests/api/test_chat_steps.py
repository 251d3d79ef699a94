"""The chat request's prepare and record steps as a user of the page sees them: a conversation's
stored settings shape the request, each stored answer carries its meta, usage is counted per user."""

from __future__ import annotations

from typing import Any


def _chat(api: Any, content: str, **extra: Any) -> Any:
    body = {"model": "scripted-model:chat", "messages": [{"role": "user", "content": content}], **extra}
    return api.client.post("/v1/chat/completions", json=body, headers=api.auth("bob"))


def _store_settings(api: Any, conv_id: str, settings: dict[str, Any]) -> None:
    uid = api.users["bob"]["id"]
    with api.services.conversations._file(uid, conv_id).update() as conv:  # what PATCH settings stores
        conv["settings"] = settings


def test_stored_system_prompt_and_temperature_apply_when_the_request_has_none(api):
    first = _chat(api, "Hello", conversation_id="new")
    assert first.status_code == 200, first.text
    conv_id = first.json()["conversation_id"]
    _store_settings(api, conv_id, {"system_prompt": "Answer like a pirate.", "temperature": 1.3})
    r = _chat(api, "Hello again", conversation_id=conv_id)
    assert r.status_code == 200, r.text
    call = api.provider.calls[-1]
    assert call["messages"][0] == {"role": "system", "content": "Answer like a pirate."}
    assert call["params"].temperature == 1.3


def test_the_request_wins_over_stored_settings(api):
    conv_id = _chat(api, "Hello", conversation_id="new").json()["conversation_id"]
    _store_settings(api, conv_id, {"system_prompt": "Answer like a pirate.", "temperature": 1.3})
    body = {"model": "scripted-model:chat", "temperature": 0.2, "conversation_id": conv_id,
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]}
    r = api.client.post("/v1/chat/completions", json=body, headers=api.auth("bob"))
    assert r.status_code == 200, r.text
    call = api.provider.calls[-1]
    assert [m["content"] for m in call["messages"] if m["role"] == "system"] == ["Be brief."]
    assert call["params"].temperature == 0.2


def test_a_stored_answer_carries_meta_and_usage_is_counted(api):
    r = _chat(api, "Hello", conversation_id="new")
    assert r.status_code == 200, r.text
    usage = r.json()["usage"]
    uid = api.users["bob"]["id"]
    conv = api.services.conversations.get(uid, r.json()["conversation_id"])
    reply = conv["messages"][-1]
    assert reply["role"] == "assistant" and reply["content"] == "Hello from the scripted model."
    meta = reply["meta"]
    assert meta["model"] == "scripted-model:chat" and meta["mode"] == "chat"
    assert meta["usage"] == usage and isinstance(meta["elapsed_ms"], int) and meta["elapsed_ms"] >= 0
    assert "meta" not in conv["messages"][0]  # the user's message is stored as sent
    counted = api.services.usage.get(uid)
    assert counted == {"requests": 1, "prompt_tokens": usage["prompt_tokens"],
                       "completion_tokens": usage["completion_tokens"]}


def test_a_streamed_answer_is_recorded_once(api):
    body = {"model": "scripted-model:chat", "stream": True, "conversation_id": "new",
            "messages": [{"role": "user", "content": "Hello"}]}
    with api.client.stream("POST", "/v1/chat/completions", json=body, headers=api.auth("bob")) as r:
        assert r.status_code == 200
        conv_id = r.headers["x-conversation-id"]
        text = "".join(r.iter_text())
    assert text.rstrip().endswith("data: [DONE]")
    uid = api.users["bob"]["id"]
    messages = api.services.conversations.get(uid, conv_id)["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[-1]["meta"]["mode"] == "chat"
    assert api.services.usage.get(uid)["requests"] == 1
