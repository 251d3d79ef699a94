"""What ``run_agent`` yields: steps as they happen, answer text, then exactly one ``AgentDone``."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from backend.llm.types import Usage
from backend.modes import Mode


@dataclass
class AgentStep:
    """One thing the agent did: a tool call with its observation, or a thought/plan/check (``tool=None``)."""

    index: int
    thought: str
    tool: str | None
    input: dict[str, Any] | str | None
    observation: str
    ok: bool = True
    duration_s: float = 0.0
    kind: str = "tool"  # tool | plan | verify | format | note

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class AnswerDelta:
    """A piece of the final answer's text."""

    text: str


@dataclass
class AgentDone:
    """The end of a run. ``reason`` says why the agent stopped (see ``STOP_REASONS``)."""

    content: str
    steps: list[AgentStep]
    mode: Mode  # react | plan_execute | code
    reason: str
    sources: list[dict[str, Any]] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    llm_calls: int = 0
    verified: bool | None = None  # plan_execute only: did the final answer pass verification


#: answered: the model gave a final answer; max_iterations: the step limit forced one;
#: repeated_call: the model repeated a tool call, so the answer was asked for without tools;
#: verified / unverified: plan-and-execute's verdict after its last (re)plan;
#: no_program / program_failed: the code agent got prose, or a program that failed every repair
STOP_REASONS = ("answered", "max_iterations", "repeated_call", "verified", "unverified", "no_program", "program_failed")

AgentEvent = AgentStep | AnswerDelta | AgentDone


def merge_sources(into: list[dict[str, Any]], new: Any) -> None:
    """Add ``new`` (a ToolResult.data["sources"] list) to ``into`` without duplicates, keeping order."""
    if not isinstance(new, list):
        return
    seen = {json.dumps(s, sort_keys=True, default=str) for s in into}
    for src in new:
        if not isinstance(src, dict):
            continue
        key = json.dumps(src, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            into.append(src)
