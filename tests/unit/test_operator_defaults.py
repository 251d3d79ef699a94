"""What an operator sees: 0 turns a rate limit off (both of them), logs suit where they go, --help lists commands."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from backend.app import create_app
from backend.observability.logging import HumanFormatter, JsonFormatter, configure_logging, use_json
from backend.ratelimit import RateLimiter
from backend.settings import Settings
from tests.conftest import PASSWORD, TEST_SECRET, login
from tests.fakes import ScriptedProvider

REPO = Path(__file__).resolve().parents[2]


def test_zero_means_no_limit_for_requests_and_tokens() -> None:
    both_off = RateLimiter(rpm=0, tpm=0)
    for _ in range(500):
        both_off.record_tokens("u", 10_000)
        assert both_off.check("u", 10_000).headers() == {}  # no limit, so no x-ratelimit-* headers
    tokens_only = RateLimiter(rpm=0, tpm=100)
    tokens_only.check("u", 10)
    tokens_only.record_tokens("u", 100)
    with pytest.raises(Exception, match="tokens per minute"):
        tokens_only.check("u", 10)
    requests_only = RateLimiter(rpm=2, tpm=0)
    requests_only.check("u", 10**9)
    headers = requests_only.check("u", 10**9).headers()
    assert headers["x-ratelimit-remaining-requests"] == "0" and "x-ratelimit-limit-tokens" not in headers
    with pytest.raises(Exception, match="requests per minute"):
        requests_only.check("u")


@pytest.mark.parametrize(("rpm", "expect_429_after"), [(0, None), (3, 3)])
def test_rate_limit_rpm_setting_through_the_api(tmp_path: Path, rpm: int, expect_429_after: int | None) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path / "data", jwt_secret=TEST_SECRET, bcrypt_rounds=4, allowed_hosts=["testserver"],
                        serve_frontend=False, log_json=False, router_use_llm=False, rate_limit_rpm=rpm, rate_limit_tpm=0)
    app = create_app(settings, provider=ScriptedProvider())
    with TestClient(app, raise_server_exceptions=False) as client:
        app.state.services.users.create("bob", PASSWORD, "user")
        auth = {"Authorization": f"Bearer {login(client, 'bob')}"}
        body = {"model": "scripted-model:chat", "messages": [{"role": "user", "content": "hi"}]}
        statuses = [client.post("/v1/chat/completions", json=body, headers=auth).status_code for _ in range(6)]
    if expect_429_after is None:
        assert statuses == [200] * 6
    else:
        assert statuses == [200] * expect_429_after + [429] * (6 - expect_429_after)


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_logs_are_json_unless_a_person_is_watching(monkeypatch: pytest.MonkeyPatch) -> None:
    assert use_json(None, FakeTty()) is False
    assert use_json(None, io.StringIO()) is True  # a pipe, a file, a log collector
    assert use_json(True, FakeTty()) is True and use_json(False, io.StringIO()) is False  # LOG_JSON wins
    monkeypatch.setattr(sys, "stderr", FakeTty())
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    try:
        configure_logging("info", None)
        assert isinstance(root.handlers[0].formatter, HumanFormatter)
        configure_logging("info", True)
        assert isinstance(root.handlers[0].formatter, JsonFormatter)
        record = logging.LogRecord("backend.x", logging.INFO, __file__, 1, "hello %s", ("world",), None)
        assert json.loads(root.handlers[0].formatter.format(record))["msg"] == "hello world"
        assert HumanFormatter().format(record).endswith("INFO backend.x: hello world")
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
    monkeypatch.setenv("LOG_JSON", "false")
    assert Settings(_env_file=None).log_json is False
    monkeypatch.delenv("LOG_JSON")
    assert Settings(_env_file=None).log_json is None


def test_help_lists_every_command() -> None:
    out = subprocess.run([sys.executable, "run_backend.py", "--help"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    assert "create-user NAME" in out.stdout and "assemble-model" in out.stdout and "--port" in out.stdout
    sub = subprocess.run([sys.executable, "run_backend.py", "assemble-model", "--help"], cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert sub.returncode == 0 and sub.stdout.startswith("usage: run_backend.py assemble-model")


@contextlib.contextmanager
def _client(tmp_path: Path, provider: ScriptedProvider) -> Iterator[tuple[TestClient, dict[str, str]]]:
    settings = Settings(_env_file=None, data_dir=tmp_path / "data", jwt_secret=TEST_SECRET, bcrypt_rounds=4, allowed_hosts=["testserver"],
                        serve_frontend=False, log_json=False, router_use_llm=False)
    app = create_app(settings, provider=provider)
    with TestClient(app, raise_server_exceptions=False) as client:
        app.state.services.users.create("bob", PASSWORD, "user")
        yield client, {"Authorization": f"Bearer {login(client, 'bob')}"}


def test_unknown_fields_are_ignored_and_known_ones_validated(tmp_path: Path) -> None:
    """README: unknown top-level fields are accepted (other servers' clients send extras); OpenAI's own are checked."""
    with _client(tmp_path, ScriptedProvider()) as (client, auth):
        body = {"model": "scripted-model:chat", "messages": [{"role": "user", "content": "hi"}]}
        ok = client.post("/v1/chat/completions", json=body | {"repetition_penalty": 1.1, "options": {"num_ctx": 4}},
                         headers=auth)
        assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"]
        bad = client.post("/v1/chat/completions", json=body | {"temperature": "hot"}, headers=auth)
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "temperature"


def test_idempotency_key_replays_only_within_a_conversation(tmp_path: Path) -> None:
    """README: the key dedupes a retry into a stored conversation; without one, each request runs."""
    provider = ScriptedProvider()
    with _client(tmp_path, provider) as (client, auth):
        body = {"model": "scripted-model:chat", "messages": [{"role": "user", "content": "hi"}]}
        keyed = auth | {"Idempotency-Key": "retry-1"}
        for _ in range(2):
            assert client.post("/v1/chat/completions", json=body, headers=keyed).status_code == 200
        assert len(provider.calls) == 2  # no conversation: nothing stored to replay
        conv = client.post("/v1/chat/completions", json=body | {"conversation_id": "new"}, headers=auth).json()
        with_conv = body | {"conversation_id": conv["conversation_id"]}
        first = client.post("/v1/chat/completions", json=with_conv, headers=auth | {"Idempotency-Key": "retry-2"})
        again = client.post("/v1/chat/completions", json=with_conv, headers=auth | {"Idempotency-Key": "retry-2"})
        assert first.status_code == again.status_code == 200
        assert len(provider.calls) == 4  # the retry was answered from the stored result
        assert again.json()["choices"][0]["message"]["content"] == first.json()["choices"][0]["message"]["content"]
        stored = client.get(f"/api/conversations/{conv['conversation_id']}", headers=auth).json()
        assert sum(m["role"] == "user" for m in stored["messages"]) == 2
