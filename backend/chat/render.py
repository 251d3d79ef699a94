"""Turn a ``ChatRun``'s events into OpenAI's non-stream body or SSE chunks.

Streaming runs the pipeline in a producer task feeding a queue, so the response can send SSE
comment keep-alives while a request waits for the model, and so a client disconnect cancels
the producer (and with it the generation and any tool subprocess) at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from backend.chat.pipeline import AgentMeta, ChatRun, SourcesEvent, StepEvent
from backend.errors import APIError, error_body
from backend.llm.types import StreamEvent

log = logging.getLogger("backend.chat.render")
_END = object()
KEEPALIVE = b": keep-alive\n\n"  #: an SSE comment frame that keeps proxies and clients waiting


def _base(run: ChatRun, obj: str) -> dict[str, Any]:
    return {"id": run.id, "object": obj, "created": run.created, "model": run.req.model}


def _extras(run: ChatRun) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if run.conversation_id:
        out["conversation_id"] = run.conversation_id
    if run.result.agent is not None:
        out["agent"] = {**run.result.agent.to_dict(), "steps": run.result.steps, "llm_calls": run.result.llm_calls}
    if run.result.sources:
        out["sources"] = run.result.sources
    return out


def completion_body(run: ChatRun) -> dict[str, Any]:
    r = run.result
    message: dict[str, Any] = {"role": "assistant", "content": r.content if (r.content or not r.tool_calls) else None, "refusal": None}
    if r.tool_calls:
        message["tool_calls"] = [c.to_openai() for c in r.tool_calls]
    annotations = run.annotations()
    if annotations:
        message["annotations"] = annotations
    return {
        **_base(run, "chat.completion"),
        "choices": [{"index": 0, "message": message, "finish_reason": r.finish_reason, "logprobs": None}],
        "usage": r.usage.to_openai(),
        **_extras(run),
    }


async def run_to_completion(run: ChatRun) -> dict[str, Any]:
    async for _ in run.events():
        pass
    return completion_body(run)


# ---------------------------------------------------------------------- streaming
def _frame(obj: dict[str, Any]) -> bytes:
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
    def __init__(self, run: ChatRun) -> None:
        self.run = run
        self.started = False
        self.tool_index = 0

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> bytes:
        body = {
            **_base(self.run, "chat.completion.chunk"),
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
            **extra,
        }
        if self.run.conversation_id:
            body["conversation_id"] = self.run.conversation_id
        return _frame(body)

    def start(self, agent: AgentMeta | None = None) -> bytes:
        self.started = True
        extra = {"agent": agent.to_dict()} if agent else {}
        return self.chunk({"role": "assistant", "content": ""}, **extra)

    def render(self, ev: Any) -> list[bytes]:
        out: list[bytes] = []
        if not self.started:
            out.append(self.start(ev if isinstance(ev, AgentMeta) else None))
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
        return out

    def finish(self) -> list[bytes]:
        r = self.run.result
        out = [] if self.started else [self.start()]
        extra: dict[str, Any] = {}
        annotations = self.run.annotations()
        if annotations:
            extra["annotations"] = annotations
        out.append(self.chunk({}, r.finish_reason, **extra))
        opts = self.run.req.stream_options
        if opts is not None and opts.include_usage:
            usage = {**_base(self.run, "chat.completion.chunk"), "choices": [], "usage": r.usage.to_openai()}
            out.append(_frame(usage))
        return out


class EventPump:
    """Runs ``run.events()`` in a task; the first event (or error) can be awaited before responding."""

    END = _END  #: queued after the last event

    def __init__(self, run: ChatRun) -> None:
        self.run = run
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.task = asyncio.create_task(self._produce())

    async def _produce(self) -> None:
        try:
            async for ev in self.run.events():
                await self.queue.put(ev)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # delivered to the consumer
            await self.queue.put(exc)
        await self.queue.put(_END)

    async def get(self, timeout: float | None) -> Any:
        return await asyncio.wait_for(self.queue.get(), timeout=timeout)

    async def events(self, first: Any, keepalive_s: float) -> AsyncIterator[Any]:
        """``first`` (if any), then the queued events up to ``END``; ``KEEPALIVE`` whenever none
        came for ``keepalive_s``. A producer's exception arrives as an event (the SSE bodies stop there)."""
        ev = first
        while True:
            if ev is None:
                try:
                    ev = await self.get(keepalive_s)
                except TimeoutError:
                    yield KEEPALIVE
                    continue
            if ev is _END:
                return
            yield ev
            ev = None

    async def cancel(self) -> None:
        if not self.task.done():
            self.task.cancel()
            try:
                await self.task
            except (asyncio.CancelledError, Exception):
                pass


def error_frame(exc: BaseException) -> bytes:
    if isinstance(exc, APIError):
        return _frame(exc.body())
    log.error("stream failed", exc_info=exc)
    return _frame(error_body("The server had an error while generating the response.", "server_error"))


async def sse_body(run: ChatRun, pump: EventPump, first: Any, keepalive_s: float) -> AsyncIterator[bytes]:
    writer = ChunkWriter(run)
    ok = False
    try:
        async for ev in pump.events(first, keepalive_s):
            if ev is KEEPALIVE:
                yield ev
            elif isinstance(ev, BaseException):
                yield error_frame(ev)
                break
            else:
                for frame in writer.render(ev):
                    yield frame
        else:
            ok = True
        if ok:
            for frame in writer.finish():
                yield frame
            try:
                await asyncio.to_thread(run.finish, None)  # the conversation append: off the event loop
            except Exception as exc:  # storage full etc.: tell the client, the answer was delivered
                yield error_frame(exc)
        yield b"data: [DONE]\n\n"
    finally:
        await pump.cancel()
