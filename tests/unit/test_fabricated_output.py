"""Plain chat never shows a program's invented output as a result: the program runs in the
sandbox and the real output replaces the claim, or the claim is removed (stream and non-stream)."""

from __future__ import annotations

import asyncio
import json

import pytest

from backend.chat.fabricated_output import EXECUTED_NOTE, ClaimGuard, find_claims, settle_claims
from backend.tools.base import ToolResult
from backend.tools.sandbox import sandbox_available

AVAILABLE, REASON = sandbox_available()
needs_sandbox = pytest.mark.skipif(not AVAILABLE, reason=f"bubblewrap sandbox unavailable: {REASON}")

REPLY = (
    "Here is a program:\n```python\nprint(sum(range(101)))\n```\n"
    "When you run it, the output is:\n```\n5000\n```\nSo the sum of 0..100 is 5000. Happy coding!"
)


def chat(api, content: str, stream: bool):
    api.provider.outputs = [content]
    body = {"model": "scripted-model:chat", "stream": stream, "messages": [{"role": "user", "content": "Sum 0 to 100 in Python"}]}
    return api.client.post("/v1/chat/completions", json=body, headers=api.auth("bob"))


def streamed(r) -> tuple[str, list[dict]]:
    text, steps = "", []
    for line in r.text.splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            chunk = json.loads(line[6:])
            if "agent_step" in chunk:
                steps.append(chunk["agent_step"])
            for ch in chunk.get("choices", []):
                text += ch["delta"].get("content") or ""
    return text, steps


@needs_sandbox
@pytest.mark.parametrize("stream", [False, True])
def test_the_claimed_output_is_replaced_by_the_real_one(api, stream):
    r = chat(api, REPLY, stream)
    assert r.status_code == 200, r.text
    if stream:
        content, steps = streamed(r)
        assert steps and steps[0]["tool"] == "python_code" and steps[0]["observation"] == "5050"
    else:
        content = r.json()["choices"][0]["message"]["content"]
    assert "```output\n5050\n```\n" + EXECUTED_NOTE in content or "```\n5050\n```" in content
    assert EXECUTED_NOTE in content
    assert "5000" not in content, "the invented number and the sentence repeating it are gone"
    assert content.startswith("Here is a program:\n```python\nprint(sum(range(101)))\n```")
    assert "Happy coding!" in content


@needs_sandbox
def test_a_claim_whose_program_fails_is_removed(api):
    r = chat(api, "```python\nprint(undefined_total)\n```\nOutput:\n```\n42\n```\nThe answer is 42.", False)
    content = r.json()["choices"][0]["message"]["content"]
    assert "42" not in content and "claimed output was removed" in content and "NameError" in content


def test_a_reply_without_a_claim_is_untouched(api):
    reply = "Use this:\n```python\ndef add(a, b):\n    return a + b\n```\nIt returns 3 for add(1, 2)."
    r = chat(api, reply, True)
    assert streamed(r)[0] == reply


def test_claims_are_found_only_after_a_program():
    assert len(find_claims(REPLY)) == 1
    assert find_claims("```\n5000\n```") == []
    assert find_claims("```python\nx = 1\n```\nand\n```python\nprint(x)\n```") == []
    assert find_claims("```python\nprint(1)\n```\n" + "word " * 100 + "\n```\n1\n```") == []


def test_without_a_sandbox_the_claim_is_removed():
    settled = asyncio.run(settle_claims(REPLY, "Sum 0 to 100", None))
    assert "5000" not in settled.text and "was not run" in settled.text and settled.runs == []


def test_the_guard_holds_everything_after_a_closed_program():
    guard = ClaimGuard()
    shown = "".join(guard.feed(REPLY[i : i + 7]) for i in range(0, len(REPLY), 7))
    assert shown.endswith("print(sum(range(101)))\n```") and "5000" not in shown

    async def run(program: str) -> ToolResult:
        return ToolResult(True, "5050", {"stdout": "5050\n"})

    rest, settled = asyncio.run(guard.settle("Sum", run))
    assert settled.text == shown + rest and "5050" in rest and "5000" not in rest
