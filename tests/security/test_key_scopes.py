"""API keys carry least privilege (issue 12, item 5).

A new key may call /v1 and read and search the owner's documents, nothing else. Key management,
account export and deletion and the admin routes need a login session or a key created with that
scope; keys expire when asked to; a password change or reset revokes every token and key; refresh
revokes the token it replaces.
"""

from __future__ import annotations

import time

import pytest

from tests.conftest import PASSWORD
from tests.reliability.conftest import assert_openai_error

CHAT = {"model": "scripted-model:chat", "messages": [{"role": "user", "content": "hi"}]}
NEW_PASSWORD = "a different horse battery"


def _key(api, who: str, **body) -> dict:
    r = api.client.post("/api/keys", json=body, headers=api.auth(who))
    assert r.status_code == 201, r.text
    return r.json()


def _as(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_a_new_key_is_inference_only(api):
    created = _key(api, "alice", name="ide plugin")
    assert created["scopes"] == ["inference"]
    key = _as(created["key"])
    assert api.client.get("/v1/models", headers=key).status_code == 200
    assert api.client.post("/v1/chat/completions", json=CHAT, headers=key).status_code == 200
    assert api.client.get("/api/files/documents", headers=key).status_code == 200
    assert api.client.get("/api/auth/me", headers=key).json()["username"] == "alice"
    refused = [
        ("GET", "/api/keys", None), ("POST", "/api/keys", {"scopes": ["inference"]}),
        ("DELETE", f"/api/keys/{created['id']}", None), ("GET", "/api/account/export", None),
        ("DELETE", "/api/account", None), ("GET", "/api/admin/users", None),
        ("POST", "/api/admin/users", {"username": "mallory", "password": PASSWORD}),
        ("GET", "/api/conversations", None), ("POST", "/api/auth/refresh", None),
        ("POST", "/api/auth/password", {"current_password": PASSWORD, "new_password": NEW_PASSWORD}),
    ]
    for method, path, body in refused:
        r = api.client.request(method, path, json=body, headers=key)
        assert_openai_error(r, 403, "insufficient_scope")
    alice = api.users["alice"]["id"]
    assert api.services.users.get(alice) is not None and api.services.users.by_username("mallory") is None
    assert len(api.services.keys.list_for(alice)) == 1


def test_scoped_keys_reach_what_they_name(api):
    admin_key = _as(_key(api, "alice", scopes=["inference", "admin"])["key"])
    assert api.client.get("/api/admin/users", headers=admin_key).status_code == 200
    conv_key = _as(_key(api, "bob", scopes=["conversations"])["key"])
    assert api.client.get("/api/conversations", headers=conv_key).status_code == 200
    assert_openai_error(api.client.get("/v1/models", headers=conv_key), 403, "insufficient_scope")


def test_scopes_cannot_be_escalated(api):
    r = api.client.post("/api/keys", json={"scopes": ["admin"]}, headers=api.auth("bob"))
    assert_openai_error(r, 403, "insufficient_scope")  # bob is no administrator
    manager = _as(_key(api, "bob", scopes=["keys", "inference"])["key"])
    r = api.client.post("/api/keys", json={"scopes": ["account"]}, headers=manager)
    assert_openai_error(r, 403, "insufficient_scope")  # a key grants at most what it holds
    ok = api.client.post("/api/keys", json={"scopes": ["inference"]}, headers=manager)
    assert ok.status_code == 201 and ok.json()["scopes"] == ["inference"]
    for bad in (["everything"], [], ["inference", 5]):
        r = api.client.post("/api/keys", json={"scopes": bad}, headers=api.auth("bob"))
        assert_openai_error(r, 400)


def test_keys_expire(api):
    past = api.client.post("/api/keys", json={"expires_at": int(time.time()) - 10}, headers=api.auth("bob"))
    assert_openai_error(past, 400)
    created = _key(api, "bob", expires_in_days=1)
    assert created["expires_at"] == pytest.approx(time.time() + 86400, abs=60)
    key = _as(created["key"])
    assert api.client.get("/v1/models", headers=key).status_code == 200
    with api.services.keys._file.update() as data:  # a day passes
        data["keys"][created["id"]]["expires_at"] = int(time.time()) - 1
    assert_openai_error(api.client.get("/v1/models", headers=key), 401, "api_key_expired")


def test_servers_can_require_expiry(make_settings):
    from fastapi.testclient import TestClient

    from backend.app import create_app
    from tests.conftest import login
    from tests.fakes import ScriptedProvider

    app = create_app(make_settings(api_key_max_days=30), provider=ScriptedProvider())
    with TestClient(app) as c:
        app.state.services.users.create("bob", PASSWORD)
        auth = _as(login(c, "bob"))
        assert_openai_error(c.post("/api/keys", json={}, headers=auth), 400, "expiry_required")
        assert_openai_error(c.post("/api/keys", json={"expires_in_days": 31}, headers=auth), 400, "expiry_required")
        assert c.post("/api/keys", json={"expires_in_days": 30}, headers=auth).status_code == 201


def test_changing_my_password_revokes_tokens_and_keys(api):
    old_token = api.auth("bob")
    key = _as(_key(api, "bob")["key"])
    wrong = api.client.post("/api/auth/password", json={"current_password": "not it at all", "new_password": NEW_PASSWORD},
                            headers=old_token)
    assert_openai_error(wrong, 401, "invalid_credentials")
    weak = api.client.post("/api/auth/password", json={"current_password": PASSWORD, "new_password": "short"},
                           headers=old_token)
    assert_openai_error(weak, 400)
    assert api.client.get("/v1/models", headers=key).status_code == 200  # nothing changed so far
    r = api.client.post("/api/auth/password", json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
                        headers=old_token)
    assert r.status_code == 200, r.text
    fresh = _as(r.json()["access_token"])
    assert_openai_error(api.client.get("/v1/models", headers=old_token), 401, "token_revoked")
    assert_openai_error(api.client.get("/v1/models", headers=key), 401)
    assert api.client.get("/api/keys", headers=fresh).json()["data"] == []
    assert api.client.post("/api/auth/login", json={"username": "bob", "password": PASSWORD}).status_code == 401
    assert api.client.post("/api/auth/login", json={"username": "bob", "password": NEW_PASSWORD}).status_code == 200


def test_an_admin_password_reset_revokes_keys(api):
    key = _as(_key(api, "bob")["key"])
    bob = api.users["bob"]["id"]
    r = api.client.patch(f"/api/admin/users/{bob}", json={"password": NEW_PASSWORD}, headers=api.auth("alice"))
    assert r.status_code == 200, r.text
    assert_openai_error(api.client.get("/v1/models", headers=key), 401)
    assert_openai_error(api.client.get("/v1/models", headers=api.auth("bob")), 401, "token_revoked")


def test_a_key_survives_only_its_own_password_version(api):
    """Even a key the store did not delete (written by an older version, restored from a backup)
    stops working once the password it was created under is gone."""
    created = _key(api, "bob")
    snapshot = api.services.keys._file.read()
    bob = api.users["bob"]["id"]
    api.client.patch(f"/api/admin/users/{bob}", json={"password": NEW_PASSWORD}, headers=api.auth("alice"))
    with api.services.keys._file.update() as data:
        data["keys"] = snapshot["keys"]  # the old key is back on disk
    assert_openai_error(api.client.get("/v1/models", headers=_as(created["key"])), 401, "api_key_revoked")


def test_refresh_revokes_the_token_it_replaces(api):
    old = api.auth("bob")
    r = api.client.post("/api/auth/refresh", headers=old)
    assert r.status_code == 200
    assert api.client.get("/api/auth/me", headers=_as(r.json()["access_token"])).status_code == 200
    assert_openai_error(api.client.get("/api/auth/me", headers=old), 401, "token_revoked")
    assert_openai_error(api.client.post("/api/auth/refresh", headers=old), 401, "token_revoked")
