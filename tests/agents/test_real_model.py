"""The agents on the real embedded model (Qwen2.5-Coder-0.5B GGUF, llama.cpp). Slow: ``-m model``."""

from __future__ import annotations

import asyncio
import re

import pytest

from backend.agents.router import route
from backend.agents.runner import run_agent
from backend.llm.types import GenerationParams
from backend.tools.base import ToolContext
from backend.tools.registry import all_tools
from tests.agents.conftest import collect
from tests.fixtures.replay_server import ReplayServer

pytestmark = [pytest.mark.model, pytest.mark.timeout(600)]

PARAMS = GenerationParams(temperature=0.0, seed=7)


@pytest.fixture(scope="module")
def replay():
    with ReplayServer() as server:
        yield server


@pytest.fixture
def real_ctx(embedded_provider, replay, tmp_path):
    settings = embedded_provider.settings.model_copy(
        update={
            "data_dir": tmp_path / "data",
            "ssrf_allow_hosts": ["127.0.0.1"],
            "tavily_base_url": replay.url("/tavily"),
            "wikipedia_api_url": replay.url("/wikipedia/w/api.php"),
            "weather_geocoding_url": replay.url("/geocoding/v1/search"),
            "weather_forecast_url": replay.url("/forecast/v1/forecast"),
        }
    )
    return ToolContext(user_id="u_model", settings=settings)


def _run(mode, query, ctx, provider):
    messages = [{"role": "user", "content": query}]
    return asyncio.run(collect(run_agent(mode, messages, ctx, provider, PARAMS, ctx.settings)))


def test_react_derivative_calls_math_calc_and_answers_with_the_result(embedded_provider, real_ctx):
    query = "What is the derivative of x**3 * sin(x)?"
    decision = asyncio.run(route(query, embedded_provider))
    assert decision.mode == "react"
    steps, text, done, _ = _run("react", query, real_ctx, embedded_provider)
    calls = [s for s in steps if s.tool == "math_calc" and s.ok]
    assert calls, [s.to_dict() for s in steps]
    assert re.search(r"cos", calls[0].observation) and re.search(r"sin", calls[0].observation)
    answer = done.content.replace(" ", "").replace("\\", "")
    assert "cos(x)" in answer and "sin(x)" in answer, done.content
    assert text == done.content and done.llm_calls >= 2


def test_react_weather_uses_the_weather_tool(embedded_provider, real_ctx):
    steps, _, done, _ = _run("react", "What's the weather in Paris right now?", real_ctx, embedded_provider)
    assert any(s.tool == "weather" and s.ok for s in steps), [s.to_dict() for s in steps]
    assert "paris" in done.content.lower() or "°" in done.content or "c" in done.content.lower()


def test_plan_execute_runs_independent_tools_and_verifies(embedded_provider, real_ctx):
    query = "Get the weather in Paris and also calculate 1234 * 5678."
    decision = asyncio.run(route(query, embedded_provider))
    assert decision.mode == "plan_execute"
    steps, _, done, _ = _run("plan_execute", query, real_ctx, embedded_provider)
    used = {s.tool for s in steps if s.kind == "tool" and s.ok}
    assert {"weather", "math_calc"} <= used, [s.to_dict() for s in steps]
    assert "7006652" in done.content.replace(",", "").replace(" ", ""), done.content


def test_router_llm_fallback_gives_a_valid_mode(embedded_provider):
    decision = asyncio.run(route("Who won the most recent Tour de France?", embedded_provider))
    assert decision.source == "llm" and decision.mode in ("chat", "react", "plan_execute")


def test_registry_tools_are_the_agents_tools():
    assert {"math_calc", "weather", "wikipedia", "web_search", "rag_retrieval"} <= set(all_tools())
