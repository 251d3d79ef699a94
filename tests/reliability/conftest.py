"""Harnesses for the reliability and security tests.

* ``ThreadedApp``: the real app (``create_app``) served by a real uvicorn on 127.0.0.1 in a
  background thread, on a *scripted* model — real HTTP (disconnects, keep-alives, concurrency)
  with the services still inspectable in-process (``provider.cancelled``, ``scheduler.waiting``).
* ``fake_upstream``: the fake OpenAI-compatible upstream (tests/fixtures/fake_openai_server.py)
  with fault injection, for the server subprocess started with ``LLM_PROVIDER=openai``.
* SSE helpers.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from backend.settings import Settings
from tests.conftest import PASSWORD, TEST_SECRET
from tests.fakes import ScriptedProvider
from tests.fixtures.fake_openai_server import FakeOpenAIServer


def reliability_settings(data_dir: Path, **overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "data_dir": data_dir,
        "jwt_secret": TEST_SECRET,
        "bcrypt_rounds": 4,
        "serve_frontend": False,
        "log_json": False,
        "router_use_llm": False,
        "allowed_hosts": ["testserver"],  # the host name TestClient sends
    }
    base.update(overrides)
    return Settings(_env_file=None, **base)


class ThreadedApp:
    """``create_app(settings, provider=...)`` under uvicorn (lifespan on) in a daemon thread."""

    def __init__(self, settings: Settings, provider: ScriptedProvider, users: dict[str, str] | None = None) -> None:
        from backend.app import create_app

        self.settings = settings
        self.provider = provider
        self.app = create_app(settings, provider=provider)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)
        self._users = users or {"alice": "admin", "bob": "user", "carol": "user"}
        self.tokens: dict[str, str] = {}
        self.user_ids: dict[str, str] = {}

    def __enter__(self) -> ThreadedApp:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the app did not start")
            time.sleep(0.01)
        for name, role in self._users.items():
            self.user_ids[name] = self.services.users.create(name, PASSWORD, role)["id"]
            r = httpx.post(self.base_url + "/api/auth/login", json={"username": name, "password": PASSWORD})
            assert r.status_code == 200, r.text
            self.tokens[name] = r.json()["access_token"]
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()

    @property
    def services(self) -> Any:
        return self.app.state.services

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def chat(self, who: str, text: str = "hi", timeout: float = 30, **extra: Any) -> httpx.Response:
        body = {"model": "scripted-model:chat", "messages": [{"role": "user", "content": text}], **extra}
        return httpx.post(self.base_url + "/v1/chat/completions", json=body, headers=self.auth(who), timeout=timeout)


@pytest.fixture
def threaded_app(tmp_path: Path):
    """Factory: ``with threaded_app(provider, **settings) as app: ...``."""

    def make(provider: ScriptedProvider | None = None, **overrides: Any) -> ThreadedApp:
        settings = reliability_settings(tmp_path / "data", **overrides)
        return ThreadedApp(settings, provider or ScriptedProvider())

    return make


@pytest.fixture(scope="module")
def fake_upstream() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(model="fake-model") as srv:
        yield srv


def set_fault(upstream: FakeOpenAIServer, mode: str, delay_s: float = 3.0) -> None:
    upstream.fault = mode
    upstream.delay_s = delay_s


def wait_until(predicate: Any, timeout: float = 5.0, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def sse_lines(raw: str) -> list[str]:
    """The non-empty lines of an SSE body (comments included)."""
    return [line for line in raw.splitlines() if line.strip()]


def sse_data(raw: str) -> list[Any]:
    out: list[Any] = []
    for line in raw.splitlines():
        if line.startswith("data: "):
            payload = line[6:]
            out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


def assert_openai_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text[:500])
    body = response.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"}, err
    assert isinstance(err["message"], str) and err["message"]
    assert "Traceback" not in response.text
    if code is not None:
        assert err["code"] == code, err
    return err
