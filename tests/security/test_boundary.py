"""The rest of the boundary (issue 12, item 7): signing-secret strength, bounded and honest
throttles, registration limits, health/metrics that do not load the upstream, the proxy trust
pair, the starlette pin."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import httpx
import pytest

from backend.auth.secrets import check_secret_strength
from backend.auth.throttle import LoginThrottle
from tests.conftest import PASSWORD
from tests.fakes import ScriptedProvider
from tests.reliability.conftest import assert_openai_error

REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------- JWT secret
@pytest.mark.parametrize("weak", [
    "test-secret-" + "x" * 40,  # the value this repository's tests used to run with
    "bench-secret-" + "x" * 40,
    "changeme-changeme-changeme-changeme",
    "your-super-secret-jwt-key-goes-here-please",
    "a" * 64,
    "abababababababababababababababababab",
    "0123456701234567012345670123456701234567",
    "short-but-random-Qx7",
])
def test_weak_or_example_jwt_secrets_are_refused(weak):
    with pytest.raises(ValueError, match="JWT_SECRET"):
        check_secret_strength(weak)


@pytest.mark.parametrize("make", [lambda: secrets.token_urlsafe(48), lambda: secrets.token_hex(32),
                                  lambda: secrets.token_urlsafe(32)])
def test_random_secrets_are_accepted(make):
    for _ in range(50):
        check_secret_strength(make())


def test_the_server_will_not_start_with_a_weak_secret(make_settings):
    from fastapi.testclient import TestClient

    from backend.app import create_app

    app = create_app(make_settings(jwt_secret="changeme" * 6), provider=ScriptedProvider())
    with pytest.raises(ValueError, match="example or test value"), TestClient(app):
        pass


# ---------------------------------------------------------------------------------- throttles
def test_login_throttle_memory_is_bounded_and_still_blocks():
    throttle = LoginThrottle(max_failures=5, window_s=300, max_keys=1000)
    for i in range(20_000):  # a spray of made-up usernames from many addresses
        throttle.failed(f"user{i}", f"10.0.{i // 250}.{i % 250}")
    assert throttle.remembered <= 1000
    for _ in range(5):
        throttle.failed("alice", "192.0.2.7")
    with pytest.raises(Exception) as info:
        throttle.check("alice", "198.51.100.1")
    assert getattr(info.value, "status_code", None) == 429


def test_registration_is_throttled_per_address(make_settings):
    from fastapi.testclient import TestClient

    from backend.app import create_app

    app = create_app(make_settings(allow_registration=True, registration_max_per_ip=3), provider=ScriptedProvider())
    with TestClient(app) as c:
        for i in range(3):
            assert c.post("/api/auth/register", json={"username": f"new{i}", "password": PASSWORD}).status_code == 201
        r = c.post("/api/auth/register", json={"username": "new9", "password": PASSWORD})
        assert_openai_error(r, 429, "too_many_registrations")
        assert int(r.headers["retry-after"]) >= 1
        assert app.state.services.users.by_username("new9") is None


# ---------------------------------------------------------------------------------- health, metrics
class CountingProvider(ScriptedProvider):
    def __init__(self) -> None:
        super().__init__()
        self.health_calls = 0

    async def health(self):
        self.health_calls += 1
        return await super().health()


def test_health_detailed_and_metrics_do_not_probe_the_upstream_per_request(make_settings):
    from fastapi.testclient import TestClient

    from backend.app import create_app

    provider = CountingProvider()
    with TestClient(create_app(make_settings(health_cache_s=60), provider=provider)) as c:
        for _ in range(25):
            assert c.get("/health/detailed").status_code == 200
            assert c.get("/metrics").status_code == 200
        assert provider.health_calls == 1


def test_metrics_can_require_a_token(make_settings):
    from fastapi.testclient import TestClient

    from backend.app import create_app

    with TestClient(create_app(make_settings(metrics_token="m" + secrets.token_hex(16)), provider=ScriptedProvider())) as c:
        token = c.app.state.settings.metrics_token.get_secret_value()
        assert_openai_error(c.get("/metrics"), 401)
        assert_openai_error(c.get("/metrics", headers={"Authorization": "Bearer wrong"}), 401)
        ok = c.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200 and "http_requests" in ok.text or "agent_" in ok.text


# ---------------------------------------------------------------------------------- proxies
def test_nginx_replaces_forwarded_for_and_compose_trusts_only_nginx():
    nginx = (REPO / "nginx.conf").read_text()
    assert re.search(r"proxy_set_header X-Forwarded-For \$remote_addr;", nginx)
    assert "$proxy_add_x_forwarded_for" not in nginx  # appending would keep the client's own value
    compose = (REPO / "docker-compose.yml").read_text()
    trusted = re.search(r"FORWARDED_ALLOW_IPS:\s*\"?([^\"\n]+)", compose).group(1).strip()
    assert trusted != "*"
    assert f"ipv4_address: {trusted}" in compose  # the address nginx is pinned to


def test_spoofed_forwarded_for_does_not_dodge_the_login_throttle(tmp_path):
    """The real server (run_backend.py) trusts no proxy unless told: every guess counts against
    the connection's own address, whatever X-Forwarded-For claims."""
    from tests.conftest import free_port, start_server, stop_server

    server = start_server(tmp_path / "data", wait_model=False, LLM_PROVIDER="openai", OPENAI_MODEL="m",
                          OPENAI_BASE_URL=f"http://127.0.0.1:{free_port()}/v1", LOGIN_MAX_FAILURES="3")
    try:
        codes = []
        for i in range(5):
            r = httpx.post(server.base_url + "/api/auth/login", json={"username": f"u{i}", "password": "wrong password"},
                           headers={"X-Forwarded-For": f"203.0.113.{i}"})
            codes.append(r.status_code)
        assert codes == [401, 401, 401, 429, 429]
    finally:
        stop_server(server)


# ---------------------------------------------------------------------------------- dependencies
def test_starlette_is_pinned_past_the_range_dos():
    """CVE-2025-62727 (FileResponse Range parsing, quadratic): fixed in starlette 0.49.1."""
    from importlib.metadata import version

    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==([^\s#]+)", (REPO / "requirements.txt").read_text(), re.M))
    assert "starlette" in pins, "starlette must be pinned explicitly"

    def key(v: str) -> tuple[int, ...]:
        return tuple(int(p) for p in re.findall(r"\d+", v)[:3])

    assert key(pins["starlette"]) >= (0, 49, 1)
    assert version("starlette") == pins["starlette"]


def test_many_ranges_on_a_download_answer_fast(api):
    import time

    path = api.services.settings.data_dir / "big.bin"
    path.write_bytes(b"x" * 1_000_000)
    from fastapi.responses import FileResponse

    @api.client.app.get("/_range_probe")
    async def _probe() -> FileResponse:
        return FileResponse(path)

    ranges = ",".join(f"{i}-{i + 1}" for i in range(0, 20_000, 3))
    started = time.monotonic()
    r = api.client.get("/_range_probe", headers={"Range": f"bytes={ranges}"})
    assert time.monotonic() - started < 2.0
    assert r.status_code in (200, 206, 416)
