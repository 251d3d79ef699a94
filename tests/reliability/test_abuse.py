"""Abuse resistance: request bounds, malformed input on every route, auth edge cases, login
throttling, path traversal in every id, downloads, CORS and the chat page's headers."""

from __future__ import annotations

import base64
import json
import socket
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import jwt
import pytest

from tests.conftest import PASSWORD, TEST_SECRET
from tests.reliability.conftest import assert_openai_error

REPO = Path(__file__).resolve().parents[2]
CHAT = {"model": "scripted-model:chat", "messages": [{"role": "user", "content": "hi"}]}


def _routes(api: Any) -> list[tuple[str, str]]:
    """Every documented (method, path) of the app, from its own OpenAPI spec."""
    out = []
    for path, item in api.client.app.openapi()["paths"].items():
        out.extend((m.upper(), path) for m in item if m in ("get", "post", "put", "patch", "delete"))
    assert len(out) >= 25, out
    return out


def _fill(path: str, value: str) -> str:
    import re

    return re.sub(r"\{[^}]+\}", value, path)


# ---------------------------------------------------------------------------------- body size
def _raw(port: int, head: str, body_parts: list[bytes], timeout: float = 10) -> tuple[int, bytes, float]:
    """Send a request on a raw socket; return (status, response bytes, seconds until the answer)."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(timeout)
    started = time.monotonic()
    try:
        sock.sendall(head.encode())
        for part in body_parts:
            try:
                sock.sendall(part)
            except (BrokenPipeError, ConnectionResetError):
                break
        data = b""
        try:
            while b"\r\n\r\n" not in data or len(data) < data.find(b"\r\n\r\n") + 10:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    finally:
        sock.close()
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0
    return status, data, time.monotonic() - started


POST_ROUTES = ["/v1/chat/completions", "/api/auth/login", "/api/conversations", "/api/keys", "/api/admin/users",
               "/api/files/search", "/api/files/upload"]


@pytest.mark.parametrize("path", POST_ROUTES)
def test_oversized_content_length_is_413_before_the_body_is_read(threaded_app, path):
    with threaded_app(max_body_bytes=64 * 1024, max_upload_bytes=256 * 1024) as app:
        head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"Authorization: Bearer {app.tokens['alice']}\r\nContent-Length: 50000000\r\n\r\n")
        status, data, took = _raw(app.port, head, [])  # no body is ever sent: the answer must not wait for it
        assert status == 413, data[:300]
        assert took < 3
        body = json.loads(data.split(b"\r\n\r\n", 1)[1].split(b"\n")[0] or b"{}")
        assert body["error"]["code"] == "payload_too_large"


@pytest.mark.parametrize("path", POST_ROUTES)
def test_oversized_chunked_body_is_413(threaded_app, path):
    with threaded_app(max_body_bytes=64 * 1024, max_upload_bytes=256 * 1024) as app:
        ctype = "multipart/form-data; boundary=XX" if path.endswith("upload") else "application/json"
        head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ctype}\r\n"
                f"Authorization: Bearer {app.tokens['alice']}\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"a" * 32 * 1024
        parts = [f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" for _ in range(64)]  # 2 MiB, never terminated
        if path.endswith("upload"):  # a well-formed multipart prefix, then a file part that never ends
            prefix = b'--XX\r\nContent-Disposition: form-data; name="files"; filename="a.txt"\r\nContent-Type: text/plain\r\n\r\n'
            parts.insert(0, f"{len(prefix):x}\r\n".encode() + prefix + b"\r\n")
        status, data, _ = _raw(app.port, head, parts)
        assert status == 413, data[:300]


def test_request_bounds_on_chat(api):
    s = api.services.settings
    cases = [
        ({"messages": [{"role": "user", "content": "x"}] * (s.max_messages + 1)}, "too_many_messages"),
        ({"messages": [{"role": "user", "content": "x" * (s.max_message_chars + 1)}]}, "string_above_max_length"),
        ({"messages": [{"role": "user", "content": "x"}], "metadata": json.loads("{\"a\":" * 40 + "1" + "}" * 40)}, "too_deep"),
        ({"messages": [{"role": "user", "content": "word " * 6000}]}, "context_length_exceeded"),
    ]
    for extra, code in cases:
        r = api.client.post("/v1/chat/completions", json=CHAT | extra, headers=api.auth("bob"))
        assert_openai_error(r, 400, code)
    assert api.provider.calls == []


# ---------------------------------------------------------------------------------- malformed input
MALFORMED: dict[str, bytes] = {
    "not json": b"this is not json",
    "truncated": b'{"model": "x", "messages": [',
    "array": b"[1, 2, 3]",
    "null": b"null",
    "deep": b"[" * 100_000,
    "huge int": b'{"model": "scripted-model", "messages": [{"role": "user", "content": "x"}], "max_tokens": ' + b"9" * 5000 + b"}",
    "wrong types": b'{"model": 5, "messages": "x", "username": [], "password": {}, "title": 7, "name": [1], "query": 3}',
    "nul bytes": b'{"model": "a\\u0000b", "messages": [{"role": "user", "content": "\\u0000"}], "username": "a\\u0000", '
                 b'"password": "\\u0000\\u0000\\u0000\\u0000\\u0000\\u0000\\u0000\\u0000", "title": "\\u0000", "query": "\\u0000"}',
    "lone surrogate": b'{"model": "scripted-model", "messages": [{"role": "user", "content": "\\ud800"}], "username": "\\udfff", '
                      b'"password": "\\ud800xxxxxxxxx", "title": "\\ud800", "name": "\\udc00", "query": "\\ud800"}',
    "invalid utf8": b'{"model": "\xff\xfe", "title": "\xc3\x28"}',
    "nan": b'{"model": "scripted-model", "messages": [{"role": "user", "content": "x"}], "temperature": NaN, "top_k": Infinity}',
    "huge float": b'{"model": "scripted-model", "messages": [{"role": "user", "content": "x"}], "temperature": 1e999}',
}


def test_no_route_answers_500_to_malformed_bodies(api):
    failures = []
    for method, path in _routes(api):
        if method not in ("POST", "PATCH", "PUT"):
            continue
        url = _fill(path, "conv_0123456789abcdef01234567")
        for name, body in MALFORMED.items():
            r = api.client.request(method, url, content=body, headers=api.auth("alice") | {"Content-Type": "application/json"})
            if r.status_code >= 500 or "Traceback" in r.text:
                failures.append((method, path, name, r.status_code, r.text[:120]))
            elif r.status_code >= 400:
                assert set(r.json()) == {"error"}, (method, path, name, r.text)
    assert failures == []


def test_lone_surrogates_are_refused_not_stored(api):
    r = api.client.post("/api/conversations", content=b'{"title": "ok \\ud800"}',
                        headers=api.auth("bob") | {"Content-Type": "application/json"})
    assert_openai_error(r, 400)
    listing = api.client.get("/api/conversations", headers=api.auth("bob"))
    assert listing.status_code == 200 and listing.json()["total"] == 0
    r = api.client.post("/api/auth/login", content=b'{"username": "\\ud800", "password": "whatever123"}',
                        headers={"Content-Type": "application/json"})
    assert r.status_code in (400, 401)  # refused or a failed login (audited) — never a crash


def test_no_route_answers_500_to_garbage_query_and_path_values(api):
    values = ["%00", "..", "%2e%2e", "9" * 5000, "-1", "%ff%fe", "%ud800", "a" * 5000]
    failures = []
    for method, path in _routes(api):
        for value in values:
            url = _fill(path, value) + f"?limit={value}&offset={value}&async={value}"
            r = api.client.request(method, url, headers=api.auth("alice"))
            if r.status_code >= 500:
                failures.append((method, path, value[:10], r.status_code))
    assert failures == []


# ---------------------------------------------------------------------------------- paths
TRAVERSALS = [
    "..", "%2e%2e", "%2E%2E%2Fusers.json", "..%2f..%2fusers%2fusers.json", "%252e%252e%252f", "..%5c..%5cusers",
    "%EF%BC%8E%EF%BC%8E%EF%BC%8F",  # fullwidth ．．／
    "%E2%80%A5",  # two-dot leader ‥
    "conv_%00aaaaaaaaaaaa", "conv_aaaaaaaa%2f..%2f..", "u_..%2f..%2fsecrets", "file_abc%00.json",
]


def test_traversal_in_every_id_is_refused(api):
    canary = api.services.settings.data_dir / "users" / "users.json"
    assert canary.exists()
    bob_conv = api.client.post("/api/conversations", json={"title": "bob's"}, headers=api.auth("bob")).json()["id"]
    id_routes = [(m, p) for m, p in _routes(api) if "{" in p]
    assert len(id_routes) >= 10
    for method, path in id_routes:
        for value in TRAVERSALS:
            r = api.client.request(method, _fill(path, value), headers=api.auth("alice"),
                                   json={"title": "x"} if method == "PATCH" else None)
            assert r.status_code in (400, 404, 405), (method, path, value, r.status_code, r.text[:200])
            assert "password_hash" not in r.text
    # the id of another user's conversation is as unknown as a made-up one
    assert api.client.get(f"/api/conversations/{bob_conv}", headers=api.auth("alice")).status_code == 404
    for header_value in ("../../users/users", "conv_" + "%2e" * 10, bob_conv):
        r = api.client.post("/v1/chat/completions", json=CHAT, headers=api.auth("alice") | {"X-Conversation-Id": header_value})
        assert r.status_code == 404, (header_value, r.text)
    r = api.client.post("/v1/chat/completions", json=CHAT | {"file_ids": ["../../users/users"]}, headers=api.auth("bob"))
    assert r.status_code == 404
    for name in ("../alice", "..", "a/b", "a\\b", "ａｄｍｉｎ", "a\x00b", "‥x", ".hidden"):
        r = api.client.post("/api/admin/users", json={"username": name, "password": PASSWORD}, headers=api.auth("alice"))
        assert_openai_error(r, 400, "invalid_username")
    assert sorted(p.name for p in (api.services.settings.data_dir / "users").iterdir() if p.suffix == ".json") == [
        "users.json"]


def test_downloads_are_never_rendered_inline(api):
    html = b"<html><script>alert(document.cookie)</script><svg onload=alert(1)></svg></html>"
    files = [("files", ("notes.txt", html, "text/html"))]
    r = api.client.post("/api/files/upload", files=files, headers=api.auth("bob"))
    assert r.status_code == 200, r.text
    entry = r.json()["data"][0]
    file_id = entry.get("id") or entry.get("file_id")
    dl = api.client.get(f"/api/files/documents/{file_id}/content", headers=api.auth("bob"))
    assert dl.status_code == 200 and dl.content == html
    ctype = dl.headers["content-type"]
    assert "html" not in ctype and "svg" not in ctype and "xml" not in ctype
    assert dl.headers["content-disposition"].startswith("attachment")
    assert dl.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in dl.headers.get("content-security-policy", "")
    assert api.client.get(f"/api/files/documents/{file_id}/content", headers=api.auth("alice")).status_code == 404
    for name, ctype_in in (("evil.svg", "image/svg+xml"), ("page.html", "text/html")):
        up = api.client.post("/api/files/upload", files=[("files", (name, html, ctype_in))], headers=api.auth("bob"))
        if up.status_code == 200 and up.json()["data"][0].get("status") != "failed":
            fid = up.json()["data"][0].get("id") or up.json()["data"][0].get("file_id")
            got = api.client.get(f"/api/files/documents/{fid}/content", headers=api.auth("bob"))
            assert "html" not in got.headers["content-type"] and "svg" not in got.headers["content-type"]
            assert got.headers["content-disposition"].startswith("attachment")
        else:
            assert up.status_code < 500


# ---------------------------------------------------------------------------------- auth
def _me(api: Any, token: str, scheme: str = "Bearer") -> int:
    return api.client.get("/api/auth/me", headers={"Authorization": f"{scheme} {token}"}).status_code


def _claims(user_id: str, **over: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": user_id, "iat": now, "nbf": now, "exp": now + 600, "jti": "k" * 32, "pwv": 1} | over


def _b64(obj: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def test_forged_tokens_are_401(api):
    bob = api.users["bob"]["id"]
    alice = api.users["alice"]["id"]
    good_sig = api.tokens["bob"].split(".")[2]
    forged = [
        *(f"{_b64({'alg': alg, 'typ': 'JWT'})}.{_b64(_claims(alice))}." for alg in ("None", "NONE", "nOnE")),
        f"{_b64({'alg': 'HS256', 'typ': 'JWT'})}.{_b64(_claims(alice))}.{good_sig}",  # signature of another token
        jwt.encode(_claims(alice), "x", algorithm="HS256"),  # a guessable key
        jwt.encode(_claims(alice), "wrong-" + "z" * 40, algorithm="HS256", headers={"kid": "../../secrets/jwt_secret"}),
        jwt.encode(_claims(alice), TEST_SECRET, algorithm="HS384"),
        jwt.encode(_claims("u_" + "0" * 24), TEST_SECRET, algorithm="HS256"),  # a user that never existed
        jwt.encode(_claims(bob, pwv=0), TEST_SECRET, algorithm="HS256"),  # older password version
        jwt.encode(_claims(bob, pwv="1"), TEST_SECRET, algorithm="HS256"),
        jwt.encode(_claims(bob, sub=123), TEST_SECRET, algorithm="HS256"),
        jwt.encode(_claims(bob, exp="never"), TEST_SECRET, algorithm="HS256"),
        jwt.encode(_claims(bob, iat=int(time.time()) + 86400, nbf=int(time.time()) + 86400), TEST_SECRET, algorithm="HS256"),
        "not.a.jwt", "a" * 10_000, "sk-local-" + "x" * 40, "",
    ]
    for token in forged:
        assert _me(api, token) == 401, token[:80]
    assert _me(api, api.tokens["bob"], scheme="Basic") == 401
    assert api.client.get(f"/api/auth/me?access_token={api.tokens['bob']}").status_code == 401
    assert _me(api, api.tokens["bob"]) == 200


def test_api_key_of_a_deleted_user_stops_working(api):
    key = api.client.post("/api/keys", json={"name": "k"}, headers=api.auth("bob")).json()["key"]
    assert _me(api, key) == 200
    assert api.client.delete(f"/api/admin/users/{api.users['bob']['id']}", headers=api.auth("alice")).status_code == 200
    assert _me(api, key) == 401
    assert _me(api, api.tokens["bob"]) == 401


def test_login_throttled_per_ip_with_identical_answers(api):
    bad = [api.client.post("/api/auth/login", json={"username": f"nobody{i}", "password": "wrong-pass-1"}) for i in range(2)]
    bad += [api.client.post("/api/auth/login", json={"username": "alice", "password": "wrong-pass-1"}) for _ in range(3)]
    assert {r.status_code for r in bad} == {401}
    assert len({r.text for r in bad}) == 1  # unknown user and wrong password look the same
    # five failures from this address: even a correct login from it is refused for a while
    blocked = api.client.post("/api/auth/login", json={"username": "bob", "password": PASSWORD})
    assert_openai_error(blocked, 429, "too_many_login_attempts")
    assert int(blocked.headers["retry-after"]) > 0
    blocked_unknown = api.client.post("/api/auth/login", json={"username": "nobody9", "password": PASSWORD})
    assert blocked_unknown.status_code == 429
    assert blocked_unknown.json()["error"]["code"] == blocked.json()["error"]["code"]


def test_long_and_multibyte_passwords(api):
    pw = "ü" * 40  # 80 UTF-8 bytes: past bcrypt's 72
    api.services.users.create("dora", pw)
    ok = api.client.post("/api/auth/login", json={"username": "dora", "password": pw})
    near = api.client.post("/api/auth/login", json={"username": "dora", "password": "ü" * 36 + "üüüx"})
    assert ok.status_code == 200 and near.status_code == 401
    huge = api.client.post("/api/auth/login", json={"username": "dora", "password": "x" * 4096})
    assert huge.status_code == 401
    too_long = api.client.post("/api/admin/users", json={"username": "erin", "password": "x" * 2000}, headers=api.auth("alice"))
    assert_openai_error(too_long, 400)


def test_mass_assignment_is_ignored(api):
    r = api.client.post("/api/admin/users", headers=api.auth("alice"), json={
        "username": "frank", "password": PASSWORD, "id": "u_" + "a" * 24, "password_hash": "$2b$04$x",
        "password_version": 99, "disabled": True, "created_at": 0})
    assert r.status_code == 201
    user = api.services.users.by_username("frank")
    assert user["id"] != "u_" + "a" * 24 and user["password_version"] == 1 and user["disabled"] is False
    assert api.client.post("/api/auth/login", json={"username": "frank", "password": PASSWORD}).status_code == 200
    # a user cannot promote themself, and an admin PATCH cannot set the role or the hash
    bob_id = api.users["bob"]["id"]
    assert api.client.patch(f"/api/admin/users/{bob_id}", json={"role": "admin"}, headers=api.auth("bob")).status_code == 403
    api.client.patch(f"/api/admin/users/{bob_id}", json={"role": "admin", "password_hash": "x"}, headers=api.auth("alice"))
    assert api.services.users.get(bob_id)["role"] == "user"
    conv = api.client.post("/api/conversations", json={"title": "t", "user_id": api.users["alice"]["id"]}, headers=api.auth("bob"))
    assert api.client.get(f"/api/conversations/{conv.json()['id']}", headers=api.auth("alice")).status_code == 404


# ---------------------------------------------------------------------------------- CORS and page
def test_cors_only_for_configured_origins(make_settings):
    from fastapi.testclient import TestClient

    from backend.app import create_app
    from tests.fakes import ScriptedProvider

    pre = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"}
    with TestClient(create_app(make_settings(cors_origins=["https://chat.example"]), provider=ScriptedProvider())) as c:
        good = c.options("/v1/chat/completions", headers=pre | {"Origin": "https://chat.example"})
        assert good.headers["access-control-allow-origin"] == "https://chat.example"
        for origin in ("https://evil.example", "null", "https://chat.example.evil.com", "http://chat.example"):
            r = c.options("/v1/chat/completions", headers=pre | {"Origin": origin})
            assert r.headers.get("access-control-allow-origin") in (None, ""), origin
            got = c.get("/health", headers={"Origin": origin})
            assert "access-control-allow-origin" not in got.headers
        assert good.headers.get("access-control-allow-credentials") != "true"
    with TestClient(create_app(make_settings(), provider=ScriptedProvider())) as c:
        r = c.get("/health", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in r.headers
        r = c.options("/v1/chat/completions", headers=pre | {"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in r.headers


class _ScriptAudit(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name.lower().startswith("on"):
                self.problems.append(f"inline handler {name} on <{tag}>")
            if value and value.strip().lower().startswith("javascript:"):
                self.problems.append(f"javascript: URL in <{tag} {name}>")
        if tag == "script":
            if not dict(attrs).get("src"):
                self.problems.append("inline <script>")
            self._in_script = True
        if tag == "style":
            self.problems.append("inline <style>")
        if any(n == "style" for n, _ in attrs):
            self.problems.append(f"style attribute on <{tag}>")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.problems.append("script body")


def test_frontend_html_has_no_inline_script_or_style():
    pages = sorted((REPO / "frontend").glob("*.html"))
    assert pages
    for page in pages:
        audit = _ScriptAudit()
        audit.feed(page.read_text(encoding="utf-8"))
        assert audit.problems == [], (page.name, audit.problems)


def test_security_headers_on_page_api_and_errors(make_settings):
    from fastapi.testclient import TestClient

    from backend.app import create_app
    from tests.fakes import ScriptedProvider

    with TestClient(create_app(make_settings(serve_frontend=True), provider=ScriptedProvider())) as c:
        for path in ("/", "/index.html", "/js/main.js", "/health", "/v1/models", "/nope"):
            r = c.get(path)
            assert r.headers["x-content-type-options"] == "nosniff", path
            csp = {d.split()[0]: d.split()[1:] for d in (x.strip() for x in r.headers["content-security-policy"].split(";")) if d}
            assert csp["script-src"] == ["'self'"], csp
            assert "'unsafe-inline'" not in csp.get("style-src", []) and "'unsafe-eval'" not in str(csp)
            assert csp["object-src"] == ["'none'"] and csp["frame-ancestors"] == ["'none'"]
            assert csp["base-uri"] == ["'none'"]
            assert r.headers["x-frame-options"] == "DENY"
        page = c.get("/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
