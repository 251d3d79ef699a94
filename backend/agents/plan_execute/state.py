"""The graph's state and the per-run context its nodes read (LangGraph runtime context)."""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Annotated, Any, NotRequired, TypedDict

from backend.agents.events import AgentStep
from backend.agents.llm import CountingLLM
from backend.llm.types import Message
from backend.tools.base import Tool, ToolContext


class PlanStep(TypedDict):
    id: str  # "<round>.<n>"
    task: str
    tool: str
    arguments: dict[str, Any]
    #: "call" (default): a tool call with these arguments (asked for from ``task`` when missing);
    #: "program": the code path computes ``task`` (a program in the sandbox; ``tool`` is python_code)
    kind: NotRequired[str]


class ToolOutcome(TypedDict):
    step_id: str
    task: str
    tool: str
    arguments: dict[str, Any] | str
    output: str
    ok: bool
    duration_s: float


def merge_results(left: dict[str, ToolOutcome] | None, right: dict[str, ToolOutcome] | None) -> dict[str, ToolOutcome]:
    """Reducer: concurrent tool nodes each add their own outcome."""
    return {**(left or {}), **(right or {})}


class PlanExecuteState(TypedDict, total=False):
    messages: list[Message]
    session_id: str | None
    user_id: str
    question: str
    plan: list[PlanStep]  # this round's plan
    selected: list[PlanStep]  # this round's validated calls
    tools_used: Annotated[list[str], operator.add]
    tool_results: Annotated[dict[str, ToolOutcome], merge_results]  # step id -> outcome, all rounds
    draft: str
    decomposed: bool  # the plan is the request's independent parts, one step each (no planning call)
    lookup_draft: str  # decomposed: the model's draft of the looked-up parts (what verification checks)
    final_output: str
    verified: bool
    feedback: str  # why the last verification failed
    iteration: int  # planning rounds started
    replans: int  # loops back from verification to planning


class ToolTask(TypedDict):
    """What ``Send`` hands to one ``execute_tool`` node."""

    step: PlanStep


@dataclass
class RunContext:
    """Per-run dependencies (LangGraph ``context``); not part of the state."""

    llm: CountingLLM
    tool_ctx: ToolContext
    tools: dict[str, Tool]
    max_replans: int = 3
    max_parallel_tools: int = 4
    sources: list[dict[str, Any]] = field(default_factory=list)
    steps: list[AgentStep] = field(default_factory=list)

    def new_step(self, **fields: Any) -> AgentStep:
        step = AgentStep(index=len(self.steps), **fields)
        self.steps.append(step)
        return step
