"""The SSRF guard and the guarded HTTP client."""

from __future__ import annotations

import asyncio

import pytest

from backend.net.http import HttpFetchError, safe_get_json
from backend.net.ssrf import SSRFError, check_url, check_url_async, parse_url
from tests.fixtures.replay_server import Route

BLOCKED = [
    "http://127.0.0.1/",
    "http://localhost:8000/v1/models",
    "http://2130706433/",  # decimal 127.0.0.1
    "http://0x7f000001/",  # hex
    "http://0x7f.1/",  # hex + short form
    "http://0177.0.0.1/",  # octal
    "http://127.1/",  # short form
    "http://017700000001/",  # octal integer
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",  # IPv4-mapped IPv6
    "http://[::ffff:7f00:1]/",
    "http://[::127.0.0.1]/",  # IPv4-compatible
    "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 of 169.254.169.254
    "http://[2002:7f00:1::]/",  # 6to4 of 127.0.0.1
    "http://169.254.169.254/latest/meta-data/",  # link-local (cloud metadata)
    "http://10.0.0.5/",
    "http://172.16.3.4/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",  # shared address space (CGNAT)
    "http://0.0.0.0/",
    "http://[::]/",
    "http://224.0.0.1/",  # multicast
    "http://240.0.0.1/",  # reserved
    "http://255.255.255.255/",
    "http://[fe80::1]/",
    "http://[fc00::1]/",  # unique local
]


@pytest.mark.parametrize("url", BLOCKED)
def test_internal_and_ambiguous_addresses_are_refused(url):
    with pytest.raises(SSRFError):
        check_url(url)
    with pytest.raises(SSRFError):
        asyncio.run(check_url_async(url))


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "gopher://example.com/", "ftp://example.com/", "javascript:alert(1)", "//example.com/", ""],
)
def test_only_http_and_https_schemes(url):
    with pytest.raises(SSRFError):
        check_url(url)


def test_credentials_and_control_characters_refused():
    with pytest.raises(SSRFError, match="credentials"):
        check_url("http://user:pass@93.184.216.34/")
    with pytest.raises(SSRFError):
        check_url("http://93.184.216.34/\r\nHost: evil")


def test_public_ip_literal_is_allowed_without_dns():
    target = check_url("https://93.184.216.34:8443/path")
    assert target.addresses == ("93.184.216.34",) and target.port == 8443 and not target.allow_listed


def test_hex_looking_hostname_is_not_mistaken_for_a_number():
    # "cafe.be" is made only of hex letters but is a name, not a numeric address
    assert parse_url("http://cafe.be/") == ("http", "cafe.be", 80)
    assert parse_url("https://deadbeef.cafe:444/x") == ("https", "deadbeef.cafe", 444)


def test_allow_list_is_explicit_and_exact():
    assert check_url("http://127.0.0.1:9/", allow_hosts=["127.0.0.1"]).allow_listed
    with pytest.raises(SSRFError):
        check_url("http://127.0.0.2:9/", allow_hosts=["127.0.0.1"])
    with pytest.raises(SSRFError):
        check_url("http://localhost:9/", allow_hosts=["127.0.0.1"])


def test_client_follows_redirects_only_after_rechecking(tool_settings, replay):
    replay.add_route(Route("GET", "/redirect/to-loopback", status=302, headers={"Location": "http://127.0.0.1:{port}/forecast/v1/forecast?latitude=52.52&longitude=13.41"}))
    replay.add_route(Route("GET", "/redirect/to-metadata", status=301, headers={"Location": "http://169.254.169.254/latest/meta-data/"}))
    replay.add_route(Route("GET", "/redirect/ok", status=302, headers={"Location": "/forecast/v1/forecast?latitude=52.52&longitude=13.41"}))
    replay.add_route(Route("GET", "/redirect/loop", status=302, headers={"Location": "/redirect/loop"}))

    # served as "localhost" (allow-listed); the redirect to 127.0.0.1 (not allow-listed) is refused
    settings = tool_settings(ssrf_allow_hosts=["localhost"])
    with pytest.raises(HttpFetchError, match="blocked.*127.0.0.1.*loopback"):
        asyncio.run(safe_get_json(replay.url("/redirect/to-loopback", host="localhost"), None, settings))
    with pytest.raises(HttpFetchError, match="blocked.*link-local"):
        asyncio.run(safe_get_json(replay.url("/redirect/to-metadata", host="localhost"), None, settings))

    # a same-host redirect to an allowed place is followed
    data = asyncio.run(safe_get_json(replay.url("/redirect/ok", host="localhost"), None, settings))
    assert data["latitude"] == 52.52

    with pytest.raises(HttpFetchError, match="too many redirects"):
        asyncio.run(safe_get_json(replay.url("/redirect/loop", host="localhost"), None, settings))


def test_client_refuses_loopback_without_allow_list(tool_settings, replay):
    with pytest.raises(HttpFetchError, match="blocked"):
        asyncio.run(safe_get_json(replay.url("/forecast/v1/forecast"), {"latitude": "52.52", "longitude": "13.41"}, tool_settings()))
    assert check_url(replay.url("/"), allow_hosts=["127.0.0.1"]).addresses == ("127.0.0.1",)


def test_connection_is_pinned_to_the_checked_address(tool_settings, replay, monkeypatch):
    """DNS rebinding: whatever the resolver says later, the connection goes to the address that was checked."""
    import socket

    calls = {"n": 0}
    real = socket.getaddrinfo

    def rebinding(host, *args, **kwargs):
        if host == "rebind.test":
            calls["n"] += 1
            # first answer is the (allow-listed) replay server; any later lookup would say 10.0.0.1
            ip = "127.0.0.1" if calls["n"] == 1 else "10.0.0.1"
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, args[0] if args else 80))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    settings = tool_settings(ssrf_allow_hosts=["rebind.test"])
    url = f"http://rebind.test:{replay.port}/forecast/v1/forecast"
    data = asyncio.run(safe_get_json(url, {"latitude": "52.52", "longitude": "13.41"}, settings))
    assert data["latitude"] == 52.52
    assert calls["n"] == 1  # resolved exactly once, by the guard
    sent = replay.requests[-1]
    assert sent.headers["host"] == f"rebind.test:{replay.port}"  # Host header kept
