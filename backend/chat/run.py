"""Step 2 of a chat request: ``run(plan, services)`` yields typed ``ChatEvent``s, ``ChatDone`` last.

The answer comes from plain chat, RAG-grounded chat or an agent; every model call goes through
one ``ScheduledProvider`` (fair slot, timeouts) whose ``CallCounter`` is the request's count.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace

from backend.agents.events import AgentDone, AgentStep, AnswerDelta
from backend.chat.events import ChatDone, ChatEvent, ChatResult, SourcesEvent, StepEvent
from backend.chat.fabricated_output import ClaimGuard
from backend.chat.messages import last_user_text
from backend.chat.plan import ChatPlan
from backend.llm.scheduled import CallCounter, ScheduledProvider
from backend.llm.types import StreamEvent
from backend.rag.context import RagContext
from backend.services import Services
from backend.tools.base import ToolResult

log = logging.getLogger("backend.chat")


async def run(plan: ChatPlan, services: Services) -> AsyncIterator[ChatEvent]:
    """The run's events; cancelling the consumer cancels the generation and any tool in flight."""
    result = ChatResult(agent=plan.agent)
    counter = CallCounter(plan.routing_calls)
    provider = services.scheduled_provider(plan.user_id, counter)
    if plan.agent is not None:
        yield plan.agent
    if plan.mode.is_agent:
        agent_provider = services.scheduled_provider(plan.user_id, counter, agent=True)
        async for ev in _agent(plan, services, agent_provider, result):
            yield ev
    else:
        async for ev in _chat(plan, services, provider, result):
            yield ev
    result.llm_calls = counter.calls
    result.elapsed_ms = int((time.monotonic() - plan.started) * 1000)
    yield ChatDone(result)


def _absorb(result: ChatResult, ev: StreamEvent) -> None:
    if ev.content:
        result.content += ev.content
    if ev.tool_calls:
        result.tool_calls.extend(ev.tool_calls)
    if ev.finish_reason:
        result.finish_reason = ev.finish_reason
    if ev.usage:
        result.usage = ev.usage


async def _model_events(plan: ChatPlan, provider: ScheduledProvider, messages: list[dict[str, object]]) -> AsyncIterator[StreamEvent]:
    if not plan.stream and provider.supports_complete:  # one upstream round trip, no SSE parsing
        done = await provider.complete(messages, plan.params)
        yield StreamEvent(content=done.content, tool_calls=done.tool_calls or None)
        yield StreamEvent(finish_reason=done.finish_reason, usage=done.usage)
        return
    async for ev in provider.stream(messages, plan.params):
        yield ev


async def _chat(
    plan: ChatPlan, services: Services, provider: ScheduledProvider, result: ChatResult
) -> AsyncIterator[ChatEvent]:
    messages = plan.messages
    rag: RagContext | None = None
    if plan.wants_documents:
        from backend.rag.context import build_rag_context

        rag = await build_rag_context(
            await services.rag(), plan.user_id, last_user_text(messages), plan.file_ids, services.settings.rag_top_k
        )
        messages = [{"role": "system", "content": rag.system_prompt}, *messages]
        result.sources = list(rag.sources)
    # a program with an invented ```output``` block is settled before it is shown (raw output
    # for callers that asked for tool calls or JSON stays untouched)
    guard = None if plan.raw_output else ClaimGuard()
    held: list[StreamEvent] = []
    async for ev in _model_events(plan, provider, messages):
        if guard is not None and ev.content:
            ev = replace(ev, content=guard.feed(ev.content))
        if guard is not None and (ev.finish_reason or ev.usage) and not ev.content and not ev.tool_calls:
            held.append(ev)  # the end waits until the reply is settled
            continue
        if guard is None or ev.content or ev.tool_calls or ev.finish_reason or ev.usage:
            _absorb(result, ev)
            yield ev
    if guard is not None:
        async for out in _settle(plan, services, guard, result):
            yield out
    for ev in held:
        _absorb(result, ev)
        yield ev
    if result.sources:
        yield SourcesEvent(result.sources)
    if rag is not None:
        try:
            result.annotations = rag.annotations(result.content, plan.base_url)
        except Exception:  # citations are an extra: never fail the answer for them
            log.warning("could not build annotations", exc_info=True)


async def _settle(plan: ChatPlan, services: Services, guard: ClaimGuard, result: ChatResult) -> AsyncIterator[ChatEvent]:
    """Run the programs whose output the reply claims (``backend.chat.fabricated_output``)."""
    from backend.agents.tools import run_tool
    from backend.tools.registry import available_tools

    tools = {n: t for n, t in available_tools(services.settings).items() if n == "python_code"}
    ctx = services.tool_context(plan.user_id, request_id=plan.request_id, file_ids=plan.file_ids)

    async def run_program(program: str) -> ToolResult:
        return await run_tool(tools, ctx, "python_code", {"code": program})

    rest, settled = await guard.settle(last_user_text(plan.messages), run_program if tools else None)
    for i, (program, outcome) in enumerate(settled.runs):
        step = {
            "index": len(result.steps) + i, "thought": "Run the program from the reply to check its output.",
            "tool": "python_code", "input": program, "observation": outcome.output, "ok": outcome.ok,
            "duration_s": round(outcome.duration_s, 4), "kind": "tool",
        }
        result.steps.append(step)
        yield StepEvent(step)
    if rest:
        ev = StreamEvent(content=rest)
        _absorb(result, ev)
        yield ev


async def _agent(
    plan: ChatPlan, services: Services, provider: ScheduledProvider, result: ChatResult
) -> AsyncIterator[ChatEvent]:
    from backend.agents.runner import run_agent

    ctx = services.tool_context(plan.user_id, request_id=plan.request_id, file_ids=plan.file_ids)
    params = replace(plan.params, tools=None, tool_choice=None)
    async for ev in run_agent(plan.mode, plan.messages, ctx, provider, params, services.settings):
        if isinstance(ev, AgentStep):
            step = ev.to_dict()
            result.steps.append(step)
            services.metrics.tool_calls.labels(ev.tool or "none", "ok" if ev.ok else "error").inc()
            if ev.tool:
                services.audit.record("tool_call", user=plan.user_id, tool=ev.tool, ok=ev.ok, request_id=plan.request_id)
            yield StepEvent(step)
        elif isinstance(ev, AnswerDelta):
            result.content += ev.text
            yield StreamEvent(content=ev.text)
        elif isinstance(ev, AgentDone):
            if not result.content and ev.content:
                yield StreamEvent(content=ev.content)
            if ev.content:  # the agent's final answer is authoritative (deltas may include pre-tool text)
                result.content = ev.content
            result.sources = list(ev.sources)
            if result.sources:
                yield SourcesEvent(result.sources)
            if ev.usage.total_tokens:
                result.usage = ev.usage
            result.finish_reason = "stop"
            yield StreamEvent(finish_reason="stop", usage=result.usage)
