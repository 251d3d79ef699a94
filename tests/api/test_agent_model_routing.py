"""Agent steps run on the agent model, chat and routing on the chat model, one scheduler slot for both."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.conftest import PASSWORD, ApiHarness, login
from tests.fakes import ScriptedProvider


class AgentScripted(ScriptedProvider):
    @property
    def model_id(self) -> str:
        return "scripted-agent-model"


@pytest.fixture
def split(make_settings: Any) -> Iterator[tuple[ApiHarness, AgentScripted]]:
    from fastapi.testclient import TestClient

    from backend.app import create_app

    chat, agent = ScriptedProvider(), AgentScripted()
    app = create_app(make_settings(), provider=chat, agent_provider=agent)
    with TestClient(app, raise_server_exceptions=False) as client:
        services = app.state.services
        harness = ApiHarness(client, chat)
        harness.users["bob"] = services.users.create("bob", PASSWORD, "user")
        harness.tokens = {"bob": login(client, "bob")}
        yield harness, agent


def chat(api: ApiHarness, model: str, text: str, **extra: Any) -> Any:
    r = api.client.post("/v1/chat/completions", headers=api.auth("bob"),
                        json={"model": model, "messages": [{"role": "user", "content": text}], **extra})
    assert r.status_code == 200, r.text
    return r


def test_agent_steps_run_on_the_agent_model_and_chat_on_the_chat_model(split: tuple[ApiHarness, AgentScripted]) -> None:
    api, agent = split
    agent.outputs = [json.dumps({"name": "math_calc", "arguments": {"expression": "6*7"}})]
    body = chat(api, "scripted-model:react", "what is 6*7?").json()
    assert len(agent.calls) == 1 and api.provider.calls == []  # the agent's step went to the agent model only
    assert body["agent"]["mode"] == "react" and body["agent"]["model"] == "scripted-agent-model"
    assert "42" in body["choices"][0]["message"]["content"]
    assert body["model"] == "scripted-model:react"  # the id the client asked for

    api.provider.outputs = ["Hello Bob."]
    body = chat(api, "scripted-model:chat", "hello").json()
    assert body["choices"][0]["message"]["content"] == "Hello Bob."
    assert len(agent.calls) == 1 and len(api.provider.calls) == 1
    assert "agent" not in body or body["agent"] is None or "model" not in body["agent"]


def test_streamed_agent_turn_names_the_agent_model(split: tuple[ApiHarness, AgentScripted]) -> None:
    api, agent = split
    agent.outputs = [json.dumps({"name": "math_calc", "arguments": {"expression": "2**10"}})]
    r = chat(api, "scripted-model:react", "compute 2**10", stream=True)
    frames = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
    agents = [f["agent"] for f in frames if f.get("agent")]
    assert agents and agents[0]["model"] == "scripted-agent-model"
    assert "1024" in "".join(c["delta"].get("content") or "" for f in frames for c in f.get("choices", []))
    assert api.provider.calls == []


class Timed(ScriptedProvider):
    """Records when each generation ran (start, end)."""

    def __init__(self, model: str, **kw: Any) -> None:
        super().__init__(**kw)
        self._model = model
        self.spans: list[tuple[float, float]] = []

    @property
    def model_id(self) -> str:
        return self._model

    async def _stream_raw(self, messages: Any, params: Any, constraint: Any) -> Any:
        start = time.monotonic()
        async for ev in super()._stream_raw(messages, params, constraint):
            yield ev
        self.spans.append((start, time.monotonic()))


def test_both_models_share_one_generation_slot(make_settings: Any) -> None:
    """Two models on two cores never generate at once: the agent's step waits for the chat's reply."""
    from fastapi.testclient import TestClient

    from backend.app import create_app

    chat_model = Timed("scripted-model", delay_s=0.02)
    chat_model.default = " ".join(["word"] * 30)  # ~0.6 s of generation
    agent = Timed("scripted-agent-model", delay_s=0.02)
    agent.outputs = [json.dumps({"name": "math_calc", "arguments": {"expression": "6*7"}})]
    app = create_app(make_settings(), provider=chat_model, agent_provider=agent)
    with TestClient(app, raise_server_exceptions=False) as client:
        app.state.services.users.create("bob", PASSWORD, "user")
        api = ApiHarness(client, chat_model, tokens={"bob": login(client, "bob")})
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(chat, api, "scripted-model:chat", "tell me something")
            time.sleep(0.1)
            second = pool.submit(chat, api, "scripted-model:react", "what is 6*7?")
            first.result(timeout=60), second.result(timeout=60)
    (c0, c1), (a0, a1) = chat_model.spans[0], agent.spans[0]
    assert c1 <= a0 or a1 <= c0, "the two models generated at the same time"


def test_health_reports_the_agent_model(split: tuple[ApiHarness, AgentScripted]) -> None:
    body = split[0].client.get("/health/detailed").json()
    assert body["agent_model"]["same_as_chat"] is False and body["agent_model"]["model"] == "scripted-agent-model"
    assert body["model"]["model"] == "scripted-model"


def test_one_model_health_says_agents_share_it(api: ApiHarness) -> None:
    body = api.client.get("/health/detailed").json()
    assert body["agent_model"] == {"same_as_chat": True, "model": "scripted-model"}
