"""/docs without a CDN: every asset the page references is local, served, and allowed by the page's
CSP; the OpenAPI document declares the bearer scheme and the request bodies routes read themselves."""

from __future__ import annotations

import re
from html.parser import HTMLParser


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.styles: list[str] = []
        self.inline_scripts = 0
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "script":
            if a.get("src"):
                self.scripts.append(a["src"])
            else:
                self._in_script = True
        if tag == "link" and a.get("href"):
            self.styles.append(a["href"])
        if tag == "style" or "style" in a:
            raise AssertionError("inline style in the docs page")

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_scripts += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False


def csp_sources(header: str) -> dict[str, list[str]]:
    out = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            out[words[0]] = words[1:]
    return out


def test_docs_page_uses_only_local_assets_its_csp_allows(api):
    r = api.client.get("/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    refs = _Refs()
    refs.feed(r.text)
    assert refs.inline_scripts == 0  # script-src 'self' would block an inline initialiser
    assert len(refs.scripts) == 2 and len(refs.styles) == 2
    csp = csp_sources(r.headers["content-security-policy"])
    assert csp["script-src"] == ["'self'"] and "'unsafe-inline'" not in r.headers["content-security-policy"]
    assert "'self'" in csp["style-src"] and "'self'" in csp["img-src"] and "'self'" in csp["connect-src"]
    for url in refs.scripts + refs.styles:
        assert url.startswith("/docs/assets/"), url  # same origin: no CDN
        asset = api.client.get(url)
        assert asset.status_code == 200 and len(asset.content) > 100, url
    assert api.client.get("/docs/assets/swagger-ui-bundle.js").headers["content-type"].startswith("text/javascript")
    assert api.client.get("/docs/assets/swagger-ui.css").headers["content-type"].startswith("text/css")
    init = api.client.get("/docs/assets/docs-init.js").text
    openapi_url = re.search(r'data-openapi-url="([^"]+)"', r.text).group(1)
    assert "data-openapi-url" in init and api.client.get(openapi_url).status_code == 200
    assert api.client.get("/docs/assets/index.html").status_code == 404  # only the files the page needs
    assert api.client.get("/docs/assets/..%2F__init__.py").status_code == 404


def test_openapi_declares_bearer_auth_and_request_bodies(api):
    doc = api.client.get("/openapi.json").json()
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "description": doc["components"]["securitySchemes"]["bearer"]["description"]}
    paths = doc["paths"]
    for path in ("/v1/chat/completions", "/v1/models", "/v1/embeddings", "/v1/completions", "/api/files/upload"):
        method = "get" if path == "/v1/models" else "post"
        assert {"bearer": []} in paths[path][method]["security"], path
    assert "security" not in paths["/api/auth/login"]["post"]
    schemas = doc["components"]["schemas"]

    def body_schema(path: str, ctype: str = "application/json") -> dict:
        ref = paths[path]["post"]["requestBody"]["content"][ctype]["schema"]["$ref"]
        return schemas[ref.rsplit("/", 1)[1]]

    chat = body_schema("/v1/chat/completions")
    assert {"model", "messages"} <= set(chat["required"]) and "tools" in chat["properties"]
    assert {"model", "prompt"} <= set(body_schema("/v1/completions")["required"])
    assert "suffix" in body_schema("/v1/completions")["properties"]
    assert {"model", "input"} <= set(body_schema("/v1/embeddings")["required"])
    login = body_schema("/api/auth/login")
    assert set(login["required"]) == {"username", "password"}
    assert body_schema("/api/auth/login", "application/x-www-form-urlencoded") == login
    upload = paths["/api/files/upload"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert upload["properties"]["files"]["items"]["format"] == "binary"
    # every $ref in the document resolves
    text = api.client.get("/openapi.json").text
    for name in set(re.findall(r'"#/components/schemas/([^"]+)"', text)):
        assert name in schemas, name
