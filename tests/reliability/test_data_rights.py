"""Data rights: export everything a user holds (no secrets inside); delete the account and
everything with it. Admins can do both for any user."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

from tests.conftest import PASSWORD


def _fill_account(api: Any, who: str) -> dict[str, Any]:
    headers = api.auth(who)
    conv = api.client.post("/api/conversations", json={"title": f"{who}'s plans"}, headers=headers).json()["id"]
    body = {"model": "scripted-model:chat", "conversation_id": conv,
            "messages": [{"role": "user", "content": f"remember the word pelican-{who}"}]}
    assert api.client.post("/v1/chat/completions", json=body, headers=headers).status_code == 200
    key = api.client.post("/api/keys", json={"name": f"{who}-laptop"}, headers=headers).json()
    doc = b"Pelicans eat fish. The secret word is albatross.\n" * 5
    up = api.client.post("/api/files/upload", files=[("files", (f"{who}-notes.txt", doc, "text/plain"))], headers=headers)
    assert up.status_code == 200, up.text
    entry = up.json()["data"][0]
    return {"conv": conv, "key": key["key"], "key_id": key["id"], "file_id": entry.get("id") or entry.get("file_id")}


def _unzip(data: bytes) -> dict[str, Any]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {name: json.loads(zf.read(name)) for name in zf.namelist()}


def _assert_no_secrets(raw: bytes, parts: dict[str, Any], key: str) -> None:
    with zipfile.ZipFile(io.BytesIO(raw)) as zf:
        text = "".join(zf.read(n).decode() for n in zf.namelist())
    for needle in (key, key[len("sk-local-"):], "password_hash", "$2b$", "key_hash", "hash", PASSWORD, "jwt"):
        assert needle not in text, needle


def _user_paths(api: Any, user_id: str) -> list[Path]:
    s = api.services.settings
    return [p for p in (s.conversations_path / user_id, s.uploads_path / user_id, s.indexes_path / user_id) if p.exists()]


def test_export_my_data(api):
    mine = _fill_account(api, "bob")
    r = api.client.get("/api/account/export", headers=api.auth("bob"))
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    assert r.headers["content-disposition"].startswith("attachment")
    parts = _unzip(r.content)
    assert {"user.json", "conversations.json", "documents.json", "api_keys.json"} <= set(parts)
    assert parts["user.json"]["username"] == "bob"
    convs = parts["conversations.json"]
    assert [c["id"] for c in convs] == [mine["conv"]]
    assert any("pelican-bob" in (m.get("content") or "") for m in convs[0]["messages"])
    assert [d["filename"] for d in parts["documents.json"]] == ["bob-notes.txt"]
    assert [k["name"] for k in parts["api_keys.json"]] == ["bob-laptop"]
    _assert_no_secrets(r.content, parts, mine["key"])
    # nothing of another user leaks in
    _fill_account(api, "alice")
    again = _unzip(api.client.get("/api/account/export", headers=api.auth("bob")).content)
    assert "alice" not in json.dumps(again)


def test_delete_my_account_removes_everything(api):
    mine = _fill_account(api, "bob")
    theirs = _fill_account(api, "alice")
    bob_id = api.users["bob"]["id"]
    assert _user_paths(api, bob_id)
    r = api.client.delete("/api/account", headers=api.auth("bob"))
    assert r.status_code == 200 and r.json()["deleted"] is True
    assert r.json()["conversations"] == 1 and r.json()["api_keys"] == 1 and r.json()["documents"] == 1
    assert _user_paths(api, bob_id) == []
    assert api.client.get("/api/auth/me", headers=api.auth("bob")).status_code == 401
    assert api.client.get("/api/auth/me", headers={"Authorization": f"Bearer {mine['key']}"}).status_code == 401
    assert api.client.post("/api/auth/login", json={"username": "bob", "password": PASSWORD}).status_code == 401
    s = api.services.settings
    assert bob_id not in s.users_path.read_text() and mine["key_id"] not in s.keys_path.read_text()
    assert "bob-notes" not in json.dumps([p.name for p in s.data_dir.rglob("*")])
    # alice's data is untouched
    assert api.client.get(f"/api/conversations/{theirs['conv']}", headers=api.auth("alice")).status_code == 200
    assert api.client.get(f"/api/files/documents/{theirs['file_id']}", headers=api.auth("alice")).status_code == 200
    hits = api.client.post("/api/files/search", json={"query": "albatross"}, headers=api.auth("alice")).json()["data"]
    assert hits and all(h.get("filename", "alice-notes.txt") == "alice-notes.txt" for h in hits)
    # the name is free again, and the new bob sees nothing of the old one
    api.services.users.create("bob", PASSWORD)
    token = api.client.post("/api/auth/login", json={"username": "bob", "password": PASSWORD}).json()["access_token"]
    fresh = {"Authorization": f"Bearer {token}"}
    assert api.client.get("/api/conversations", headers=fresh).json()["total"] == 0
    assert api.client.get("/api/files/documents", headers=fresh).json()["total"] == 0


def test_admin_exports_and_deletes_any_user(api):
    mine = _fill_account(api, "bob")
    bob_id = api.users["bob"]["id"]
    assert api.client.get(f"/api/admin/users/{bob_id}/export", headers=api.auth("bob")).status_code == 403
    r = api.client.get(f"/api/admin/users/{bob_id}/export", headers=api.auth("alice"))
    assert r.status_code == 200
    parts = _unzip(r.content)
    assert parts["user.json"]["id"] == bob_id and [c["id"] for c in parts["conversations.json"]] == [mine["conv"]]
    _assert_no_secrets(r.content, parts, mine["key"])
    assert api.client.delete(f"/api/admin/users/{bob_id}", headers=api.auth("bob")).status_code == 403
    assert api.client.delete(f"/api/admin/users/{api.users['alice']['id']}", headers=api.auth("alice")).status_code == 400
    d = api.client.delete(f"/api/admin/users/{bob_id}", headers=api.auth("alice"))
    assert d.status_code == 200 and d.json()["deleted"] is True
    assert _user_paths(api, bob_id) == []
    assert api.client.get("/api/auth/me", headers=api.auth("bob")).status_code == 401
    assert api.client.delete(f"/api/admin/users/{bob_id}", headers=api.auth("alice")).status_code == 404
    assert api.client.get(f"/api/admin/users/{bob_id}/export", headers=api.auth("alice")).status_code == 404
    audit = [json.loads(line) for line in api.services.settings.audit_log_path.read_text().splitlines()]
    assert any(e["event"] == "account_deleted" and e["user"] == bob_id and e["by"] == api.users["alice"]["id"] for e in audit)
