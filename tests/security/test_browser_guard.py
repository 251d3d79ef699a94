"""A web page the user visits cannot drive the local server (issue 12, item 4).

DNS rebinding (a hostile name resolving to 127.0.0.1) meets the Host allow-list; cross-site form
and text/plain posts meet the JSON content-type rule; any other cross-origin write meets the
Origin check. ALLOW_ANONYMOUS is for loopback only, and there it takes the dummy keys local
clients send.
"""

from __future__ import annotations

import time

import httpx
import jwt
import pytest
from pydantic import ValidationError

from backend.settings import Settings
from tests.conftest import TEST_SECRET
from tests.reliability.conftest import assert_openai_error

CHAT = {"model": "scripted-model:chat", "messages": [{"role": "user", "content": "hi"}]}


# ---------------------------------------------------------------------------------- Host
@pytest.mark.parametrize("host", ["attacker.example", "attacker.example:8000", "127.0.0.1.nip.io", "192.168.1.20"])
def test_unknown_host_is_refused_everywhere(threaded_app, host):
    with threaded_app() as app:
        for method, path in (("GET", "/health"), ("GET", "/v1/models"), ("POST", "/api/auth/login")):
            r = httpx.request(method, app.base_url + path, headers={"Host": host, **app.auth("bob")},
                              json={"username": "bob", "password": "x"})
            assert_openai_error(r, 421, "host_not_allowed")


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST:{port}", "127.0.0.1:{port}", "[::1]:{port}", "chat.example.org"])
def test_loopback_and_configured_hosts_are_served(threaded_app, host):
    with threaded_app(allowed_hosts=["chat.example.org"]) as app:
        r = httpx.get(app.base_url + "/v1/models", headers={"Host": host.format(port=app.port), **app.auth("bob")})
        assert r.status_code == 200, r.text


# ---------------------------------------------------------------------------------- content type
@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None])
def test_json_routes_refuse_other_content_types(api, ctype):
    import json

    headers = api.auth("bob") | ({"Content-Type": ctype} if ctype else {})
    for path, body in (("/v1/chat/completions", CHAT), ("/api/conversations", {"title": "t"}), ("/api/keys", {})):
        r = api.client.post(path, content=json.dumps(body), headers=headers)
        err = assert_openai_error(r, 415, "unsupported_media_type")
        assert err["type"] == "invalid_request_error"
    assert api.services.conversations.list(api.users["bob"]["id"])[1] == 0  # nothing was created
    assert api.services.keys.list_for(api.users["bob"]["id"]) == []


def test_json_with_charset_and_bodyless_posts_still_work(api):
    r = api.client.post("/v1/chat/completions", content=b'{"model": "scripted-model:chat", "messages": '
                        b'[{"role": "user", "content": "hi"}]}',
                        headers=api.auth("bob") | {"Content-Type": "application/json; charset=utf-8"})
    assert r.status_code == 200, r.text
    assert api.client.post("/api/conversations", headers=api.auth("bob")).status_code == 201  # no body at all
    form = api.client.post("/api/auth/login", data={"username": "bob", "password": "correct horse battery"})
    assert form.status_code == 200  # the OAuth2 password form stays accepted on login


# ---------------------------------------------------------------------------------- Origin
@pytest.mark.parametrize("origin", ["https://evil.example", "null", "http://testserver.evil.example",
                                    "http://localhost:3000", "file://"])
def test_cross_origin_writes_are_refused(api, origin):
    bob = api.users["bob"]["id"]
    for method, path, body in (("POST", "/v1/chat/completions", CHAT), ("POST", "/api/conversations", {}),
                               ("POST", "/api/keys", {}), ("DELETE", "/api/account", None)):
        r = api.client.request(method, path, json=body, headers=api.auth("bob") | {"Origin": origin})
        err = assert_openai_error(r, 403, "origin_not_allowed")
        assert err["type"] == "permission_error"
    assert api.services.users.get(bob) is not None and api.services.keys.list_for(bob) == []
    assert api.provider.calls == []  # the model never ran
    # reading is not a write: a cross-origin GET is answered (CORS keeps its body from the page)
    assert api.client.get("/v1/models", headers=api.auth("bob") | {"Origin": origin}).status_code == 200


def test_cross_site_fetch_metadata_without_origin_is_refused(api):
    r = api.client.post("/api/conversations", json={}, headers=api.auth("bob") | {"Sec-Fetch-Site": "cross-site"})
    assert_openai_error(r, 403, "origin_not_allowed")


def test_same_origin_and_configured_origins_may_write(make_settings):
    from fastapi.testclient import TestClient

    from backend.app import create_app
    from tests.conftest import login
    from tests.fakes import ScriptedProvider

    app = create_app(make_settings(cors_origins=["https://chat.example"]), provider=ScriptedProvider())
    with TestClient(app) as c:
        app.state.services.users.create("bob", "correct horse battery")
        auth = {"Authorization": f"Bearer {login(c, 'bob', 'correct horse battery')}"}
        for origin in ("http://testserver", "https://chat.example", "https://chat.example/"):
            r = c.post("/v1/chat/completions", json=CHAT, headers=auth | {"Origin": origin})
            assert r.status_code == 200, (origin, r.text)


def test_the_chat_page_origin_matches_through_a_port(threaded_app):
    """The page served at http://127.0.0.1:PORT posts with that Origin: same origin, allowed; the
    same host on another port is another origin."""
    with threaded_app() as app:
        ok = httpx.post(app.base_url + "/v1/chat/completions", json=CHAT, headers=app.auth("bob") | {"Origin": app.base_url})
        assert ok.status_code == 200, ok.text
        other = httpx.post(app.base_url + "/v1/chat/completions", json=CHAT,
                           headers=app.auth("bob") | {"Origin": f"http://127.0.0.1:{app.port + 1}"})
        assert_openai_error(other, 403, "origin_not_allowed")


# ---------------------------------------------------------------------------------- anonymous
@pytest.mark.parametrize("bearer", [None, "sk-no-key-required", "ollama", "lm-studio", "EMPTY", "x"])
def test_anonymous_on_loopback_takes_dummy_keys(threaded_app, bearer):
    with threaded_app(allow_anonymous=True) as app:
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        r = httpx.get(app.base_url + "/v1/models", headers=headers)
        assert r.status_code == 200, r.text
        chat = httpx.post(app.base_url + "/v1/chat/completions", json=CHAT, headers=headers, timeout=30)
        assert chat.status_code == 200, chat.text
        # the anonymous user cannot mint credentials for itself
        assert_openai_error(httpx.post(app.base_url + "/api/keys", json={}, headers=headers), 403)


def test_anonymous_still_checks_our_own_credentials(threaded_app):
    with threaded_app(allow_anonymous=True) as app:
        now = int(time.time())
        expired = jwt.encode({"sub": app.user_ids["bob"], "iat": now - 90, "nbf": now - 90, "exp": now - 60,
                              "jti": "a" * 32, "pwv": 1}, TEST_SECRET, algorithm="HS256")
        for token, code in ((expired, "token_expired"), ("sk-local-" + "A" * 43, "invalid_api_key")):
            r = httpx.get(app.base_url + "/v1/models", headers={"Authorization": f"Bearer {token}"})
            assert_openai_error(r, 401, code)
        me = httpx.get(app.base_url + "/api/auth/me", headers=app.auth("bob"))
        assert me.json()["username"] == "bob"  # a real login is still that user


def test_anonymous_needs_a_loopback_bind(make_settings):
    from backend.app import create_app

    with pytest.raises(ValueError, match="loopback"):
        create_app(make_settings(allow_anonymous=True, host="0.0.0.0"))
    create_app(make_settings(allow_anonymous=True, host="127.0.0.1"))  # fine


def test_anonymous_is_off_for_non_loopback_connections(api):
    """The in-process client is not a loopback socket: anonymous access does not apply to it."""
    api.services.settings.allow_anonymous = True
    try:
        assert_openai_error(api.client.get("/v1/models", headers={"Authorization": "Bearer sk-dummy"}), 401)
    finally:
        api.services.settings.allow_anonymous = False


# ---------------------------------------------------------------------------------- proxies
def test_forwarded_for_is_never_trusted_from_everyone():
    with pytest.raises(ValidationError, match="FORWARDED_ALLOW_IPS"):
        Settings(_env_file=None, forwarded_allow_ips="*")
    assert Settings(_env_file=None).forwarded_allow_ips == []
