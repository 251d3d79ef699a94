"""The conversation routes the chat page uses, through the real app on a scripted model:
search with snippets, one-conversation export, per-conversation settings, truncation for
regenerate / edit-and-resend. Every route is checked for isolation (another user's id is a 404,
another user's text is never found) and for bad input (an OpenAI-shaped 400, never a 500)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import PASSWORD, ApiHarness, login
from tests.fakes import ScriptedProvider


def chat(api: ApiHarness, who: str, text: str, conv_id: str = "new", **extra: Any) -> dict[str, Any]:
    body = {"model": "scripted-model:chat", "messages": [{"role": "user", "content": text}], "conversation_id": conv_id, **extra}
    r = api.client.post("/v1/chat/completions", json=body, headers=api.auth(who))
    assert r.status_code == 200, r.text
    return r.json()


def get(api: ApiHarness, who: str, path: str, **params: Any) -> Any:
    return api.client.get(path, params=params, headers=api.auth(who))


def assert_openai_error(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    return err


@pytest.fixture
def small_budget_api(make_settings) -> Iterator[ApiHarness]:
    """The real app with a search budget of 4 KiB of stored conversation JSON."""
    from fastapi.testclient import TestClient

    from backend.app import create_app

    provider = ScriptedProvider()
    app = create_app(make_settings(conversation_search_max_bytes=4096), provider=provider)
    with TestClient(app, raise_server_exceptions=False) as client:
        harness = ApiHarness(client, provider)
        harness.users["bob"] = app.state.services.users.create("bob", PASSWORD, "user")
        harness.tokens = {"bob": login(client, "bob")}
        yield harness


# ----------------------------------------------------------------------------- search
def test_search_finds_message_text_and_titles_with_snippets(api):
    filler = "lorem ipsum dolor sit amet " * 20
    api.provider.outputs = [f"{filler} The capital of Burkina Faso is Ouagadougou. {filler}", "Paris, of course.", "No idea."]
    geo = chat(api, "bob", "Tell me about West Africa")["conversation_id"]
    fr = chat(api, "bob", "Capital of France?")["conversation_id"]
    other = chat(api, "bob", "Something unrelated")["conversation_id"]

    hits = get(api, "bob", "/api/conversations", q="OUAGADOUGOU").json()
    assert hits["total"] == 1 and hits["has_more"] is False and hits["truncated"] is False
    item = hits["data"][0]
    assert item["id"] == geo and item["title"] == "Tell me about West Africa" and item["message_count"] == 2
    snip = item["snippet"]
    assert "Ouagadougou" in snip and len(snip) <= 160 and snip.startswith("…") and snip.endswith("…")

    # "capital" is in the title of one conversation and the text of another: both, newest first
    both = get(api, "bob", "/api/conversations", q="capital").json()
    assert [c["id"] for c in both["data"]] == [fr, geo] and both["total"] == 2
    assert "Capital of France" in both["data"][0]["snippet"]  # the user's message matched too

    api.client.patch(f"/api/conversations/{other}", json={"title": "Zanzibar notes"}, headers=api.auth("bob"))
    title_only = get(api, "bob", "/api/conversations", q="zanzibar").json()
    assert [c["id"] for c in title_only["data"]] == [other] and title_only["data"][0]["snippet"] is None

    assert get(api, "bob", "/api/conversations", q="no such words anywhere").json() == {
        "data": [], "total": 0, "has_more": False, "truncated": False}
    # a blank q is the plain listing (no snippet field, every conversation)
    plain = get(api, "bob", "/api/conversations", q="   ").json()
    assert plain["total"] == 3 and "snippet" not in plain["data"][0]


def test_search_handles_quotes_backslashes_and_unicode(api):
    api.provider.outputs = ['She said "größer als" and typed C:\\temp\\x', "Ünïcödé ÉCOLE"]
    quoted = chat(api, "bob", "q1")["conversation_id"]
    uni = chat(api, "bob", "q2")["conversation_id"]
    assert [c["id"] for c in get(api, "bob", "/api/conversations", q='said "GRÖSSER').json()["data"]] == [quoted]  # ß folds to ss
    assert [c["id"] for c in get(api, "bob", "/api/conversations", q='said "größer').json()["data"]] == [quoted]
    assert [c["id"] for c in get(api, "bob", "/api/conversations", q="c:\\TEMP\\").json()["data"]] == [quoted]
    found = get(api, "bob", "/api/conversations", q="école").json()["data"]
    assert [c["id"] for c in found] == [uni] and "ÉCOLE" in found[0]["snippet"]


def test_search_paginates(api):
    ids = [chat(api, "bob", f"note {n} about kiwis")["conversation_id"] for n in range(5)]
    chat(api, "bob", "nothing to see")
    listing = get(api, "bob", "/api/conversations").json()["data"]
    newest_first = [c["id"] for c in listing if c["id"] in ids]  # the listing's order (seconds, then id)
    assert sorted(newest_first) == sorted(ids)
    seen = []
    offset = 0
    while True:
        page = get(api, "bob", "/api/conversations", q="KIWIS", limit=2, offset=offset).json()
        assert page["total"] == 5
        seen += [c["id"] for c in page["data"]]
        offset += len(page["data"])
        if not page["has_more"]:
            break
    assert seen == newest_first
    assert get(api, "bob", "/api/conversations", q="kiwis", offset=10).json()["data"] == []


def test_search_covers_only_the_callers_conversations(api):
    api.provider.outputs = ["the secret word is pomegranate"]
    chat(api, "bob", "bob's private pomegranate question")
    assert get(api, "alice", "/api/conversations", q="pomegranate").json()["total"] == 0  # an admin too
    assert get(api, "bob", "/api/conversations", q="pomegranate").json()["total"] == 1


def test_search_bad_input_is_a_400(api):
    for params in ({"q": "x" * 201}, {"q": "ok", "limit": 0}, {"q": "ok", "limit": 1000}, {"q": "ok", "offset": -1}):
        err = assert_openai_error(get(api, "bob", "/api/conversations", **params), 400)
        assert err["type"] == "invalid_request_error"
    assert get(api, "bob", "/api/conversations", q="x" * 200).status_code == 200


def test_search_reads_at_most_its_byte_budget_and_says_so(small_budget_api):
    api = small_budget_api
    api.provider.outputs = ["needle " + "hay " * 400, "needle too"]  # the first conversation is bigger than the budget
    chat(api, "bob", "old and large")
    new = chat(api, "bob", "new and small")["conversation_id"]
    page = get(api, "bob", "/api/conversations", q="needle").json()
    assert page["truncated"] is True and [c["id"] for c in page["data"]] == [new] and page["has_more"] is False
    assert get(api, "bob", "/api/conversations").json()["total"] == 2  # listing is not bounded by the budget


def test_too_many_concurrent_searches_by_one_user_get_429(api):
    chat(api, "bob", "hello there")
    slots = api.services.search_slots
    bob = api.users["bob"]["id"]
    for _ in range(api.services.settings.conversation_search_per_user):
        slots.take(bob)  # searches of bob's still running
    try:
        r = get(api, "bob", "/api/conversations", q="hello")
        assert_openai_error(r, 429)
        assert r.headers["retry-after"] == "1"
        assert get(api, "alice", "/api/conversations", q="hello").status_code == 200  # others are not held up
        assert get(api, "bob", "/api/conversations").status_code == 200  # nor is bob's plain listing
    finally:
        for _ in range(api.services.settings.conversation_search_per_user):
            slots.give(bob)
    assert get(api, "bob", "/api/conversations", q="hello").json()["total"] == 1


# ----------------------------------------------------------------------------- export
def test_export_markdown_and_json(api):
    api.provider.outputs = ["**Bold** answer with `code`"]
    conv_id = chat(api, "bob", "Explain: Markdown/export?")["conversation_id"]

    md = get(api, "bob", f"/api/conversations/{conv_id}/export", format="md")
    assert md.status_code == 200 and md.headers["content-type"] == "text/markdown; charset=utf-8"
    disposition = md.headers["content-disposition"]
    assert disposition == f'attachment; filename="explain-markdown-export-{conv_id}.md"'
    assert md.headers["x-content-type-options"] == "nosniff"
    assert md.text == "# Explain: Markdown/export?\n\n## user\n\nExplain: Markdown/export?\n\n## assistant\n\n**Bold** answer with `code`\n"
    assert get(api, "bob", f"/api/conversations/{conv_id}/export").text == md.text  # md is the default

    js = get(api, "bob", f"/api/conversations/{conv_id}/export", format="json")
    assert js.status_code == 200 and js.headers["content-type"] == "application/json"
    assert js.headers["content-disposition"].endswith(f'-{conv_id}.json"')
    stored = json.loads(js.content)
    shown = get(api, "bob", f"/api/conversations/{conv_id}").json()
    assert stored["id"] == conv_id and stored["messages"] == shown["messages"] and stored["title"] == shown["title"]
    assert "idempotency" not in stored  # the replay cache is not the user's content


def test_export_isolation_and_bad_format(api):
    conv_id = chat(api, "bob", "mine")["conversation_id"]
    for fmt in ("md", "json"):
        assert_openai_error(get(api, "alice", f"/api/conversations/{conv_id}/export", format=fmt), 404)
    assert_openai_error(get(api, "bob", f"/api/conversations/{conv_id}/export", format="pdf"), 400)
    assert_openai_error(get(api, "bob", "/api/conversations/conv_doesnotexist00/export"), 404)
    assert_openai_error(get(api, "bob", "/api/conversations/../../users/export"), 404)


# ----------------------------------------------------------------------------- settings
def test_settings_merge_clear_and_appear_in_summaries(api):
    created = api.client.post("/api/conversations", json={"title": "Tuned"}, headers=api.auth("bob")).json()
    assert created["settings"] == {}
    cid = created["id"]
    r = api.client.patch(f"/api/conversations/{cid}", headers=api.auth("bob"),
                         json={"settings": {"system_prompt": "Answer in French.", "temperature": 0.2}})
    assert r.status_code == 200 and r.json()["settings"] == {"system_prompt": "Answer in French.", "temperature": 0.2}
    assert r.json()["title"] == "Tuned"
    r = api.client.patch(f"/api/conversations/{cid}", headers=api.auth("bob"),
                         json={"title": "Tuned twice", "settings": {"mode": "react", "model": "scripted-model", "temperature": None}})
    expected = {"system_prompt": "Answer in French.", "mode": "react", "model": "scripted-model"}
    assert r.json()["settings"] == expected and r.json()["title"] == "Tuned twice"
    assert get(api, "bob", f"/api/conversations/{cid}").json()["settings"] == expected
    assert get(api, "bob", "/api/conversations").json()["data"][0]["settings"] == expected
    assert api.client.patch(f"/api/conversations/{cid}", json={"title": "Only a title"},
                            headers=api.auth("bob")).json()["settings"] == expected  # a rename keeps them
    # the conversation still chats and keeps its settings through the exchange
    chat(api, "bob", "bonjour", cid)
    assert get(api, "bob", f"/api/conversations/{cid}").json()["settings"] == expected


@pytest.mark.parametrize("body", [
    {},
    {"title": None},
    {"title": ""},
    {"settings": {"temperature": 2.5}},
    {"settings": {"temperature": -0.1}},
    {"settings": {"temperature": "hot"}},
    {"settings": {"system_prompt": "x" * 8001}},
    {"settings": {"mode": "telepathy"}},
    {"settings": {"colour": "blue"}},
    {"settings": "fast"},
    {"title": "ok", "extra": 1},
])
def test_bad_patches_are_400_and_change_nothing(api, body):
    cid = api.client.post("/api/conversations", json={"title": "Keep"}, headers=api.auth("bob")).json()["id"]
    assert_openai_error(api.client.patch(f"/api/conversations/{cid}", json=body, headers=api.auth("bob")), 400)
    after = get(api, "bob", f"/api/conversations/{cid}").json()
    assert after["title"] == "Keep" and after["settings"] == {}


def test_settings_limits_accepted_at_the_edge_and_patch_isolated(api):
    cid = api.client.post("/api/conversations", json={}, headers=api.auth("bob")).json()["id"]
    edge = {"system_prompt": "y" * 8000, "temperature": 2}
    assert api.client.patch(f"/api/conversations/{cid}", json={"settings": edge}, headers=api.auth("bob")).status_code == 200
    r = api.client.patch(f"/api/conversations/{cid}", json={"settings": {"system_prompt": "pwned"}}, headers=api.auth("alice"))
    assert_openai_error(r, 404)
    assert get(api, "bob", f"/api/conversations/{cid}").json()["settings"]["system_prompt"] == "y" * 8000


# ----------------------------------------------------------------------------- truncate
def test_truncate_for_regenerate_and_edit_and_resend(api):
    api.provider.outputs = ["first answer", "second answer", "regenerated answer", "edited answer"]
    cid = chat(api, "bob", "question one")["conversation_id"]
    turn2 = [{"role": "user", "content": "question one"}, {"role": "assistant", "content": "first answer"},
             {"role": "user", "content": "question two"}]
    body = {"model": "scripted-model:chat", "messages": turn2, "conversation_id": cid}
    assert api.client.post("/v1/chat/completions", json=body, headers=api.auth("bob")).status_code == 200

    # regenerate: drop the last answer, send the same turn again: a new answer, not a replay
    r = api.client.delete(f"/api/conversations/{cid}/messages/3", headers=api.auth("bob"))
    assert r.status_code == 200
    assert [m["content"] for m in r.json()["messages"]] == ["question one", "first answer", "question two"]
    assert r.json()["message_count"] == 3
    # the resent turn carries only what the conversation lacks (the pipeline appends new messages)
    again = api.client.post("/v1/chat/completions", json=body, headers=api.auth("bob"))
    assert again.status_code == 200 and again.json()["choices"][0]["message"]["content"] == "regenerated answer"
    assert again.headers.get("idempotent-replayed") != "true"

    # edit and resend: drop the last question and everything after it
    r = api.client.delete(f"/api/conversations/{cid}/messages/2", headers=api.auth("bob"))
    assert [m["content"] for m in r.json()["messages"]] == ["question one", "first answer"]
    edited = {**body, "messages": [*turn2[:2], {"role": "user", "content": "question two, edited"}]}
    assert api.client.post("/v1/chat/completions", json=edited, headers=api.auth("bob")).status_code == 200
    stored = get(api, "bob", f"/api/conversations/{cid}").json()["messages"]
    assert [m["content"] for m in stored][-2:] == ["question two, edited", "edited answer"]
    assert len(stored) == 4


def test_truncate_bad_index_and_isolation(api):
    cid = chat(api, "bob", "hello")["conversation_id"]
    err = assert_openai_error(api.client.delete(f"/api/conversations/{cid}/messages/2", headers=api.auth("bob")), 404)
    assert "2 messages" in err["message"]
    assert_openai_error(api.client.delete(f"/api/conversations/{cid}/messages/-1", headers=api.auth("bob")), 400)
    assert_openai_error(api.client.delete(f"/api/conversations/{cid}/messages/last", headers=api.auth("bob")), 400)
    assert_openai_error(api.client.delete(f"/api/conversations/{cid}/messages/0", headers=api.auth("alice")), 404)
    assert get(api, "bob", f"/api/conversations/{cid}").json()["message_count"] == 2  # nothing removed
    r = api.client.delete(f"/api/conversations/{cid}/messages/0", headers=api.auth("bob"))
    assert r.json()["messages"] == [] and r.json()["title"] == "hello"
    assert_openai_error(api.client.delete(f"/api/conversations/{cid}/messages/0", headers=api.auth("bob")), 404)


# ----------------------------------------------------------------------------- schema
def test_openapi_documents_the_page_routes(api):
    doc = api.client.get("/openapi.json").json()
    paths = doc["paths"]
    assert {"q", "limit", "offset"} <= {p["name"] for p in paths["/api/conversations"]["get"]["parameters"]}
    export = paths["/api/conversations/{conversation_id}/export"]["get"]
    assert set(export["responses"]["200"]["content"]) == {"text/markdown", "application/json"}
    assert "delete" in paths["/api/conversations/{conversation_id}/messages/{index}"]
    assert "/api/admin/users/{user_id}/usage" in paths
    patch = paths["/api/conversations/{conversation_id}"]["patch"]
    ref = patch["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert set(doc["components"]["schemas"][ref]["properties"]) == {"title", "settings"}
