"""The real embedded model (Qwen2.5-Coder-0.5B) in a ReAct run whose only tool is an attached MCP
server's: the first turn must call a tool (the grammar guarantees a call that parses), the MCP server
runs it, and its exact result is the observation the model reads. Slow: ``-m model``."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from backend.agents.runner import run_agent
from backend.llm.types import GenerationParams
from backend.mcp.client import McpManager
from backend.tools.base import ToolContext
from tests.agents.conftest import collect
from tests.mcp.conftest import stdio_config

pytestmark = [pytest.mark.model, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
GGUF = Path(os.environ.get("TEST_MODELS_DIR", REPO / "data" / "models")) / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"


def test_the_real_model_calls_the_mcp_tool_and_reads_its_result(mcp_settings):
    pytest.importorskip("llama_cpp")
    if not GGUF.is_file():
        pytest.skip(f"model file missing: {GGUF}")
    from backend.llm.embedded import EmbeddedProvider

    settings = mcp_settings(stdio_config(tools=["add"]), embedded_model_path=GGUF)
    provider = EmbeddedProvider(settings)
    ctx = ToolContext(user_id="u_model", settings=settings)
    # "calculator" puts the question in the math category: the first turn is tool_choice="required"
    messages = [{"role": "user", "content": "Compute 19 + 23 with the calculator."}]

    async def main():
        manager = McpManager(settings)
        await manager.start()
        try:
            tools = manager.tools()
            assert list(tools) == ["mcp_fx_add"]
            return await collect(run_agent("react", messages, ctx, provider, GenerationParams(temperature=0.0, seed=7),
                                           settings, tools=tools))
        finally:
            await manager.aclose()
            await provider.aclose()

    steps, _, done, _ = asyncio.run(main())
    first = steps[0]
    assert first.tool == "mcp_fx_add" and first.ok, [s.to_dict() for s in steps]
    a, b = float(first.input["a"]), float(first.input["b"])
    total = a + b
    assert first.observation == str(int(total) if total == int(total) else total)  # the server's own answer
    assert done.llm_calls >= 2  # the model was asked again, with the observation
