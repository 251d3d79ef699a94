"""The code agent on a scripted model and the real bubblewrap sandbox: the program runs, its
printed output is the answer (a miscopy cannot happen), errors are repaired at most twice."""

from __future__ import annotations

import asyncio

import pytest

from backend.agents.program import ensure_prints, extract_program, has_complete_python_block
from backend.agents.runner import run_agent
from backend.llm.types import GenerationParams
from backend.tools.python_code import python_code
from backend.tools.sandbox import sandbox_available
from tests.agents.conftest import ScriptedLLM, collect

AVAILABLE, REASON = sandbox_available()
needs_sandbox = pytest.mark.skipif(not AVAILABLE, reason=f"bubblewrap sandbox unavailable: {REASON}")

PRIMES = "total = sum(p for p in range(2, 100) if all(p % d for d in range(2, p)))\nprint(f'The sum is {total}.')"


def fenced(code: str, tail: str = "") -> str:
    return f"```python\n{code}\n```{tail}"


def run(llm, ctx, settings, question="What is the sum of the primes below 100?"):
    messages = [{"role": "user", "content": question}]
    tools = {"python_code": python_code}
    return asyncio.run(collect(run_agent("code", messages, ctx, llm, GenerationParams(), settings, tools=tools)))


@needs_sandbox
def test_one_call_one_run_and_the_answer_is_the_printed_output(tool_ctx, agent_settings):
    # the model goes on to invent an output block and a wrong sentence: generation stops at the
    # closed python block, so neither is ever read, and the answer is what the program printed
    llm = ScriptedLLM([fenced(PRIMES, "\n\n```output\nThe sum is 999.\n```\nSo the sum is 999.")])
    steps, text, done, _ = run(llm, tool_ctx, agent_settings)
    assert done.mode == "code" and done.reason == "answered"
    assert done.llm_calls == 1 and len(steps) == 1
    step = steps[0]
    assert step.tool == "python_code" and step.ok and step.input == PRIMES
    assert step.observation == "The sum is 1060."
    assert done.content == text == "The sum is 1060."
    assert "999" not in done.content
    assert llm.cancelled == 1, "the stream was closed as soon as the program was complete"


@needs_sandbox
def test_the_program_runs_in_the_sandbox_not_the_server(tool_ctx, agent_settings):
    llm = ScriptedLLM([fenced("import os, socket\nprint(os.getuid(), os.path.exists('/work'))\nsocket.create_connection(('1.1.1.1', 53), 1)")])
    llm.outputs.append(fenced("import os\nprint(os.getuid(), os.path.exists('/work'))"))
    steps, _, done, _ = run(llm, tool_ctx, agent_settings, "Which uid runs this?")
    assert not steps[0].ok and ("unreachable" in steps[0].observation or "OSError" in steps[0].observation)
    assert done.content == "65534 False"


@needs_sandbox
def test_a_failing_program_gets_its_traceback_and_is_repaired(tool_ctx, agent_settings):
    llm = ScriptedLLM([fenced("print(totl)"), fenced("total = 6 * 7\nprint(total)")])
    steps, _, done, _ = run(llm, tool_ctx, agent_settings, "How many eggs are in six rows of seven eggs?")
    assert [s.ok for s in steps] == [False, True]
    assert "NameError" in steps[0].observation and steps[1].thought.startswith("Repair 1")
    repair_prompt = llm.calls[1]["messages"][-1]["content"]
    assert "NameError" in repair_prompt and "totl" in repair_prompt
    assert done.content == "42" and done.llm_calls == 2 and done.reason == "answered"


@needs_sandbox
def test_at_most_two_repairs_then_an_honest_failure(tool_ctx, agent_settings):
    llm = ScriptedLLM([fenced("1/0"), fenced("1/0"), fenced("1/0")])
    steps, _, done, _ = run(llm, tool_ctx, agent_settings, "Divide one by zero.")
    assert len(steps) == 3 and not any(s.ok for s in steps)
    assert done.llm_calls == 3 and done.reason == "program_failed"
    assert done.content.startswith("I could not compute the answer") and "ZeroDivisionError" in done.content


@needs_sandbox
def test_a_program_that_prints_nothing_is_asked_to_print(tool_ctx, agent_settings):
    llm = ScriptedLLM([fenced("def f():\n    return 5"), fenced("def f():\n    return 5\nprint(f())")])
    steps, _, done, _ = run(llm, tool_ctx, agent_settings, "Five?")
    assert len(steps) == 2 and "print" in llm.calls[1]["messages"][-1]["content"]
    assert done.content == "5"


@needs_sandbox
def test_a_trailing_expression_is_printed(tool_ctx, agent_settings):
    llm = ScriptedLLM([fenced("x = 2\nx ** 100")])
    steps, _, done, _ = run(llm, tool_ctx, agent_settings, "How many subsets does a set of 100 elements have?")
    assert steps[0].input == "x = 2\nprint(x ** 100)"
    assert done.content == str(2**100) and done.llm_calls == 1


@needs_sandbox
def test_multi_line_output_is_kept_verbatim(tool_ctx, agent_settings):
    llm = ScriptedLLM([fenced("for i in range(3):\n    print(i, i * i)")])
    _, _, done, _ = run(llm, tool_ctx, agent_settings, "squares")
    assert done.content == "```\n0 0\n1 1\n2 4\n```"


def test_a_reply_without_a_program_is_the_answer(tool_ctx, agent_settings):
    llm = ScriptedLLM(["Hello! How can I help you today?"])
    steps, text, done, _ = run(llm, tool_ctx, agent_settings, "hi")
    assert steps == [] and done.reason == "no_program" and done.content == text == "Hello! How can I help you today?"


def test_without_a_sandbox_code_mode_falls_back_to_react(tool_ctx, agent_settings):
    llm = ScriptedLLM(["Four."])
    messages = [{"role": "user", "content": "what is two plus two"}]
    run_ = run_agent("code", messages, tool_ctx, llm, GenerationParams(), agent_settings, tools={})
    _, _, done, _ = asyncio.run(collect(run_))
    assert done.mode == "react" and done.content == "Four."


def test_program_extraction():
    assert extract_program("Here:\n```python\nprint(1)\n```\nOutput:\n```\n1\n```") == "print(1)"
    assert extract_program("```\nimport math\nprint(math.pi)\n```") == "import math\nprint(math.pi)"
    assert extract_program("print(sum(range(10)))") == "print(sum(range(10)))"
    assert extract_program("The answer is 42.") is None
    assert extract_program("```\n42\n```") is None
    assert extract_program("```python\nprint(1)") == "print(1)"  # cut before the closing fence
    assert has_complete_python_block("```python\nprint(1)\n```")
    assert not has_complete_python_block("```python\nprint(1)\n")
    assert ensure_prints("print(1)\n2") == "print(1)\n2"
    assert ensure_prints("a = 3\na * 2") == "a = 3\nprint(a * 2)"


@needs_sandbox
def test_a_typed_in_result_or_a_prose_number_is_sent_back_for_a_program(tool_ctx, agent_settings):
    llm = ScriptedLLM(
        [
            "The sum of the primes below 100 is 177.",  # prose with a number: not trusted
            fenced('print("The sum is 177.")'),  # a program that computes nothing
            fenced(PRIMES),
        ]
    )
    steps, _, done, _ = run(llm, tool_ctx, agent_settings)
    assert [s.kind for s in steps] == ["format", "format", "tool"]
    assert done.content == "The sum is 1060." and done.llm_calls == 3 and "177" not in done.content


@needs_sandbox
def test_code_mode_through_the_api_streams_the_program_step_then_the_output(api):
    import json

    api.provider.outputs = [fenced("print(sum(range(101)))", "\n```output\n5000\n```")]
    body = {"model": "scripted-model:code", "stream": True, "messages": [{"role": "user", "content": "The sum of 0 to 100?"}]}
    r = api.client.post("/v1/chat/completions", json=body, headers=api.auth("bob"))
    assert r.status_code == 200, r.text
    chunks = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
    steps = [c["agent_step"] for c in chunks if "agent_step" in c]
    content = "".join(ch["delta"].get("content") or "" for c in chunks for ch in c["choices"])
    assert chunks[0]["agent"]["mode"] == "code"
    assert [(s["tool"], s["input"], s["observation"]) for s in steps] == [("python_code", "print(sum(range(101)))", "5050")]
    assert content == "5050"
    api.provider.outputs = [fenced("print(2 ** 10)")]
    body = {"model": "scripted-model", "mode": "code", "messages": [{"role": "user", "content": "Bytes in a kibibyte?"}]}
    data = api.client.post("/v1/chat/completions", json=body, headers=api.auth("bob")).json()
    assert data["choices"][0]["message"]["content"] == "1024"
    assert data["agent"]["mode"] == "code" and data["agent"]["steps"][0]["tool"] == "python_code"
    assert data["agent"]["llm_calls"] == 1


@needs_sandbox
@pytest.mark.parametrize(
    ("question", "answer"),
    [("What is 15% of 820?", "123"), ("What is ten divided by four?", "2.5"), ("What is 2 to the power of 100?", str(2**100)),
     ("What is the gcd of 84 and 126?", "42"), ("What is the square root of 2?", "1.4142135623731")],
)
def test_a_question_that_is_one_expression_needs_no_model_call(tool_ctx, agent_settings, question, answer):
    llm = ScriptedLLM([])  # any model call would fail the run
    steps, text, done, _ = run(llm, tool_ctx, agent_settings, question)
    assert done.llm_calls == 0 and done.reason == "answered"
    assert [(s.tool, s.ok) for s in steps] == [("python_code", True)]
    assert "sympify(" in steps[0].input  # the server's program ran in the sandbox
    assert steps[0].observation.strip() == answer and done.content == answer and text == answer


def test_a_typed_in_result_is_never_the_answer(tool_ctx, agent_settings):
    llm = ScriptedLLM([fenced('print("The sum is 177.")')] * 3)
    steps, _, done, _ = run(llm, tool_ctx, agent_settings)
    assert [s.kind for s in steps] == ["format"] * 3 and done.reason == "program_failed"
    assert "177" not in done.content and done.llm_calls == 3


@needs_sandbox
def test_usage_is_counted_when_generation_stops_at_the_program(tool_ctx, agent_settings):
    llm = ScriptedLLM([fenced(PRIMES, "\nMore text that is never generated.")])
    _, _, done, _ = run(llm, tool_ctx, agent_settings)
    assert done.usage.prompt_tokens > 0 and done.usage.completion_tokens > 0
