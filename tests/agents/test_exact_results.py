"""Exact results reach the answer by construction: a scripted model that miscopies a computed
result cannot get the wrong number to the user, in ReAct or in plan-and-execute."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

from backend.agents.grounding import Observed, ground_answer, grounded, is_stated, numbers
from backend.agents.runner import run_agent
from backend.llm.types import GenerationParams
from backend.tools.math_calc import math_calc
from tests.agents.conftest import FAKE_TOOLS, ScriptedLLM, collect


def json_call(name: str, **arguments: object) -> str:
    return json.dumps({"name": name, "arguments": arguments})


def plan(*steps: tuple[str, dict]) -> str:
    return json.dumps({"steps": [{"task": f"use {t}", "tool": t, "arguments": a} for t, a in steps]})


def react(llm, ctx, settings, question, tools):
    messages = [{"role": "user", "content": question}]
    run = run_agent("react", messages, ctx, llm, GenerationParams(), settings, tools=tools, narrow_tools=False)
    return asyncio.run(collect(run))


def plan_execute(llm, ctx, settings, question, tools):
    messages = [{"role": "user", "content": question}]
    return asyncio.run(collect(run_agent("plan_execute", messages, ctx, llm, GenerationParams(), settings, tools=tools)))


# ----------------------------------------------------------------------------- the rule itself
def test_numbers_are_compared_as_values():
    assert numbers("7,006,652 and 3.50 and -2") == [Decimal("7006652"), Decimal("3.50"), Decimal("-2")]
    pool = numbers("7.0710678118654755")
    assert grounded(Decimal("7.07"), pool) and grounded(Decimal("7"), pool)
    assert not grounded(Decimal("8"), pool) and not grounded(Decimal("7.2"), pool)
    assert not grounded(Decimal("7006"), numbers("7006652"))


def test_a_result_is_stated_only_when_it_is_there_exactly():
    assert is_stated("7006652", "The product is 7,006,652.")
    assert not is_stated("7006652", "The product is about 7 million.")
    assert is_stated("x**2*cos(x) + 2*x*sin(x)", "It is `x**2*cos(x) + 2*x*sin(x)`.")
    assert not is_stated("x**2*cos(x) + 2*x*sin(x)", "It is x**2*cos(x) + 2*sin(x).")


def test_a_faithful_draft_is_kept_word_for_word():
    draft = "1234 * 5678 is 7,006,652."
    g = ground_answer(draft, ["What is 1234 * 5678?"], [Observed("math_calc", "7006652", {"expression": "1234*5678"})])
    assert g.answer == draft and not g.changed


def test_a_miscopied_number_is_replaced_by_the_result():
    g = ground_answer(
        "1234 * 5678 is approximately 341.333.",
        ["What is 1234 * 5678?"],
        [Observed("math_calc", "7006652", {"expression": "1234*5678"})],
    )
    assert g.changed and "341" not in g.answer and g.answer == "1234*5678 = 7006652"


def test_lookups_alone_are_left_to_the_model():
    g = ground_answer("Paris has 3 million people.", ["Paris?"], [Observed("wikipedia", "Paris: 2.1 million people")])
    assert not g.changed


# ----------------------------------------------------------------------------- ReAct
def test_react_cannot_miscopy_a_math_result(tool_ctx, agent_settings):
    llm = ScriptedLLM([json_call("math_calc", expression="1234*5678"), "1234 * 5678 is approximately 341.333."])
    steps, text, done, _ = react(llm, tool_ctx, agent_settings, "Calculate 1234 * 5678.", {"math_calc": math_calc})
    assert steps[0].tool == "math_calc" and steps[0].ok and steps[0].observation.strip() == "7006652"
    assert "7006652" in done.content and "341" not in done.content
    assert text == done.content, "the streamed answer is the checked one (nothing wrong was streamed first)"


def test_react_keeps_other_facts_and_adds_the_missing_result(tool_ctx, agent_settings):
    tools = {"math_calc": math_calc, "lookup": FAKE_TOOLS["lookup"]}
    llm = ScriptedLLM(
        [
            json_call("math_calc", expression="17/100*2300"),
            json_call("lookup", topic="Paris"),
            "Paris has 2.1 million people. 17% of 2300 is 400.",
        ]
    )
    _, text, done, _ = react(llm, tool_ctx, agent_settings, "17% of 2300, and how big is Paris?", tools)
    assert "Paris has 2.1 million people." in done.content and "391" in done.content
    assert "400" not in done.content and text == done.content


def test_react_streams_as_before_when_no_result_is_computed(tool_ctx, agent_settings):
    llm = ScriptedLLM(["Bonjour! Paris is lovely in spring, with about 20 sunny days."])
    _, text, done, events = react(llm, tool_ctx, agent_settings, "Say hello", {"math_calc": math_calc})
    assert done.content == text == "Bonjour! Paris is lovely in spring, with about 20 sunny days."
    assert sum(1 for e in events if type(e).__name__ == "AnswerDelta") > 1


# ----------------------------------------------------------------------------- plan-and-execute
def test_plan_execute_cannot_miscopy_and_skips_verification_for_computed_results(tool_ctx, agent_settings):
    llm = ScriptedLLM(
        [
            plan(("math_calc", {"expression": "1234*5678"}), ("math_calc", {"expression": "sqrt(50)"})),
            "1234 * 5678 is approximately 341.333 and the square root of 50 is about 8.",
        ]
    )
    q = "Calculate 1234 * 5678 and the square root of 50."
    steps, _, done, _ = plan_execute(llm, tool_ctx, agent_settings, q, {"math_calc": math_calc})
    outputs = [s.observation.strip() for s in steps if s.kind == "tool"]
    assert "7006652" in outputs
    assert "7006652" in done.content and "341" not in done.content
    sqrt_out = next(o for o in outputs if o != "7006652")
    assert sqrt_out in done.content and "about 8" not in done.content
    verify = [s for s in steps if s.kind == "verify"]
    assert len(verify) == 1 and verify[0].observation.startswith("skipped")
    assert done.llm_calls == 2 and done.verified is True, "plan + answer; no verification call"


def test_plan_execute_still_verifies_lookups(fake_tools, tool_ctx, agent_settings):
    llm = ScriptedLLM(
        [
            plan(("lookup", {"topic": "Paris"})),
            "Paris has 2.1 million people.",
            json.dumps({"correct": True, "problem": ""}),
        ]
    )
    _, _, done, _ = plan_execute(llm, tool_ctx, agent_settings, "How many people live in Paris?", fake_tools)
    assert done.llm_calls == 3 and done.content == "Paris has 2.1 million people."


def test_a_sentence_result_is_stated_by_its_new_number():
    out = "The sum of all prime numbers below 100 is: 1060"
    g = ground_answer("The sum is 1060.", ["Sum of the primes below 100?"], [Observed("python_code", out)])
    assert not g.changed
    g = ground_answer("The sum is 1050.", ["Sum of the primes below 100?"], [Observed("python_code", out)])
    assert g.changed and g.answer == f"The program printed: {out}"
