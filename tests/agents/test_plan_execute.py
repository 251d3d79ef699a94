"""Plan-and-execute control flow (the real LangGraph graph) on a scripted model."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from backend.agents.events import AgentStep
from backend.agents.plan_execute.graph import build_graph
from backend.agents.runner import run_agent
from backend.llm.types import GenerationParams
from tests.agents.conftest import ScriptedLLM, collect

Q = [{"role": "user", "content": "Compare the weather in Paris from stations A and B."}]


def plan(*steps: tuple[str, dict]) -> str:
    return json.dumps({"steps": [{"task": f"use {t}", "tool": t, "arguments": a} for t, a in steps]})


def verdict(ok: bool, problem: str = "") -> str:
    return json.dumps({"correct": ok, "problem": problem})


def run(llm, tools, ctx, settings, messages=Q):
    return asyncio.run(collect(run_agent("plan_execute", messages, ctx, llm, GenerationParams(), settings, tools=tools)))


def test_graph_has_the_five_stages():
    nodes = set(build_graph().compile().get_graph().nodes)
    assert {"plan", "select_tools", "execute_tool", "reasoning", "verify"} <= nodes


def test_plan_concurrent_tools_reason_verify(fake_tools, tool_ctx, agent_settings):
    llm = ScriptedLLM(
        [
            plan(("slow_a", {"city": "Paris"}), ("slow_b", {"city": "Paris"})),
            "Station A says 21C and station B says 19C: A is 2 degrees warmer.",
            verdict(True),
        ]
    )
    t0 = time.perf_counter()
    steps, text, done, events = run(llm, fake_tools, tool_ctx, agent_settings)
    elapsed = time.perf_counter() - t0
    tool_steps = [s for s in steps if s.tool]
    assert sorted(s.tool for s in tool_steps) == ["slow_a", "slow_b"]
    assert all(s.ok and s.duration_s >= 0.29 for s in tool_steps)
    assert elapsed < 0.5, f"two 0.3 s tools took {elapsed:.2f} s: they did not run concurrently"
    assert [s.kind for s in steps] == ["plan", "tool", "tool", "verify"]
    assert [s.index for s in steps] == [0, 1, 2, 3]
    assert done.verified is True and done.reason == "verified" and done.mode == "plan_execute"
    assert done.content == "Station A says 21C and station B says 19C: A is 2 degrees warmer." == text
    assert done.llm_calls == 3
    # the plan call was constrained to a schema naming each tool and its arguments
    schema = llm.calls[0]["constraint"].schema
    variants = schema["properties"]["steps"]["items"]["anyOf"]
    assert {v["properties"]["tool"]["const"] for v in variants} == set(fake_tools)
    # reasoning saw both results; verification saw the answer
    assert "A: Paris 21C" in llm.calls[1]["messages"][0]["content"]
    assert "B: Paris 19C" in llm.calls[1]["messages"][0]["content"]
    assert "A is 2 degrees warmer" in llm.calls[2]["messages"][-1]["content"]
    assert llm.calls[2]["constraint"].schema["required"] == ["correct", "problem"]
    # steps were yielded before the answer text
    assert all(isinstance(e, AgentStep) for e in events[: len(steps)])


def test_verification_failing_stops_after_max_replans_unverified(fake_tools, tool_ctx, agent_settings):
    assert agent_settings.plan_max_replans == 3
    script = []
    for n in range(4):  # the first round + 3 replans
        script += [plan(("calc", {"expression": f"{n}+1"})), f"The answer is {n + 1}.", verdict(False, f"wrong #{n}")]
    llm = ScriptedLLM(script)
    steps, text, done, _ = run(llm, fake_tools, tool_ctx, agent_settings)
    assert [s.kind for s in steps].count("plan") == 4
    assert [s.observation for s in steps if s.kind == "verify"] == [f"failed: wrong #{n}" for n in range(4)]
    assert done.verified is False and done.reason == "unverified"
    assert done.content.startswith("The answer is 4.") and "could not be verified" in done.content
    assert text == done.content
    assert done.llm_calls == 12 and not llm.outputs
    # each replan was told why the previous attempt was rejected
    replan_prompt = llm.calls[3]["messages"][0]["content"]
    assert "wrong #0" in replan_prompt and "calc" in replan_prompt


def test_replan_fixes_a_failed_round(fake_tools, tool_ctx, agent_settings):
    llm = ScriptedLLM(
        [
            plan(("lookup", {"topic": "Lyon"})),  # no entry: the tool fails
            "I do not know.",
            # every call failed: verification fails without asking the model
            plan(("lookup", {"topic": "Paris"})),
            "Paris has 2.1 million people.",
            verdict(True),
        ]
    )
    steps, _, done, _ = run(llm, fake_tools, tool_ctx, agent_settings)
    kinds = [(s.kind, s.ok) for s in steps]
    assert kinds == [
        ("plan", True),
        ("tool", False),
        ("verify", False),
        ("plan", True),
        ("tool", True),
        ("verify", True),
    ]
    assert "every tool call failed" in steps[2].observation
    assert done.verified and done.content == "Paris has 2.1 million people."
    assert done.sources == [{"title": "Paris", "url": "https://example.org/paris"}]


def test_invalid_arguments_are_repaired_with_a_forced_call(fake_tools, tool_ctx, agent_settings):
    llm = ScriptedLLM(
        [
            plan(("calc", {"expr": "6*7"})),  # wrong argument name
            json.dumps({"name": "calc", "arguments": {"expression": "6*7"}}),
            "6*7 = 42",
            verdict(True),
        ]
    )
    steps, _, done, _ = run(llm, fake_tools, tool_ctx, agent_settings)
    repair = llm.calls[1]
    assert repair["constraint"].schema["properties"]["name"] == {"const": "calc"}  # the forced-call grammar
    assert [s.observation for s in steps if s.tool == "calc"] == ["42"]
    assert done.content == "6*7 = 42"


def test_unknown_tool_in_plan_is_skipped_and_no_tools_goes_straight_to_reasoning(fake_tools, tool_ctx, agent_settings):
    llm = ScriptedLLM([plan(("teleport", {"to": "Mars"})), "I can answer without tools: hello.", verdict(True)])
    steps, _, done, _ = run(llm, fake_tools, tool_ctx, agent_settings)
    assert [(s.kind, s.observation) for s in steps[:2]] == [("plan", ""), ("format", "unknown tool 'teleport'")]
    assert done.content == "I can answer without tools: hello." and done.verified


def test_cancellation_during_tools_is_prompt(fake_tools, tool_ctx, agent_settings):
    llm = ScriptedLLM([plan(("slow_a", {"city": "Paris"}), ("slow_b", {"city": "Rome"}))])

    async def main() -> float:
        async def consume() -> None:
            async for _ in run_agent("plan_execute", Q, tool_ctx, llm, GenerationParams(), agent_settings, tools=fake_tools):
                pass

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.1)  # the tools are sleeping now
        t0 = time.perf_counter()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.perf_counter() - t0

    assert asyncio.run(main()) < 0.15
