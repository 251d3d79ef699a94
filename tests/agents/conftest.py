"""Fixtures of the agent tests: a scripted provider, small real tools, settings, and the real model."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from backend.agents.events import AgentDone, AgentStep, AnswerDelta
from backend.llm.base import JsonConstraint, LLMProvider
from backend.llm.types import GenerationParams, Message, StreamEvent, Usage
from backend.settings import Settings
from backend.tools.base import Tool, ToolContext, ToolError, ToolResult, tool

REPO = Path(__file__).resolve().parents[2]
GGUF = Path(os.environ.get("TEST_MODELS_DIR", REPO / "data" / "models")) / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"

Script = str | Callable[[list[Message], GenerationParams, JsonConstraint | None], str]


class ScriptedLLM(LLMProvider):
    """Replays scripted outputs through ``_stream_raw``, so the base class's real tool-choice
    enforcement and text tool-call recovery run on them. An output may be a callable of
    (messages, params, constraint) for answers that depend on the prompt."""

    name = "scripted-agent"

    def __init__(self, outputs: list[Script], *, chunk: int = 5, delay_s: float = 0.0) -> None:
        self.outputs = list(outputs)
        self.chunk = chunk
        self.delay_s = delay_s
        self.calls: list[dict[str, Any]] = []
        self.cancelled = 0

    @property
    def model_id(self) -> str:
        return "scripted"

    async def health(self) -> dict[str, Any]:
        return {"ok": True, "model": "scripted"}

    async def _stream_raw(
        self, messages: list[Message], params: GenerationParams, constraint: JsonConstraint | None
    ) -> AsyncIterator[StreamEvent]:
        self.calls.append({"messages": [dict(m) for m in messages], "params": params, "constraint": constraint})
        if not self.outputs:
            raise AssertionError(f"unexpected LLM call #{len(self.calls)}: {messages[-1]}")
        out = self.outputs.pop(0)
        text = out(messages, params, constraint) if callable(out) else out
        try:
            for i in range(0, len(text), self.chunk):
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                yield StreamEvent(content=text[i : i + self.chunk])
        except (asyncio.CancelledError, GeneratorExit):  # cancelled, or the consumer closed the stream
            self.cancelled += 1
            raise
        yield StreamEvent(finish_reason="stop", usage=Usage(prompt_tokens=10, completion_tokens=len(text) // 4 + 1))


# --------------------------------------------------------------------------- fake tools (real @tool)
@tool
async def calc(ctx: ToolContext, expression: str) -> str:
    """Evaluate an arithmetic expression.

    Args:
        expression: digits and + - * / ( ), e.g. "2*(3+4)".
    """
    if not expression or any(c not in "0123456789+-*/(). " for c in expression):
        raise ToolError(f"cannot evaluate {expression!r}")
    return str(eval(expression, {"__builtins__": {}}, {}))


@tool
async def lookup(ctx: ToolContext, topic: str) -> ToolResult:
    """Look a topic up in a tiny encyclopedia.

    Args:
        topic: the topic.
    """
    facts = {"paris": "Paris is the capital of France; population 2.1 million.", "rome": "Rome has 2.8 million people."}
    text = facts.get(topic.lower())
    if text is None:
        raise ToolError(f"no entry for {topic!r}")
    return ToolResult(True, text, {"sources": [{"title": topic.title(), "url": f"https://example.org/{topic.lower()}"}]})


@tool
async def flaky(ctx: ToolContext, query: str) -> str:
    """A service that is down.

    Args:
        query: anything.
    """
    raise RuntimeError("service unavailable (HTTP 503)")


@tool
async def slow_a(ctx: ToolContext, city: str) -> str:
    """Weather station A (slow).

    Args:
        city: a city.
    """
    await asyncio.sleep(0.3)
    return f"A: {city} 21C, started {time.perf_counter():.3f}"


@tool
async def slow_b(ctx: ToolContext, city: str) -> str:
    """Weather station B (slow).

    Args:
        city: a city.
    """
    await asyncio.sleep(0.3)
    return f"B: {city} 19C, started {time.perf_counter():.3f}"


FAKE_TOOLS: dict[str, Tool] = {t.name: t for t in (calc, lookup, flaky, slow_a, slow_b)}


@pytest.fixture
def fake_tools() -> dict[str, Tool]:
    return dict(FAKE_TOOLS)


@pytest.fixture
def agent_settings(tmp_path: Path) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path / "data", router_use_llm=False)


@pytest.fixture
def tool_ctx(agent_settings: Settings) -> ToolContext:
    return ToolContext(user_id="u_test", settings=agent_settings)


def call(name: str, **arguments: Any) -> str:
    """A tool call as Qwen writes it."""
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}) + "\n</tool_call>"


async def collect(gen: AsyncIterator[Any]) -> tuple[list[AgentStep], str, AgentDone, list[Any]]:
    """(steps, streamed answer text, the AgentDone, every event in order)."""
    events = [ev async for ev in gen]
    steps = [e for e in events if isinstance(e, AgentStep)]
    text = "".join(e.text for e in events if isinstance(e, AnswerDelta))
    done = [e for e in events if isinstance(e, AgentDone)]
    assert len(done) == 1 and events[-1] is done[0], "exactly one AgentDone, last"
    return steps, text, done[0], events


# --------------------------------------------------------------------------- the real model
@pytest.fixture(scope="session")
def embedded_provider(tmp_path_factory: pytest.TempPathFactory) -> Any:
    pytest.importorskip("llama_cpp")
    if not GGUF.is_file():
        pytest.skip(f"model file missing: {GGUF}")
    from backend.llm.embedded import EmbeddedProvider

    settings = Settings(
        _env_file=None,
        data_dir=tmp_path_factory.mktemp("agentdata"),
        embedded_model_path=GGUF,
        router_use_llm=True,
    )
    provider = EmbeddedProvider(settings)
    yield provider
    asyncio.run(provider.aclose())


@pytest.fixture(scope="session", autouse=True)
def _router_ready() -> None:
    """The router's lookup patterns live on the registry's tools: load them once, as the app does at
    start-up, so timed assertions measure the agents, not the first import of the tool modules."""
    from backend.agents.router import lookup_patterns

    lookup_patterns()
