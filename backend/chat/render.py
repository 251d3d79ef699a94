"""Step 3 of a chat request: a run's events as OpenAI's JSON body or SSE chunks. Pure: no I/O, no state
beyond the chunk writer's counters."""

from __future__ import annotations

import json
from typing import Any

from backend.chat.events import AgentMeta, ChatDone, ChatEvent, ChatResult, SourcesEvent, StepEvent
from backend.chat.plan import ChatPlan
from backend.llm.types import StreamEvent


def _base(plan: ChatPlan, obj: str) -> dict[str, Any]:
    return {"id": plan.id, "object": obj, "created": plan.created, "model": plan.model}


def _extensions(plan: ChatPlan, result: ChatResult) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if plan.conversation is not None:
        out["conversation_id"] = plan.conversation.id
    if result.agent is not None:
        out["agent"] = {**result.agent.to_dict(), "steps": result.steps, "llm_calls": result.llm_calls}
    if result.sources:
        out["sources"] = result.sources
    return out


def completion_body(plan: ChatPlan, result: ChatResult) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": result.content if (result.content or not result.tool_calls) else None,
        "refusal": None,
    }
    if result.tool_calls:
        message["tool_calls"] = [c.to_openai() for c in result.tool_calls]
    if result.annotations:
        message["annotations"] = result.annotations
    return {
        **_base(plan, "chat.completion"),
        "choices": [{"index": 0, "message": message, "finish_reason": result.finish_reason, "logprobs": None}],
        "usage": result.usage.to_openai(),
        **_extensions(plan, result),
    }


def reply_message(result: ChatResult) -> dict[str, Any]:
    """The assistant message as a conversation stores it (``meta`` is added by ``record``)."""
    msg: dict[str, Any] = {"role": "assistant", "content": result.content or None}
    if result.tool_calls:
        msg["tool_calls"] = [c.to_openai() for c in result.tool_calls]
    if result.agent is not None:
        msg["agent"] = {**result.agent.to_dict(), "steps": result.steps}
    if result.sources:
        msg["sources"] = result.sources
    return msg


# ---------------------------------------------------------------------- streaming
def frame(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


def step_text(step: dict[str, Any]) -> str:
    lines = [f"Step {step.get('index', '?')}:"]
    if step.get("thought"):
        lines.append(f"Thought: {step['thought']}")
    if step.get("tool"):
        tool_input = step.get("input")
        rendered = tool_input if isinstance(tool_input, str) else json.dumps(tool_input, ensure_ascii=False)
        lines.append(f"Action: {step['tool']}({rendered})")
    if step.get("observation") is not None:
        lines.append(f"Observation: {step['observation']}")
    return "\n".join(lines) + "\n\n"


class ChunkWriter:
    """``chat.completion.chunk`` frames for each event; ``ChatDone`` ends the choice (and adds usage)."""

    def __init__(self, plan: ChatPlan) -> None:
        self.plan = plan
        self.started = False
        self.tool_index = 0

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> bytes:
        body = {
            **_base(self.plan, "chat.completion.chunk"),
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
            **extra,
        }
        if self.plan.conversation is not None:
            body["conversation_id"] = self.plan.conversation.id
        return frame(body)

    def _start(self, agent: AgentMeta | None = None) -> bytes:
        self.started = True
        if agent is not None:
            return self.chunk({"role": "assistant", "content": ""}, agent=agent.to_dict())
        return self.chunk({"role": "assistant", "content": ""})

    def render(self, ev: ChatEvent) -> list[bytes]:
        out: list[bytes] = []
        if not self.started:
            out.append(self._start(ev if isinstance(ev, AgentMeta) else None))
            if isinstance(ev, AgentMeta):
                return out
        if isinstance(ev, AgentMeta):
            out.append(self.chunk({}, agent=ev.to_dict()))
        elif isinstance(ev, StepEvent):
            text = step_text(ev.step)  # DeepSeek/llama.cpp read reasoning_content; vLLM/OpenRouter read reasoning
            out.append(self.chunk({"reasoning_content": text, "reasoning": text}, agent_step=ev.step))
        elif isinstance(ev, SourcesEvent):
            out.append(self.chunk({}, sources=ev.sources))
        elif isinstance(ev, StreamEvent):
            if ev.content:
                out.append(self.chunk({"content": ev.content}))
            for call in ev.tool_calls or []:
                i = self.tool_index
                self.tool_index += 1
                head = {"index": i, "id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""}}
                out.append(self.chunk({"tool_calls": [head]}))
                out.append(self.chunk({"tool_calls": [{"index": i, "function": {"arguments": call.arguments}}]}))
        elif isinstance(ev, ChatDone):
            out += self._finish(ev.result)
        return out

    def _finish(self, result: ChatResult) -> list[bytes]:
        extra: dict[str, Any] = {"annotations": result.annotations} if result.annotations else {}
        out = [self.chunk({}, result.finish_reason, **extra)]
        if self.plan.include_usage:
            usage = {**_base(self.plan, "chat.completion.chunk"), "choices": [], "usage": result.usage.to_openai()}
            out.append(frame(usage))
        return out
