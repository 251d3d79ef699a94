"""What a chat run yields (``backend.chat.run``): a typed union the renderers match on.

    AgentMeta     -> which mode answers and why (first, when an agent or the router decided)
    StepEvent     -> an agent step (tool call, plan, check) just finished
    StreamEvent   -> answer text and/or client tool calls (backend.llm.types)
    SourcesEvent  -> the passages or pages the answer used
    ChatDone      -> exactly once, last: the whole outcome (``ChatResult``)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from backend.llm.types import StreamEvent, ToolCall, Usage
from backend.modes import Mode


@dataclass(frozen=True)
class AgentMeta:
    mode: Mode
    reason: str
    source: str = "heuristic"  # heuristic | llm | override
    model: str | None = None  #: the model the agent's steps run on (backend.llm.agent_model)

    def to_dict(self) -> dict[str, Any]:
        out = {"mode": self.mode.value, "reason": self.reason, "source": self.source}
        if self.model:
            out["model"] = self.model
        return out


@dataclass(frozen=True)
class StepEvent:
    step: dict[str, Any]


@dataclass(frozen=True)
class SourcesEvent:
    sources: list[dict[str, Any]]


@dataclass
class ChatResult:
    """The outcome of one run: what the JSON body, the last SSE chunks and the record need."""

    content: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str = "stop"
    usage: Usage = field(default_factory=Usage)
    steps: list[dict[str, Any]] = field(default_factory=list)
    sources: list[dict[str, Any]] = field(default_factory=list)
    annotations: list[dict[str, Any]] = field(default_factory=list)  #: url_citation for [n] markers
    agent: AgentMeta | None = None
    llm_calls: int = 0
    elapsed_ms: int = 0


@dataclass(frozen=True)
class ChatDone:
    result: ChatResult


ChatEvent = AgentMeta | StepEvent | StreamEvent | SourcesEvent | ChatDone

__all__ = ["AgentMeta", "ChatDone", "ChatEvent", "ChatResult", "SourcesEvent", "StepEvent", "StreamEvent"]
