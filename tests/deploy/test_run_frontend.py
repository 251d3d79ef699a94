"""run_frontend.py: the static server for a split deployment (own port, same headers, configurable API origin)."""

from __future__ import annotations

import argparse
import threading
from collections.abc import Iterator

import httpx
import pytest

from run_frontend import make_server, normalise_origin


def serve(api_origin: str | None) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, api_origin)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def same_origin() -> Iterator[str]:
    yield from serve(None)


@pytest.fixture
def split() -> Iterator[str]:
    yield from serve("https://api.example.test:8443")


def test_serves_the_page_with_the_security_headers(same_origin: str) -> None:
    r = httpx.get(same_origin + "/")
    assert r.status_code == 200 and "Local Agent Chat" in r.text
    assert r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "connect-src 'self';" in csp and "frame-ancestors 'none'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"
    js = httpx.get(same_origin + "/js/main.js")
    assert js.headers["content-type"].startswith("text/javascript")
    # the shipped config.js: same origin
    assert "apiBase: ''" in httpx.get(same_origin + "/config.js").text


def test_api_origin_goes_into_config_and_csp(split: str) -> None:
    r = httpx.get(split + "/config.js")
    assert r.status_code == 200
    assert r.text.strip() == 'window.APP_CONFIG = Object.freeze({"apiBase": "https://api.example.test:8443"});'
    assert "connect-src 'self' https://api.example.test:8443;" in r.headers["content-security-policy"]


def test_no_listing_and_no_escape_from_the_folder(same_origin: str) -> None:
    assert httpx.get(same_origin + "/vendor/").status_code == 404
    assert httpx.get(same_origin + "/../run_frontend.py").status_code == 404
    assert httpx.get(same_origin + "/%2e%2e/run_frontend.py").status_code == 404
    missing = httpx.get(same_origin + "/nope.html")
    assert missing.status_code == 404 and missing.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    "bad", ["ftp://x", "http://x/path", "http://user:pw@x", "https://x'; script-src *", "not a url", "http://x?q=1"]
)
def test_bad_api_origins_are_refused(bad: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        normalise_origin(bad)


def test_good_api_origin_is_normalised() -> None:
    assert normalise_origin("https://api.example.com:8443/") == "https://api.example.com:8443"
