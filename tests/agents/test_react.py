"""ReAct control flow on a scripted model: the real provider base class parses its tool calls."""

from __future__ import annotations

import asyncio
import json

import pytest

from backend.agents.events import AgentStep, AnswerDelta
from backend.agents.react import ParsedAction, ParsedFinal, ParseError, parse_react_text
from backend.agents.runner import run_agent
from backend.errors import BadRequestError
from backend.llm.types import GenerationParams
from tests.agents.conftest import FAKE_TOOLS, ScriptedLLM, call, collect

# no keyword names a tool kind here, so every turn is tool_choice="auto" (see test_required_first_call)
Q = [{"role": "user", "content": "Combine two facts for me: a product I need and the size of Paris."}]


def run(llm, tools, ctx, settings, messages=Q, **kw):
    return asyncio.run(collect(run_agent("react", messages, ctx, llm, GenerationParams(), settings, tools=tools, **kw)))


def test_happy_path_native_tool_calls(fake_tools, tool_ctx, agent_settings):
    llm = ScriptedLLM(
        [
            call("calc", expression="6*7"),
            call("lookup", topic="Paris"),
            "6*7 is 42 and Paris has 2.1 million people, so the total is 44.1.",
        ]
    )
    steps, text, done, events = run(llm, fake_tools, tool_ctx, agent_settings)
    assert [(s.tool, s.input, s.ok) for s in steps] == [
        ("calc", {"expression": "6*7"}, True),
        ("lookup", {"topic": "Paris"}, True),
    ]
    assert steps[0].observation == "42"
    assert "2.1 million" in steps[1].observation
    assert done.content == "6*7 is 42 and Paris has 2.1 million people, so the total is 44.1."
    assert text == done.content  # the streamed deltas add up to the answer
    assert done.mode == "react" and done.reason == "answered" and done.llm_calls == 3
    assert done.usage.prompt_tokens == 30
    assert done.sources == [{"title": "Paris", "url": "https://example.org/paris"}]
    # steps are yielded before the answer, and the answer streams in several pieces
    first_delta = next(i for i, e in enumerate(events) if isinstance(e, AnswerDelta))
    assert all(isinstance(e, AgentStep) for e in events[:first_delta])
    assert sum(isinstance(e, AnswerDelta) for e in events) > 3
    # the model saw the tools and, on the 2nd turn, the first observation as a tool message
    p = llm.calls[0]["params"]
    assert {t["function"]["name"] for t in p.tools} == set(fake_tools) and llm.calls[0]["constraint"] is None
    second = llm.calls[1]["messages"]
    assert second[-2]["tool_calls"][0]["function"]["name"] == "calc"
    assert second[-1]["role"] == "tool" and second[-1]["tool_call_id"] == second[-2]["tool_calls"][0]["id"]
    assert second[-1]["content"].startswith("42\n(Now answer the question with this result")


def test_tool_error_mid_run_is_an_observation_and_the_run_recovers(fake_tools, tool_ctx, agent_settings):
    llm = ScriptedLLM(
        [
            call("flaky", query="paris population"),
            call("lookup", topic="Paris"),
            "Paris has about 2.1 million inhabitants.",
        ]
    )
    steps, _, done, _ = run(llm, fake_tools, tool_ctx, agent_settings)
    assert [s.tool for s in steps] == ["flaky", "lookup"]
    assert not steps[0].ok and "503" in steps[0].observation
    assert steps[1].ok
    # the error was shown to the model as the tool's result
    assert "503" in llm.calls[1]["messages"][-1]["content"]
    assert done.content == "Paris has about 2.1 million inhabitants." and done.reason == "answered"


def test_unknown_tool_and_bad_arguments_become_observations(fake_tools, tool_ctx, agent_settings):
    llm = ScriptedLLM(
        [
            'Thought: I need the weather\nAction: weather\nAction Input: {"city": "Paris"}',
            call("calc", expression="import os"),
            "I cannot compute that.",
        ]
    )
    steps, _, done, _ = run(llm, fake_tools, tool_ctx, agent_settings)
    assert steps[0].kind == "format" and not steps[0].ok and "'weather' is not a tool" in steps[0].observation
    assert steps[1].tool == "calc" and not steps[1].ok and steps[1].observation.startswith("Error: cannot evaluate")
    assert done.content == "I cannot compute that."


def test_unparsable_output_becomes_an_observation_not_a_crash(fake_tools, tool_ctx, agent_settings):
    llm = ScriptedLLM(
        [
            '<tool_call>\n{"name": "calc", "arguments": {"expression": "6*7"\n</tool_call>',  # broken JSON
            "Thought: let me compute\nAction: calc\n",  # Action without input
            call("calc", expression="6*7"),
            "Final Answer: 42",
        ]
    )
    steps, text, done, _ = run(llm, fake_tools, tool_ctx, agent_settings)
    assert [s.kind for s in steps] == ["format", "format", "tool"]
    assert "<tool_call>" in steps[0].observation
    assert "Action Input" in steps[1].observation
    # the model was told what went wrong
    assert "could not be understood" in llm.calls[1]["messages"][-1]["content"]
    assert done.content == "42" and text == "42"


def test_max_iterations_still_gives_a_final_answer(fake_tools, tool_ctx, agent_settings):
    agent_settings.agent_max_iterations = 3
    llm = ScriptedLLM(
        [
            call("calc", expression="1+1"),
            call("calc", expression="2+2"),
            call("calc", expression="3+3"),
            "From what I computed: 1+1=2, 2+2=4 and 3+3=6.",
        ]
    )
    steps, text, done, _ = run(llm, fake_tools, tool_ctx, agent_settings)
    assert len([s for s in steps if s.tool]) == 3
    assert done.reason == "max_iterations" and done.llm_calls == 4
    assert done.content == "From what I computed: 1+1=2, 2+2=4 and 3+3=6." == text
    last = llm.calls[-1]
    assert last["params"].tools is None  # the final call cannot call tools
    # a fresh prompt: the results and the question, no tool-call history
    assert [m["role"] for m in last["messages"]] == ["system", "user"]
    assert 'calc({"expression": "3+3"}) -> 6' in last["messages"][0]["content"]
    assert last["messages"][1]["content"] == Q[0]["content"]


def test_repeated_identical_call_is_not_run_twice(fake_tools, tool_ctx, agent_settings):
    llm = ScriptedLLM([call("calc", expression="6*7"), call("calc", expression="6*7"), "42"])
    steps, _, done, _ = run(llm, fake_tools, tool_ctx, agent_settings)
    assert steps[1].tool == "calc" and not steps[1].ok and "already called" in steps[1].observation
    # a stuck model is asked for the answer at once, without tools
    assert done.content == "42" and done.reason == "repeated_call"
    assert llm.calls[-1]["params"].tools is None and "-> 42" in llm.calls[-1]["messages"][0]["content"]


def test_text_style_react(fake_tools, tool_ctx, agent_settings):
    llm = ScriptedLLM(
        [
            'Thought: compute it\nAction: calc\nAction Input: {"expression": "6*7"}\nObservation: 41',
            "Thought: I know the answer\nFinal Answer: 6*7 = 42",
        ]
    )
    steps, text, done, _ = run(llm, fake_tools, tool_ctx, agent_settings, style="text")
    assert steps[0].thought == "compute it" and steps[0].observation == "42"
    assert llm.calls[0]["params"].tools is None and "Observation:" in llm.calls[0]["params"].stop[-1]
    assert "Action: the tool name, one of [calc, lookup" in llm.calls[0]["messages"][0]["content"]
    # the invented observation was dropped; the real one came back as the next user turn
    assert llm.calls[1]["messages"][-2]["content"].endswith('{"expression": "6*7"}')
    assert llm.calls[1]["messages"][-1]["content"] == "Observation: 42"
    assert done.content == "6*7 = 42" == text


def test_client_system_prompt_and_history_are_kept(fake_tools, tool_ctx, agent_settings):
    messages = [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Bonjour"},
        {"role": "user", "content": [{"type": "text", "text": "How are you?"}]},
    ]
    llm = ScriptedLLM(["4"])
    run(llm, fake_tools, tool_ctx, agent_settings, messages=messages)
    sent = llm.calls[0]["messages"]
    assert sent[0]["role"] == "system" and sent[0]["content"].endswith("Answer in French.")
    assert [m["content"] for m in sent[1:]] == ["Hi", "Bonjour", "How are you?"]


def test_no_user_text_is_a_bad_request(fake_tools, tool_ctx, agent_settings):
    with pytest.raises(BadRequestError):
        run(ScriptedLLM([]), fake_tools, tool_ctx, agent_settings, messages=[{"role": "system", "content": "x"}])


def test_cancellation_propagates_promptly(fake_tools, tool_ctx, agent_settings):
    llm = ScriptedLLM(["This answer streams very slowly " * 20], chunk=3, delay_s=0.05)

    async def main() -> float:
        events = []

        async def consume() -> None:
            async for ev in run_agent("react", Q, tool_ctx, llm, GenerationParams(), agent_settings, tools=fake_tools):
                events.append(ev)

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.5)
        t0 = asyncio.get_running_loop().time()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert any(isinstance(e, AnswerDelta) for e in events)  # it was streaming when cancelled
        return asyncio.get_running_loop().time() - t0

    assert asyncio.run(main()) < 0.2
    assert llm.cancelled == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            'Thought: x\nAction: calc\nAction Input: {"expression": "1+1"}',
            ParsedAction("x", "calc", {"expression": "1+1"}),
        ),
        ("Action: calc\nAction Input: 1+1", ParsedAction("", "calc", "1+1")),
        (
            'Action: `calc`\nAction Input: ```json\n{"expression": "2"}\n```',
            ParsedAction("", "calc", {"expression": "2"}),
        ),
        ("Thought: done\nFinal Answer: 7", ParsedFinal("done", "7")),
        ("Just the answer.", ParsedFinal("", "Just the answer.")),
        ("Final Answer:", ParseError("the Final Answer is empty", "Final Answer:")),
        ("Action: nope\nAction Input: {}", ParseError("'nope' is not a tool", "Action: nope\nAction Input: {}")),
    ],
)
def test_parse_react_text(text, expected):
    assert parse_react_text(text, ["calc", "lookup"]) == expected


def test_trace_is_json_serialisable(fake_tools, tool_ctx, agent_settings):
    llm = ScriptedLLM([call("calc", expression="6*7"), "42"])
    steps, _, done, _ = run(llm, fake_tools, tool_ctx, agent_settings)
    json.dumps([s.to_dict() for s in done.steps])
    assert done.steps == steps


def test_call_after_some_text_is_recovered(fake_tools, tool_ctx, agent_settings):
    llm = ScriptedLLM(["Let me work this out with the calculator. " + call("calc", expression="6*7"), "It is 42."])
    steps, _, done, _ = run(llm, fake_tools, tool_ctx, agent_settings)
    assert steps[0].tool == "calc" and steps[0].observation == "42"
    assert steps[0].thought == "Let me work this out with the calculator."
    assert done.content == "It is 42."


def test_garbage_at_the_step_limit_still_answers_from_observations(fake_tools, tool_ctx, agent_settings):
    agent_settings.agent_max_iterations = 1
    llm = ScriptedLLM([call("lookup", topic="Rome"), call("lookup", topic="Paris")])
    _steps, text, done, _ = run(llm, fake_tools, tool_ctx, agent_settings)
    assert done.reason == "max_iterations"
    assert "Rome has 2.8 million people." in done.content and text == done.content


def test_clear_tool_need_forces_a_tool_call_on_the_first_turn(fake_tools, tool_ctx, agent_settings):
    messages = [{"role": "user", "content": "Calculate 6*7 please"}]
    llm = ScriptedLLM([json.dumps({"name": "calc", "arguments": {"expression": "6*7"}}), "6*7 = 42"])
    steps, _, done, _ = run(llm, fake_tools, tool_ctx, agent_settings, messages=messages)
    schema = llm.calls[0]["constraint"].schema  # the grammar of "one call to an offered tool"
    assert {v["properties"]["name"]["const"] for v in schema["anyOf"]} == set(fake_tools)
    assert llm.calls[1]["constraint"] is None  # later turns are free (auto)
    assert steps[0].tool == "calc" and steps[0].observation == "42"
    assert done.content == "6*7 = 42"


def test_failed_forced_call_is_an_observation_then_auto(fake_tools, tool_ctx, agent_settings):
    messages = [{"role": "user", "content": "Calculate 6*7 please"}]
    llm = ScriptedLLM(['{"name": "calc", "argu', call("calc", expression="6*7"), "42"])
    steps, _, done, _ = run(llm, fake_tools, tool_ctx, agent_settings, messages=messages)
    assert steps[0].kind == "format" and "required tool call" in steps[0].observation
    assert llm.calls[1]["constraint"] is None
    assert steps[1].observation == "42" and done.content == "42"


def test_invented_tool_name_in_a_json_fence_is_an_observation(fake_tools, tool_ctx, agent_settings):
    fenced = '```json\n{"name": "derivative", "arguments": {"expression": "x**3"}}\n```'
    llm = ScriptedLLM([fenced, call("calc", expression="3*3"), "9"])
    steps, _, done, _ = run(llm, fake_tools, tool_ctx, agent_settings)
    assert steps[0].kind == "format" and "'derivative' is not a tool" in steps[0].observation
    assert done.content == "9"


def test_several_bare_json_calls_run_the_first_new_one(fake_tools, tool_ctx, agent_settings):
    first = '{"name": "calc", "arguments": {"expression": "6*7"}}'
    llm = ScriptedLLM(
        [
            call("calc", expression="6*7"),
            # a small model rambling: the same call again, then a new one, then a cut-off one
            first + "\n" + '{"name": "lookup", "arguments": {"topic": "Paris"}}\n{"name": "calc", "argu',
            "42, and Paris has 2.1 million people.",
        ]
    )
    steps, _, done, _ = run(llm, fake_tools, tool_ctx, agent_settings)
    assert [(s.tool, s.ok) for s in steps] == [("calc", True), ("lookup", True)]
    assert done.content == "42, and Paris has 2.1 million people."


def _math_tools():
    from backend.tools.math_calc import math_calc

    return {"math_calc": math_calc}


def test_one_step_computation_is_one_call_and_the_answer_is_its_exact_result(tool_ctx, agent_settings):
    # the first turn is grammar-forced: the model writes the bare call; no second model call is scripted
    llm = ScriptedLLM([json.dumps({"name": "math_calc", "arguments": {"expression": "17/100*2340"}})])
    messages = [{"role": "user", "content": "What is 17% of 2340?"}]
    steps, text, done, _ = run(llm, _math_tools(), tool_ctx, agent_settings, messages=messages)
    assert [s.tool for s in steps if s.kind == "tool"] == ["math_calc"]
    assert done.llm_calls == 1 and done.reason == "answered"
    assert "397.8" in done.content and done.content == text


def test_a_repeated_call_with_an_exact_result_in_hand_answers_from_it(tool_ctx, agent_settings):
    from backend.tools.math_calc import math_calc

    tools = {"math_calc": math_calc, **FAKE_TOOLS}
    llm = ScriptedLLM([call("math_calc", expression="6*7"), call("math_calc", expression="6*7")])
    steps, text, done, _ = run(llm, tools, tool_ctx, agent_settings)  # Q is not a one-step computation
    ran = [s for s in steps if s.kind == "tool"]
    assert len(ran) == 2 and ran[1].observation.startswith("You already called")
    assert done.reason == "repeated_call" and done.llm_calls == 2  # no extra "final answer" call
    assert "42" in done.content
