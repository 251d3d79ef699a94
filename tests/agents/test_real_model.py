"""The agents on the real embedded model (Qwen2.5-Coder-0.5B GGUF, llama.cpp). Slow: ``-m model``.

These assert what the design guarantees, whatever the 0.5B model writes: the forced tool runs, a
step's observation is the tool's exact output, a computed result is stated exactly in the answer,
the code agent's answer is its program's printed output, a chat reply never shows an unexecuted
claimed output. Whether the model phrases the right answer is a rate: see ``bench/``.
"""

from __future__ import annotations

import asyncio

import pytest

from backend.agents.code import format_answer, program_stdout
from backend.agents.grounding import DETERMINISTIC_TOOLS, grounded, is_stated, numbers
from backend.agents.router import route
from backend.agents.runner import run_agent
from backend.chat.fabricated_output import EXECUTED_NOTE, find_claims, settle_claims
from backend.llm.types import GenerationParams
from backend.tools.base import ToolContext
from backend.tools.registry import all_tools
from backend.tools.sandbox import sandbox_available
from tests.agents.conftest import collect
from tests.fixtures.replay_server import ReplayServer

pytestmark = [pytest.mark.model, pytest.mark.timeout(1800)]

PARAMS = GenerationParams(temperature=0.0, seed=7)
SANDBOX, WHY = sandbox_available()
needs_sandbox = pytest.mark.skipif(not SANDBOX, reason=f"bubblewrap sandbox unavailable: {WHY}")


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


def _rerun_result(step, ctx):
    """The tool's result for the step's input, computed again outside the agent."""
    arguments = {"code": step.input} if step.tool == "python_code" and isinstance(step.input, str) else step.input
    return asyncio.run(all_tools()[step.tool].run(ctx, arguments))


def _rerun(step, ctx) -> str:
    return _rerun_result(step, ctx).output


def _assert_exact_results_in_answer(steps, answer: str, question: str) -> None:
    """The grounding guarantee: computed results stated exactly; no number from nowhere."""
    computed = [s for s in steps if s.kind == "tool" and s.ok and s.tool in DETERMINISTIC_TOOLS]
    for s in computed:
        assert is_stated(s.observation, answer), (s.observation, answer)
    if computed:
        # a number may come from the question, a tool's output, or the computation the server names
        # when it states a result ("2**10 / 3 = 1024/3"): the tool's own input
        tool_steps = [s for s in steps if s.kind == "tool" and s.ok]
        pool = numbers(question) + [n for s in tool_steps for n in numbers(s.observation) + numbers(str(s.input))]
        assert all(grounded(n, pool) for n in numbers(answer)), answer


@needs_sandbox
def test_code_mode_answer_is_the_sandboxed_programs_exact_output(embedded_provider, real_ctx):
    query = "What is the sum of all prime numbers below 100?"
    steps, text, done, _ = _run("code", query, real_ctx, embedded_provider)
    assert done.mode == "code" and text == done.content
    runs = [s for s in steps if s.tool == "python_code"]
    asks = [s for s in steps if s.kind == "format"]
    assert done.llm_calls == len(runs) + len(asks) <= 3, "one model call per attempt, at most 2 repairs"
    for s in runs:
        assert isinstance(s.input, str) and s.input.strip(), "the step carries the program"
    if done.reason == "answered":
        last = runs[-1]
        assert last.ok
        again = _rerun_result(last, real_ctx)
        assert again.output.strip() == last.observation.strip(), "the observation is the program's output"
        assert done.content == format_answer(program_stdout(again)), "the answer is exactly what the program printed"
    elif done.reason == "no_program":  # prose is accepted only when it claims no number
        assert not runs and not any(c.isdigit() for c in done.content)
    else:
        assert done.reason == "program_failed" and not any(s.ok for s in runs)
        assert done.content.startswith("I could not compute the answer")


def test_react_forced_math_tool_result_is_stated_exactly(embedded_provider, real_ctx):
    query = "What is the derivative of x**3 * sin(x)?"
    assert asyncio.run(route(query, embedded_provider)).mode in ("react", "code")
    steps, text, done, _ = _run("react", query, real_ctx, embedded_provider)
    tool_steps = [s for s in steps if s.kind == "tool"]
    assert tool_steps, [s.to_dict() for s in steps]
    first = tool_steps[0]
    assert first.tool in ("math_calc", "python_code"), "the call was forced to the maths tools"
    if first.ok:
        assert first.observation.strip() == _rerun(first, real_ctx).strip()
    assert text == done.content
    _assert_exact_results_in_answer(steps, done.content, query)


def test_react_weather_runs_the_weather_tool_and_keeps_its_output(embedded_provider, real_ctx):
    steps, _, done, _ = _run("react", "What's the weather in Paris right now?", real_ctx, embedded_provider)
    calls = [s for s in steps if s.tool == "weather"]
    assert calls and calls[0].ok, [s.to_dict() for s in steps]
    assert calls[0].observation == _rerun(calls[0], real_ctx), "the step holds the tool's exact output"
    assert done.content.strip()


def test_plan_execute_tools_ran_and_computed_results_are_exact(embedded_provider, real_ctx):
    query = "Get the weather in Paris and also calculate 1234 * 5678."
    steps, _, done, _ = _run("plan_execute", query, real_ctx, embedded_provider)
    ran = [s for s in steps if s.kind == "tool"]
    assert ran, [s.to_dict() for s in steps]
    for s in ran:
        if s.ok:
            assert s.observation.strip() == _rerun(s, real_ctx).strip(), s.to_dict()
    answer = done.content.replace("(Note: this answer could not be verified against the tool results.)", "")
    _assert_exact_results_in_answer(steps, answer, query)
    if any(s.ok and s.tool == "math_calc" and s.observation.strip() == "7006652" for s in ran):
        assert "7006652" in answer.replace(",", "")


def test_plan_execute_each_part_runs_its_tool_and_computed_parts_are_stated_exactly(embedded_provider, real_ctx):
    query = "What's the weather in Paris, and what is the greatest common divisor of 84 and 126?"
    assert asyncio.run(route(query, embedded_provider)).mode == "plan_execute"
    steps, _, done, _ = _run("plan_execute", query, real_ctx, embedded_provider)
    plans = [s for s in steps if s.kind == "plan"]
    assert plans and "one step per part" in plans[0].thought, "no planning call: one step per part"
    ran = [s for s in steps if s.kind == "tool"]
    assert any(s.tool == "weather" for s in ran), [s.to_dict() for s in steps]
    computed = [s for s in ran if s.tool in ("python_code", "math_calc")]
    assert computed, "the computation part ran through the computing path"
    for s in computed:
        if s.ok:
            assert s.observation.strip() == _rerun(s, real_ctx).strip(), s.to_dict()
    answer = done.content.replace("(Note: this answer could not be verified against the tool results.)", "")
    final_runs = [s for s in computed if s.ok][-1:]  # the program's last (successful) run is the part's result
    for s in final_runs:
        assert is_stated(s.observation, answer), (s.observation, answer)


def test_react_one_step_computation_is_one_call_with_its_exact_result(embedded_provider, real_ctx):
    query = "What is 15% of 820?"
    steps, text, done, _ = _run("react", query, real_ctx, embedded_provider)
    ran = [s for s in steps if s.kind == "tool"]
    assert ran and ran[0].tool in ("math_calc", "python_code"), [s.to_dict() for s in steps]
    if ran[0].ok:
        assert len(ran) == 1 and done.llm_calls == 1, "one call for a one-step computation"
        assert is_stated(ran[0].observation, done.content), (ran[0].observation, done.content)
    assert text == done.content


@needs_sandbox
def test_chat_reply_never_shows_an_unexecuted_claimed_output(embedded_provider, real_ctx):
    from backend.tools.python_code import python_code

    question = "Write a Python program that prints the sum of the squares of 1 to 20, and show its output."
    reply = asyncio.run(embedded_provider.complete([{"role": "user", "content": question}], PARAMS)).content or ""

    async def run(program: str):
        return await python_code.run(real_ctx, {"code": program})

    settled = asyncio.run(settle_claims(reply, question, run))
    for claim in find_claims(settled.text):  # every output block left is a real, marked run
        after = settled.text[claim.output.end : claim.output.end + len(EXECUTED_NOTE) + 2]
        assert EXECUTED_NOTE in after, settled.text
        assert any(claim.output.body.strip() == (r.data or {}).get("stdout", "").strip() for _, r in settled.runs)


def test_router_llm_fallback_gives_a_valid_mode(embedded_provider):
    decision = asyncio.run(route("Who won the most recent Tour de France?", embedded_provider))
    assert decision.mode in ("chat", "code", "react", "plan_execute")


def test_registry_tools_are_the_agents_tools():
    assert {"math_calc", "weather", "wikipedia", "web_search", "rag_retrieval", "python_code"} <= set(all_tools())
