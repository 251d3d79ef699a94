"""Through the real app: documents list which conversations cited them (from a real RAG answer's
stored sources), and admins see each user's usage (requests, tokens, documents, bytes)."""

from __future__ import annotations

from tests.api.test_conversations_page import assert_openai_error

DOC = b"The lighthouse keeper's cat is called Barnacle. It sleeps on the lamp room stairs."


def _upload(api, who: str, name: str = "lighthouse.txt", data: bytes = DOC) -> dict:
    r = api.client.post("/api/files/upload", files=[("files", (name, data, "text/plain"))], headers=api.auth(who))
    assert r.status_code == 200, r.text
    return r.json()["data"][0]


def test_documents_list_the_conversations_that_cite_them(api):
    doc = _upload(api, "bob")
    fid = doc["file_id"]
    assert api.client.get("/api/files/documents", headers=api.auth("bob")).json()["data"][0]["cited_in"] == []

    api.provider.outputs = ["The cat is called Barnacle [1]."]
    body = {"model": "scripted-model:chat", "messages": [{"role": "user", "content": "What is the cat called?"}],
            "conversation_id": "new", "file_ids": [fid]}
    r = api.client.post("/v1/chat/completions", json=body, headers=api.auth("bob"))
    assert r.status_code == 200, r.text
    cid = r.json()["conversation_id"]
    stored = api.client.get(f"/api/conversations/{cid}", headers=api.auth("bob")).json()
    assert stored["messages"][-1]["sources"][0]["file_id"] == fid  # the pipeline stored the citation

    listed = api.client.get("/api/files/documents", headers=api.auth("bob")).json()["data"]
    assert listed[0]["cited_in"] == [{"conversation_id": cid, "title": "What is the cat called?"}]
    one = api.client.get(f"/api/files/documents/{fid}", headers=api.auth("bob")).json()
    assert one["cited_in"] == listed[0]["cited_in"]

    # renaming shows at once; an uncited document and another user's list stay empty
    api.client.patch(f"/api/conversations/{cid}", json={"title": "Cat names"}, headers=api.auth("bob"))
    other = _upload(api, "bob", "other.txt", b"Nothing about cats here, only tide tables and weather.")
    by_id = {d["file_id"]: d["cited_in"] for d in api.client.get("/api/files/documents", headers=api.auth("bob")).json()["data"]}
    assert by_id == {fid: [{"conversation_id": cid, "title": "Cat names"}], other["file_id"]: []}
    assert api.client.get("/api/files/documents", headers=api.auth("alice")).json()["data"] == []

    # deleting the conversation removes the citation
    assert api.client.delete(f"/api/conversations/{cid}", headers=api.auth("bob")).status_code == 204
    one = api.client.get(f"/api/files/documents/{fid}", headers=api.auth("bob")).json()
    assert one["cited_in"] == []


def test_admin_sees_per_user_usage(api):
    bob_id = api.users["bob"]["id"]
    api.services.usage.record_usage(bob_id, 120, 30)  # as the chat pipeline's record step counts an answer
    api.services.usage.record_usage(bob_id, 80, 20)
    doc = _upload(api, "bob")

    expected = {"requests": 2, "prompt_tokens": 200, "completion_tokens": 50, "documents": 1, "bytes": doc["size"]}
    assert doc["size"] == len(DOC)
    r = api.client.get(f"/api/admin/users/{bob_id}/usage", headers=api.auth("alice"))
    assert r.status_code == 200 and r.json() == expected
    users = {u["username"]: u for u in api.client.get("/api/admin/users", headers=api.auth("alice")).json()["data"]}
    assert users["bob"]["usage"] == expected
    assert users["alice"]["usage"] == {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0, "documents": 0, "bytes": 0}
    assert "password_hash" not in users["bob"]

    assert_openai_error(api.client.get(f"/api/admin/users/{bob_id}/usage", headers=api.auth("bob")), 403)
    assert_openai_error(api.client.get("/api/admin/users", headers=api.auth("bob")), 403)
    assert_openai_error(api.client.get("/api/admin/users/u_doesnotexist00/usage", headers=api.auth("alice")), 404)
    assert_openai_error(api.client.get("/api/admin/users/..%2F..%2Fetc/usage", headers=api.auth("alice")), 404)

    # deleting the account deletes its counters with it
    assert api.client.delete(f"/api/admin/users/{bob_id}", headers=api.auth("alice")).status_code == 200
    assert api.services.usage.get(bob_id)["requests"] == 0
