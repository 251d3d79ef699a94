"""JWTs: only our HS256 tokens, unexpired, for live accounts, not logged out."""

from __future__ import annotations

import base64
import json
import time

import jwt

from tests.conftest import PASSWORD, TEST_SECRET


def _forge(payload: dict, key: str = TEST_SECRET, alg: str = "HS256") -> str:
    return jwt.encode(payload, key, algorithm=alg)


def _claims(user_id: str, **over) -> dict:
    now = int(time.time())
    return {"sub": user_id, "iat": now, "nbf": now, "exp": now + 600, "jti": "j" * 32, "pwv": 1} | over


def _me(api, token: str):
    return api.client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})


def test_valid_token_works(api):
    assert _me(api, api.tokens["bob"]).json()["username"] == "bob"


def test_expired_token_rejected(api):
    r = _me(api, _forge(_claims(api.users["bob"]["id"], exp=int(time.time()) - 60)))
    assert r.status_code == 401 and r.json()["error"]["code"] == "token_expired"


def test_wrong_signature_rejected(api):
    assert _me(api, _forge(_claims(api.users["bob"]["id"]), key="another-secret-" + "y" * 40)).status_code == 401


def test_alg_none_rejected(api):
    header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "typ": "JWT"}).encode()).rstrip(b"=")
    body = base64.urlsafe_b64encode(json.dumps(_claims(api.users["alice"]["id"])).encode()).rstrip(b"=")
    token = (header + b"." + body + b".").decode()
    assert _me(api, token).status_code == 401


def test_other_algorithm_rejected(api):
    assert _me(api, _forge(_claims(api.users["bob"]["id"]), alg="HS512")).status_code == 401


def test_future_nbf_rejected(api):
    assert _me(api, _forge(_claims(api.users["bob"]["id"], nbf=int(time.time()) + 3600))).status_code == 401


def test_missing_claims_rejected(api):
    claims = _claims(api.users["bob"]["id"])
    del claims["exp"]
    assert _me(api, _forge(claims)).status_code == 401


def test_deleted_user_token_rejected(api):
    token = api.tokens["bob"]
    api.services.users.delete(api.users["bob"]["id"])
    assert _me(api, token).status_code == 401


def test_password_change_invalidates_old_tokens(api):
    old = api.tokens["bob"]
    r = api.client.patch(f"/api/admin/users/{api.users['bob']['id']}", json={"password": "a brand new password"},
                         headers=api.auth("alice"))
    assert r.status_code == 200
    assert _me(api, old).status_code == 401
    new = api.client.post("/api/auth/login", json={"username": "bob", "password": "a brand new password"})
    assert _me(api, new.json()["access_token"]).status_code == 200


def test_logout_revokes_token(api):
    token = api.tokens["bob"]
    assert api.client.post("/api/auth/logout", headers={"Authorization": f"Bearer {token}"}).status_code == 204
    r = _me(api, token)
    assert r.status_code == 401 and r.json()["error"]["code"] == "token_revoked"


def test_refresh_issues_new_token(api):
    r = api.client.post("/api/auth/refresh", headers=api.auth("bob"))
    assert r.status_code == 200 and _me(api, r.json()["access_token"]).status_code == 200


def test_login_form_and_json_same_failure_for_unknown_and_wrong(api):
    ok = api.client.post("/api/auth/login", data={"username": "bob", "password": PASSWORD})
    assert ok.status_code == 200
    unknown = api.client.post("/api/auth/login", json={"username": "nobody", "password": "whatever123"})
    wrong = api.client.post("/api/auth/login", json={"username": "alice", "password": "whatever123"})
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.json() == wrong.json()


def test_login_throttled(api):
    for _ in range(5):
        api.client.post("/api/auth/login", json={"username": "bob", "password": "wrong-password"})
    r = api.client.post("/api/auth/login", json={"username": "bob", "password": PASSWORD})
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0


def test_long_password_beyond_bcrypt_limit(api):
    long_pw = "p" * 72 + "A"
    api.services.users.create("dave", long_pw)
    ok = api.client.post("/api/auth/login", json={"username": "dave", "password": long_pw})
    near = api.client.post("/api/auth/login", json={"username": "dave", "password": "p" * 72 + "B"})
    assert ok.status_code == 200 and near.status_code == 401  # byte 73 counts


def test_registration_off_by_default_and_role_not_mass_assignable(api, make_settings):
    r = api.client.post("/api/auth/register", json={"username": "eve", "password": "password123", "role": "admin"})
    assert r.status_code == 403
    api.services.settings.allow_registration = True
    r = api.client.post("/api/auth/register", json={"username": "eve", "password": "password123", "role": "admin"})
    assert r.status_code == 201 and r.json()["user"]["role"] == "user"


def test_api_keys_lifecycle(api):
    created = api.client.post("/api/keys", json={"name": "laptop"}, headers=api.auth("bob"))
    assert created.status_code == 201
    key = created.json()["key"]
    listed = api.client.get("/api/keys", headers=api.auth("bob")).json()["data"]
    assert len(listed) == 1 and "key" not in listed[0] and key not in json.dumps(listed)
    assert api.client.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert api.client.get("/api/keys", headers=api.auth("alice")).json()["data"] == []
    assert api.client.delete(f"/api/keys/{created.json()['id']}", headers=api.auth("alice")).status_code == 404
    assert api.client.delete(f"/api/keys/{created.json()['id']}", headers=api.auth("bob")).status_code == 204
    assert api.client.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code == 401


def test_admin_endpoints_require_admin(api):
    assert api.client.get("/api/admin/users", headers=api.auth("bob")).status_code == 403
    users = api.client.get("/api/admin/users", headers=api.auth("alice")).json()
    assert {u["username"] for u in users["data"]} == {"alice", "bob"}
    assert all("password_hash" not in u for u in users["data"])
    r = api.client.patch(f"/api/admin/users/{api.users['bob']['id']}", json={"disabled": True}, headers=api.auth("alice"))
    assert r.status_code == 200 and r.json()["disabled"] is True
    assert _me(api, api.tokens["bob"]).status_code == 401


def test_anonymous_off_by_default(api):
    r = api.client.get("/v1/models")
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"


def test_a_verified_token_still_expires_and_honours_a_logout_elsewhere(tmp_path, monkeypatch):
    """Verified tokens are remembered per process: expiry and revocation (by any process) still apply."""
    import pytest

    from backend.auth import tokens as tokens_mod
    from backend.errors import AuthenticationError

    revoked = tmp_path / "revoked.json"
    here, elsewhere = (tokens_mod.TokenService(TEST_SECRET, 1, revoked) for _ in range(2))
    token = here.issue("u_0123456789ab", 1)
    claims = here.decode(token)
    assert here.decode(token) == claims  # the remembered verification
    elsewhere.revoke(elsewhere.decode(token))  # logged out through another process's service
    with pytest.raises(AuthenticationError) as exc:
        here.decode(token)
    assert exc.value.code == "token_revoked"
    other = here.issue("u_0123456789ab", 1)
    assert here.decode(other).jti != claims.jti
    real_time = time.time
    monkeypatch.setattr(tokens_mod.time, "time", lambda: real_time() + 60 + tokens_mod.LEEWAY_S + 1)
    with pytest.raises(AuthenticationError) as exc:
        here.decode(other)
    assert exc.value.code == "token_expired"
