"""Multi-part requests in plan-and-execute on a scripted model: one step per part, no planning call,
computations through the computing path, every computed result stated exactly by the server."""

from __future__ import annotations

import asyncio
import json

import pytest

from backend.agents.plan_execute.nodes import plan_from_parts
from backend.agents.router import split_parts
from backend.agents.runner import run_agent
from backend.llm.types import GenerationParams
from backend.tools.base import Tool, ToolContext, ToolError, tool
from backend.tools.math_calc import math_calc
from backend.tools.python_code import python_code
from backend.tools.sandbox import sandbox_available
from tests.agents.conftest import ScriptedLLM, collect

AVAILABLE, REASON = sandbox_available()
needs_sandbox = pytest.mark.skipif(not AVAILABLE, reason=f"bubblewrap sandbox unavailable: {REASON}")


@tool(categories=("weather",))
async def weather(ctx: ToolContext, location: str) -> str:
    """Current weather for a place.

    Args:
        location: a place name.
    """
    return f"{location}: 21.4 C, light rain"


def forced(name: str, **arguments: object) -> str:
    """What a text-only model writes under a grammar-forced call."""
    return json.dumps({"name": name, "arguments": arguments})


def run(llm, tools: dict[str, Tool], ctx, settings, question: str):
    messages = [{"role": "user", "content": question}]
    return asyncio.run(collect(run_agent("plan_execute", messages, ctx, llm, GenerationParams(), settings, tools=tools)))


def test_each_part_gets_its_tool_and_the_computed_part_is_stated_by_the_server(tool_ctx, agent_settings):
    tools = {"weather": weather, "math_calc": math_calc}
    llm = ScriptedLLM(
        [
            forced("weather", location="Berlin"),
            "In Berlin it is 21.4 C with light rain.",  # the model drafts only the lookup part
        ]
    )
    steps, text, done, _ = run(llm, tools, tool_ctx, agent_settings, "What is the weather in Berlin, and what is 17% of 2340?")
    ran = [s for s in steps if s.kind == "tool"]
    assert [(s.tool, s.ok) for s in ran] == [("weather", True), ("math_calc", True)]
    # no planning call: the first model call is already the forced weather call
    first = json.dumps(llm.calls[0]["constraint"].schema)
    assert '"weather"' in first and "math_calc" not in first and '"steps"' not in first
    # the expression was read from the question by rule: no model call wrote it
    assert ran[1].input == {"expression": "17/100*2340"}
    assert "397.8" in ran[1].observation
    assert "397.8" in done.content and "21.4" in done.content
    # the lookup draft saw only the lookup part and its result, not the computation
    draft_prompt = json.dumps(llm.calls[1]["messages"])
    assert "Berlin" in draft_prompt and "2340" not in draft_prompt
    # every part had its own tool and succeeded: no model verification either
    assert done.llm_calls == 2 and done.verified is True
    verify = [s for s in steps if s.kind == "verify"]
    assert verify and verify[0].observation.startswith("skipped")


@needs_sandbox
def test_all_computed_parts_need_no_draft_and_no_verification(tool_ctx, agent_settings):
    tools = {"python_code": python_code, "math_calc": math_calc}
    program = "```python\nfrom datetime import date\nprint((date(2024, 3, 1) - date(2024, 1, 1)).days)\n```"
    llm = ScriptedLLM([program])  # "what is 12 factorial" is read by rule: factorial(12)
    question = "How many days are there between 2024-01-01 and 2024-03-01, and what is 12 factorial?"
    steps, text, done, _ = run(llm, tools, tool_ctx, agent_settings, question)
    ran = [s for s in steps if s.kind == "tool"]
    assert {s.tool for s in ran} == {"python_code", "math_calc"} and all(s.ok for s in ran)
    assert "60" in done.content.split() or ": 60" in done.content
    assert "479001600" in done.content
    assert done.llm_calls == 1  # the program only: no planning, argument, drafting or verification call
    verify = [s for s in steps if s.kind == "verify"]
    assert verify and verify[0].observation.startswith("skipped")


def test_a_part_without_a_tool_here_falls_back_to_the_planner():
    parts = split_parts("What is the weather in Berlin, and what is 17% of 2340?")
    assert [p.need for p in parts] == ["weather", "compute"]
    assert plan_from_parts(parts, {"math_calc": math_calc}) == []
    steps = plan_from_parts(parts, {"weather": weather, "math_calc": math_calc})
    assert [(s["tool"], s.get("kind")) for s in steps] == [("weather", "call"), ("math_calc", "call")]


@pytest.mark.parametrize(
    ("question", "needs"),
    [
        ("How many customers are in the database, and what is 15% of 820?", ["sql", "compute"]),
        (
            "According to my documents, how many vacation days does an employee get? "
            "Also, how many days are there between 2025-01-01 and 2025-03-01?",
            ["documents", "compute"],
        ),
        (
            "Three questions: what is the weather in Paris, how many products are in the database, "
            "and what is 12 factorial?",
            ["weather", "sql", "compute"],
        ),
        ("Look up Celtuce on Wikipedia and tell me another name for it, and also what is 2 to the power of 20?",
         ["wikipedia", "compute"]),
    ],
)
def test_independent_parts_are_found(question, needs):
    assert [p.need for p in split_parts(question)] == needs


@pytest.mark.parametrize(
    "question",
    [
        "What is 17% of 2340?",
        "Find the population of Canada, then divide it by 3.",  # dependent steps
        "Write a poem about the sea and the sky.",
    ],
)
def test_single_or_dependent_requests_are_not_split(question):
    assert split_parts(question) == []


@needs_sandbox
def test_a_non_arithmetic_computation_part_runs_a_program(tool_ctx, agent_settings):
    parts = split_parts("What is the weather in Oslo, and what day of the week was 2000-01-01?")
    steps = plan_from_parts(parts, {"weather": weather, "python_code": python_code, "math_calc": math_calc})
    assert [(s["tool"], s.get("kind")) for s in steps] == [("weather", "call"), ("python_code", "program")]


@tool(name="weather", categories=("weather",))
async def broken_weather(ctx: ToolContext, location: str) -> str:
    """Current weather for a place.

    Args:
        location: a place name.
    """
    raise ToolError("the forecast service is down")


def test_a_failed_lookup_part_is_checked_not_replanned_and_keeps_the_computed_part(tool_ctx, agent_settings):
    tools = {"weather": broken_weather, "math_calc": math_calc}
    llm = ScriptedLLM(
        [
            forced("weather", location="Berlin"),
            "Berlin is warm.",
            json.dumps({"correct": False, "problem": "the temperature is missing"}),
        ]
    )
    steps, _, done, _ = run(llm, tools, tool_ctx, agent_settings, "What is the weather in Berlin, and what is 1234 * 5678?")
    assert done.llm_calls == 3 and done.verified is False  # no replan: no fourth call
    assert "7006652" in done.content
    verify_prompt = json.dumps(llm.calls[2]["messages"])
    assert "Berlin is warm." in verify_prompt and "7006652" not in verify_prompt  # only the lookup draft is checked


def test_a_part_no_valid_call_could_be_made_for_is_said_not_dropped(tool_ctx, agent_settings):
    tools = {"weather": weather, "math_calc": math_calc}
    llm = ScriptedLLM(["I cannot call tools."])  # the forced call for the weather part fails
    steps, _, done, _ = run(llm, tools, tool_ctx, agent_settings, "What is the weather in Berlin, and what is 1234 * 5678?")
    assert "7006652" in done.content
    assert "What is the weather in Berlin: I could not answer this part." in done.content
    assert done.verified is False


def test_server_filled_arguments_need_no_model_call():
    @tool(categories=("documents",), question_argument="query")
    async def search_docs(ctx: ToolContext, query: str, top_k: int = 5) -> str:
        """Search the documents.

        Args:
            query: what to look for.
            top_k: how many passages.
        """
        return ""

    question = "According to my documents, how many vacation days does an employee get? Also, what is 2 to the power of 20?"
    steps = plan_from_parts(split_parts(question), {"search_docs": search_docs, "math_calc": math_calc})
    assert [(s["tool"], s["arguments"]) for s in steps] == [
        ("search_docs", {"query": "According to my documents how many vacation days does an employee get"}),
        ("math_calc", {"expression": "2**20"}),
    ]
    # a computation the rules cannot read as one expression keeps empty arguments (the model fills them)
    steps = plan_from_parts(split_parts("What is the weather in Oslo, and what is 17% of 2340 euros in dollars?"),
                            {"weather": weather, "math_calc": math_calc})
    assert [(s["tool"], s["arguments"]) for s in steps] == [("weather", {}), ("math_calc", {})]
