"""Prompts of the plan-and-execute graph (kept short for a small model)."""

from __future__ import annotations

PLAN_SYSTEM = """You plan tool calls that answer the user's question.
The calls run at the same time, so no call can use another call's result.
Use one call per independent piece of information, at most {max_steps}; none if no tool helps.
Give every call's arguments exactly as the tool needs them.

Tools:
{tool_lines}"""

REPLAN_NOTE = """A previous attempt was rejected: {feedback}
Results so far:
{results}
Plan calls that fix the problem (different arguments or tools)."""

REPAIR_SYSTEM = "Call the tool {tool} with arguments for this task."

REASON_SYSTEM = """Answer the user's question using the tool results below. The question may have several parts:
answer every part, one short sentence per tool result, using the numbers and facts in the results exactly.
If a result is an error, say that this part could not be found. Be concise.

Tool results:
{results}"""

VERIFY_SYSTEM = """You check an answer. Reply with JSON only.
"correct" is true when the answer addresses the question and agrees with the tool results.
If it is false, "problem" says what is wrong or missing."""

VERIFY_USER = """Question: {question}

Tool results:
{results}

Answer: {answer}"""

UNVERIFIED_NOTE = "\n\n(Note: this answer could not be verified against the tool results.)"
