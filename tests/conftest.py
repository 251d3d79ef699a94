"""Shared fixtures.

* ``make_settings``: isolated Settings on a temp DATA_DIR (no .env, fast bcrypt).
* ``api``: the real app in-process (TestClient, lifespan run) on a *scripted* model, with an admin
  ``alice`` and a user ``bob`` logged in — for deterministic route behaviour.
* ``live_server``: the real server as a subprocess on 127.0.0.1 with the real embedded model
  (session-scoped: the model loads once) — for end-to-end tests with the OpenAI SDK.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from backend.settings import Settings
from tests.fakes import ScriptedProvider

REPO = Path(__file__).resolve().parents[1]
MODELS_DIR = Path(os.environ.get("TEST_MODELS_DIR", REPO / "data" / "models"))
# a fresh random signing key per test session (the server refuses well-known or weak secrets)
TEST_SECRET = secrets.token_urlsafe(48)
PASSWORD = "correct horse battery"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "model: loads the real embedded model (slow)")
    config.addinivalue_line("markers", "browser: drives a real Chromium")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def make_settings(tmp_path: Path):
    def factory(**overrides: Any) -> Settings:
        base: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "jwt_secret": TEST_SECRET,
            "bcrypt_rounds": 4,
            "serve_frontend": False,
            "log_json": False,
            "router_use_llm": False,
            "allowed_hosts": ["testserver"],  # the host name TestClient sends
            "embedded_agent_model": None,  # one model unless a test asks for the agent model
        }
        base.update(overrides)
        return Settings(_env_file=None, **base)

    return factory


@dataclass
class ApiHarness:
    client: Any
    provider: ScriptedProvider
    tokens: dict[str, str] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    @property
    def services(self) -> Any:
        return self.client.app.state.services


def login(client: Any, username: str, password: str = PASSWORD) -> str:
    r = client.post("/api/auth/login", json={"username": username, "password": password})
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


@pytest.fixture
def api(make_settings) -> Iterator[ApiHarness]:
    from fastapi.testclient import TestClient

    from backend.app import create_app

    provider = ScriptedProvider()
    settings = make_settings()
    app = create_app(settings, provider=provider)
    with TestClient(app, raise_server_exceptions=False) as client:
        services = app.state.services
        harness = ApiHarness(client, provider)
        harness.users["alice"] = services.users.create("alice", PASSWORD, "admin")
        harness.users["bob"] = services.users.create("bob", PASSWORD, "user")
        harness.tokens = {name: login(client, name) for name in ("alice", "bob")}
        yield harness


# ----------------------------------------------------------------------------- live server
@dataclass
class LiveServer:
    base_url: str
    data_dir: Path
    process: subprocess.Popen
    tokens: dict[str, str]
    log_path: Path

    @property
    def v1(self) -> str:
        return self.base_url + "/v1"

    def openai(self, who: str = "alice", **kw: Any):
        import openai

        return openai.OpenAI(base_url=self.v1, api_key=self.tokens[who], max_retries=0, timeout=300, **kw)

    def model(self) -> str:
        r = httpx.get(self.v1 + "/models", headers={"Authorization": f"Bearer {self.tokens['alice']}"})
        return r.json()["data"][0]["id"]


def server_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "OLLAMA_", "TAVILY_"))}
    env.update(
        DATA_DIR=str(data_dir),
        MODELS_DIR=str(MODELS_DIR),
        JWT_SECRET=TEST_SECRET,
        BCRYPT_ROUNDS="4",
        LOG_JSON="true",
        PYTHONUNBUFFERED="1",
        # agents run on the (small) chat model in tests; tests/e2e/test_agent_model.py runs the split
        EMBEDDED_AGENT_MODEL="none",
    )
    env.update(extra)
    return env


def create_user(env: dict[str, str], name: str, admin: bool = False, password: str = PASSWORD) -> None:
    cmd = [sys.executable, str(REPO / "run_backend.py"), "create-user", name] + (["--admin"] if admin else [])
    out = subprocess.run(cmd, input=password + "\n", env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def start_server(data_dir: Path, *, wait_model: bool = True, workers: int = 1, **env_extra: str) -> LiveServer:
    port = free_port()
    env = server_env(data_dir, **env_extra)
    data_dir.mkdir(parents=True, exist_ok=True)
    create_user(env, "alice", admin=True)
    create_user(env, "bob")
    log_path = data_dir.parent / f"server-{port}.log"
    with open(log_path, "wb") as log:  # the child keeps its own copy of the fd
        proc = subprocess.Popen(
            [sys.executable, str(REPO / "run_backend.py"), "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)],
            env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 600
    ready_path = "/health/detailed" if wait_model else "/health"
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(base + ready_path, timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.time() > deadline:
            proc.kill()
            raise RuntimeError(f"server not ready:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.5)
    tokens = {name: login(httpx.Client(base_url=base), name) for name in ("alice", "bob")}
    return LiveServer(base, data_dir, proc, tokens, log_path)


def stop_server(server: LiveServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_server(tmp_path_factory.mktemp("live") / "data")
    yield server
    stop_server(server)
