"""Model-backend faults over real HTTP: the real server (subprocess) in front of a faulty upstream.

Two upstreams: the fake OpenAI-compatible server (``LLM_PROVIDER=openai``: every fault) and the
Ollama fixture server (``LLM_PROVIDER=ollama``) run *without* loading a model, for the faults it
answers before generating (500, 503, garbage) and a closed port.
Faults: closed port, slow first byte, stall mid-stream, garbage, truncated/dropped stream, 500, 429.
After a broken stream the partial answer is discarded: the conversation holds nothing from it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer, free_port, start_server, stop_server
from tests.fixtures.fake_openai_server import FIXED_TEXT, FakeOpenAIServer
from tests.reliability.conftest import assert_openai_error, sse_data

OLLAMA_MODEL = "smollm2:135m"
TIMEOUTS = {"FIRST_BYTE_TIMEOUT_S": "1", "STREAM_IDLE_TIMEOUT_S": "1", "ROUTER_USE_LLM": "false"}


@dataclass
class FaultyStack:
    provider: str
    upstream: Any  # FakeOpenAIServer | OllamaFixtureServer: both have .fault and .delay_s
    server: LiveServer
    model: str

    def fault(self, mode: str, delay_s: float = 4.0) -> None:
        self.upstream.fault = mode
        self.upstream.delay_s = delay_s

    def chat(self, stream: bool = False, conversation_id: str | None = None, **kw: Any) -> httpx.Response:
        body: dict[str, Any] = {"model": self.model, "stream": stream, "max_tokens": 24,
                                "messages": [{"role": "user", "content": "Say hello in five words."}]}
        if conversation_id:
            body["conversation_id"] = conversation_id
        return httpx.post(self.server.v1 + "/chat/completions", json=body, headers=self.headers(), timeout=30, **kw)

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.server.tokens['bob']}"}

    def new_conversation(self) -> str:
        r = httpx.post(self.server.base_url + "/api/conversations", json={}, headers=self.headers())
        return r.json()["id"]

    def messages(self, conv_id: str) -> list[dict[str, Any]]:
        r = httpx.get(self.server.base_url + f"/api/conversations/{conv_id}", headers=self.headers())
        return r.json()["messages"]


@contextlib.contextmanager
def _ollama_without_model() -> Iterator[Any]:
    """The Ollama fixture's HTTP side only (no GGUF loaded): its fault modes that answer before generating."""
    from tests.fixtures.ollama_server import OllamaFixtureServer

    srv = OllamaFixtureServer(Path(__file__), model_name=OLLAMA_MODEL)
    srv._thread.start()
    try:
        yield srv
    finally:
        srv._thread.stop()


def _upstream(provider: str) -> Any:
    if provider == "openai":
        return FakeOpenAIServer(model="fake-model")
    return _ollama_without_model()


def _needs_generation(stack: FaultyStack) -> None:
    if stack.provider == "ollama":
        pytest.skip("needs the upstream to generate: covered on the OpenAI-compatible upstream")


def _env(provider: str, upstream: Any) -> dict[str, str]:
    if provider == "openai":
        return {"LLM_PROVIDER": "openai", "OPENAI_BASE_URL": upstream.base_url, "OPENAI_MODEL": "fake-model", **TIMEOUTS}
    return {"LLM_PROVIDER": "ollama", "OLLAMA_HOST": upstream.host, "OLLAMA_MODEL": OLLAMA_MODEL,
            "OLLAMA_NUM_CTX": "2048", **TIMEOUTS}


@pytest.fixture(scope="module", params=["openai", "ollama"])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultyStack]:
    provider = request.param
    with _upstream(provider) as upstream:
        # readiness = /health: the Ollama fixture's /api/show may not describe the small model fully
        server = start_server(tmp_path_factory.mktemp(f"faults-{provider}") / "data", wait_model=False,
                              **_env(provider, upstream))
        model = "fake-model:chat" if provider == "openai" else f"{OLLAMA_MODEL}:chat"
        try:
            yield FaultyStack(provider, upstream, server, model)
        finally:
            stop_server(server)


@pytest.fixture(autouse=True)
def _reset_fault(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "stack" in request.fixturenames:
        request.getfixturevalue("stack").fault("none")


def _error_frames(events: list[Any]) -> list[dict[str, Any]]:
    return [e["error"] for e in events if isinstance(e, dict) and "error" in e]


# ---------------------------------------------------------------------------------- down
@pytest.mark.parametrize("provider", ["openai", "ollama"])
def test_backend_down_is_a_fast_503(provider: str, tmp_path: Path):
    port = free_port()  # nothing listens there
    env = {"LLM_PROVIDER": provider, "OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1", "OPENAI_MODEL": "fake-model",
           "OLLAMA_HOST": f"http://127.0.0.1:{port}", "OLLAMA_MODEL": OLLAMA_MODEL, **TIMEOUTS}
    server = start_server(tmp_path / "data", wait_model=False, **env)
    try:
        model = "fake-model:chat" if provider == "openai" else f"{OLLAMA_MODEL}:chat"
        headers = {"Authorization": f"Bearer {server.tokens['bob']}"}
        detailed = httpx.get(server.base_url + "/health/detailed", timeout=30)
        assert detailed.status_code == 503 and detailed.json()["model"]["ok"] is False
        for stream in (False, True):
            started = time.monotonic()
            r = httpx.post(server.v1 + "/chat/completions", headers=headers, timeout=30,
                           json={"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
            assert time.monotonic() - started < 5.0
            assert_openai_error(r, 503)
            assert int(r.headers["retry-after"]) >= 1
    finally:
        stop_server(server)


# ---------------------------------------------------------------------------------- faults
@pytest.mark.parametrize("stream", [False, True])
def test_slow_first_byte_past_the_limit_is_504(stack: FaultyStack, stream: bool):
    _needs_generation(stack)
    stack.fault("slow_first_byte", 4.0)
    started = time.monotonic()
    r = stack.chat(stream=stream)
    elapsed = time.monotonic() - started
    assert_openai_error(r, 504, "timeout")
    assert elapsed < 3.5  # FIRST_BYTE_TIMEOUT_S=1, not the upstream's 4 s


@pytest.mark.parametrize("mode", ["500", "garbage"])
@pytest.mark.parametrize("stream", [False, True])
def test_upstream_errors_and_garbage_are_502(stack: FaultyStack, mode: str, stream: bool):
    stack.fault(mode)
    conv = stack.new_conversation()
    r = stack.chat(stream=stream, conversation_id=conv)
    err = assert_openai_error(r, 502, "bad_gateway")
    assert "Traceback" not in err["message"]
    assert stack.messages(conv) == []


def test_upstream_busy_is_503_with_retry_after(stack: FaultyStack):
    stack.fault("429" if stack.provider == "openai" else "503")
    r = stack.chat()
    assert_openai_error(r, 503)
    assert int(r.headers["retry-after"]) >= 1


@pytest.mark.parametrize("mode,code", [("stall", "timeout"), ("truncate", "bad_gateway"), ("drop", "bad_gateway")])
def test_broken_stream_ends_with_error_frame_and_done_and_appends_nothing(stack: FaultyStack, mode: str, code: str):
    _needs_generation(stack)
    conv = stack.new_conversation()
    stack.fault(mode, 4.0)
    started = time.monotonic()
    r = stack.chat(stream=True, conversation_id=conv)
    elapsed = time.monotonic() - started
    assert r.status_code == 200, r.text[:400]  # the stream had started: the error comes in-band
    events = sse_data(r.text)
    assert events[-1] == "[DONE]"
    errors = _error_frames(events)
    assert len(errors) == 1 and errors[0]["code"] == code and errors[0]["message"]
    assert isinstance(events[-2], dict) and "error" in events[-2]  # the error is the last frame before [DONE]
    partial = "".join(c["choices"][0]["delta"].get("content") or "" for c in events[:-2] if c.get("choices"))
    assert partial  # some text had been streamed before the fault ...
    assert not any(c["choices"][0].get("finish_reason") for c in events[:-2] if c.get("choices"))  # ... but no finish
    if mode == "stall":
        assert elapsed < 3.5  # STREAM_IDLE_TIMEOUT_S=1, not the upstream's 4 s
    # the partial answer is discarded: the conversation holds nothing from the broken request
    assert stack.messages(conv) == []
    stack.fault("none")
    ok = stack.chat(stream=True, conversation_id=conv)
    assert ok.status_code == 200 and not _error_frames(sse_data(ok.text)), ok.text[:400]
    stored = stack.messages(conv)
    assert [m["role"] for m in stored] == ["user", "assistant"]
    if stack.provider == "openai":
        assert stored[1]["content"] == FIXED_TEXT


def test_broken_non_stream_request_appends_nothing(stack: FaultyStack):
    _needs_generation(stack)
    conv = stack.new_conversation()
    for mode, status in (("stall", 504), ("truncate", 502), ("drop", 502)):
        stack.fault(mode, 4.0)
        assert_openai_error(stack.chat(conversation_id=conv), status)
    assert stack.messages(conv) == []
    stack.fault("none")
    assert stack.chat(conversation_id=conv).status_code == 200
    assert len(stack.messages(conv)) == 2


def test_server_stays_healthy_after_faults(stack: FaultyStack):
    stack.fault("none")
    assert httpx.get(stack.server.base_url + "/health").status_code == 200
    _needs_generation(stack)
    assert httpx.get(stack.server.base_url + "/health/detailed").status_code == 200
    assert stack.chat().status_code == 200
