"""The code agent on the real embedded model (``-m model``): what the design guarantees, whatever
the 0.5B model writes. A word problem with number words, and a database question answered by a
program that calls ``sql()`` through the tool channel: when the agent answers, the program ran in
the sandbox, and the answer (streamed and final) is exactly what it printed; otherwise the answer
says the program failed. Whether the number is *right* is a rate: ``bench/gsm8k.py``, ``bench/agent_tasks.py``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from backend.agents.code import format_answer, program_stdout
from backend.agents.runner import run_agent
from backend.llm.types import GenerationParams
from backend.tools.base import ToolContext
from backend.tools.python_code import run_python
from backend.tools.registry import available_tools
from backend.tools.sandbox import sandbox_available
from tests.agents.conftest import collect

pytestmark = [pytest.mark.model, pytest.mark.timeout(1800)]
SANDBOX, WHY = sandbox_available()
SHOP_DB = Path(__file__).resolve().parents[2] / "bench" / "data" / "shop.sqlite"
PARAMS = GenerationParams(temperature=0.0, seed=7)


def _check_guarantee(steps, text, done, ctx, channel_tools=None):
    assert done.mode == "code" and text == done.content, "the stream is the answer"
    runs = [s for s in steps if s.tool == "python_code"]
    assert done.llm_calls <= 3, "one model call per attempt, at most two repairs"
    if done.reason != "answered":
        assert done.content.startswith("I could not compute the answer") or not any(c.isdigit() for c in done.content)
        return None
    last = runs[-1]
    assert last.ok and isinstance(last.input, str)
    assert "sandboxed" in asyncio.run(run_python(ctx, "print(1)")).data  # the tool is the sandboxed one
    again = asyncio.run(run_python(ctx, last.input, channel_tools))
    assert again.ok and again.data["sandboxed"] is True
    assert done.content == format_answer(program_stdout(again)), "the answer is exactly what the program printed"
    return last


@pytest.mark.skipif(not SANDBOX, reason=f"bubblewrap sandbox unavailable: {WHY}")
def test_word_problem_answer_is_the_programs_exact_output(embedded_provider, tmp_path):
    settings = embedded_provider.settings.model_copy(update={"data_dir": tmp_path / "data"})
    ctx = ToolContext(user_id="u_model", settings=settings)
    question = "A farmer has twelve thousand three hundred and five apples and sells a dozen boxes of forty apples. How many apples are left?"
    messages = [{"role": "user", "content": question}]
    steps, text, done, _ = asyncio.run(collect(run_agent("code", messages, ctx, embedded_provider, PARAMS, settings)))
    last = _check_guarantee(steps, text, done, ctx)
    if last is not None:
        assert "twelve" not in last.input.lower(), "the model saw numerals"


@pytest.mark.skipif(not SANDBOX or not SHOP_DB.is_file(), reason="sandbox or sample database unavailable")
def test_database_question_through_sql_from_the_program(embedded_provider, tmp_path):
    settings = embedded_provider.settings.model_copy(update={"data_dir": tmp_path / "data", "sql_database_path": SHOP_DB})
    ctx = ToolContext(user_id="u_model", settings=settings)
    tools = available_tools(settings)
    messages = [{"role": "user", "content": "How many customers are in the database?"}]
    steps, text, done, _ = asyncio.run(collect(run_agent("code", messages, ctx, embedded_provider, PARAMS, settings, tools=tools)))
    channel = {k: v for k, v in tools.items() if k == "sql_query"}
    last = _check_guarantee(steps, text, done, ctx, channel)
    if last is not None and "sql(" in last.input:
        called = [s for s in steps if s.tool == "sql_query"]
        assert called and all(s.kind == "tool" for s in called), "each server call is a step of its own"
