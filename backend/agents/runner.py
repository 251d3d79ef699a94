"""The agents' entry point: ``run_agent`` streams steps as they happen, the answer, then ``AgentDone``.

    async for ev in run_agent("react", messages, ctx, provider, params, settings):
        AgentStep   -> a tool call (or plan / verification / format note) just finished; in "code"
                       mode each run of the program (tool python_code, input = the program)
        AnswerDelta -> a piece of the final answer text
        AgentDone   -> exactly once, last: the full answer, trace, sources, usage, LLM call count

Cancelling the consuming task (client disconnect) cancels the run at its current await:
the model call or the tool calls in flight.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TYPE_CHECKING, Any

from backend.agents.code import CODE_TOOL
from backend.agents.events import AgentDone, AgentEvent, AgentStep, AnswerDelta
from backend.agents.llm import CountingLLM
from backend.agents.messages import last_user_text
from backend.agents.react import ReActAgent, Style
from backend.agents.router import question_pieces, tool_categories
from backend.agents.tools import relevant_tools, select_tools
from backend.errors import BadRequestError
from backend.llm.base import LLMProvider
from backend.llm.types import GenerationParams, Message
from backend.modes import AGENT_MODES, Mode
from backend.tools.base import Tool, ToolContext

if TYPE_CHECKING:
    from langchain_core.runnables import RunnableConfig

    from backend.settings import Settings

log = logging.getLogger("backend.agents.runner")

ANSWER_CHUNK_CHARS = 24


async def run_agent(
    mode: str,
    messages: list[Message],
    ctx: ToolContext,
    provider: LLMProvider,
    params: GenerationParams,
    settings: Settings,
    *,
    tool_names: list[str] | None = None,
    tools: dict[str, Tool] | None = None,
    session_id: str | None = None,
    style: Style | None = None,
    narrow_tools: bool = True,
) -> AsyncIterator[AgentEvent]:
    """Run the ReAct, plan-and-execute or code agent over ``messages``; see the module docstring.

    ``params`` are the request's sampling settings (temperature, max_tokens, seed, stop...);
    its tools/tool_choice/response_format are ignored: the agents use the server's tools.
    ``tool_names`` restricts the registry's tools (default: all of them); ``tools`` replaces them.
    With ``narrow_tools`` only the tools the question's keywords point at are offered (all when unclear).
    """
    if mode not in AGENT_MODES:
        raise ValueError(f"run_agent mode must be one of {sorted(AGENT_MODES)}, not {mode!r}")
    if not last_user_text(messages).strip():
        raise BadRequestError("The agent needs a user message with text.", param="messages")
    llm = CountingLLM(provider, params)
    tools = dict(tools) if tools is not None else select_tools(tool_names, settings, ctx.mcp)
    query = last_user_text(messages)
    if mode == Mode.CODE:
        python_tool = tools.get(CODE_TOOL)
        if python_tool is not None:
            async for ev in _run_code(messages, ctx, llm, python_tool, tools):
                yield ev
            return
        # no sandbox here (python_code unavailable): the ReAct agent answers with the other tools
        log.info("code mode without python_code (no sandbox here): using the ReAct agent")
        mode = Mode.REACT
    if narrow_tools:
        tools = relevant_tools(query, tools)
    if mode == Mode.REACT:
        agent = ReActAgent(
            llm,
            ctx,
            tools,
            max_iterations=settings.agent_max_iterations,
            style=style or settings.agent_tool_style,
            require_first_call=bool(tool_categories(query)),
            answer_from_result=one_computation(query),
        )
        run = agent.run(messages)
        async with contextlib.aclosing(run):
            async for ev in run:
                yield ev
        yield AgentDone(
            content=agent.final,
            steps=agent.get_trace(),
            mode=Mode.REACT,
            reason=agent.stop_reason,
            sources=agent.sources,
            usage=llm.usage,
            llm_calls=llm.calls,
        )
        return

    async for ev in _run_plan_execute(messages, ctx, llm, tools, settings, session_id):
        yield ev


#: tool categories that compute (their result is the answer to a one-step question)
COMPUTING_CATEGORIES = frozenset({"math", "code", "data"})


def one_computation(query: str) -> bool:
    """A single computation (no lookup, not several parts): its first exact result is the answer."""
    cats = tool_categories(query)
    return bool(cats) and cats <= COMPUTING_CATEGORIES and len(question_pieces(query)) == 1


async def _run_code(
    messages: list[Message], ctx: ToolContext, llm: CountingLLM, python_tool: Tool, tools: dict[str, Tool]
) -> AsyncIterator[AgentEvent]:
    from backend.agents.code import CodeAgent

    # the program may call the other enabled tools the channel serves (sql, documents, math)
    agent = CodeAgent(llm, ctx, python_tool, channel_tools=tools)
    run = agent.run(messages)
    async with contextlib.aclosing(run):
        async for ev in run:
            yield ev
    yield AgentDone(
        content=agent.final,
        steps=list(agent.steps),
        mode=Mode.CODE,
        reason=agent.stop_reason,
        usage=llm.usage,
        llm_calls=llm.calls,
    )


async def _run_plan_execute(
    messages: list[Message],
    ctx: ToolContext,
    llm: CountingLLM,
    tools: dict[str, Any],
    settings: Settings,
    session_id: str | None,
) -> AsyncIterator[AgentEvent]:
    from backend.agents.plan_execute.graph import compiled_graph
    from backend.agents.plan_execute.state import RunContext

    rc = RunContext(
        llm=llm,
        tool_ctx=ctx,
        tools=tools,
        max_replans=settings.plan_max_replans,
        max_parallel_tools=settings.plan_max_parallel_tools,
    )
    state: dict[str, Any] = {
        "messages": messages,
        "session_id": session_id,
        "user_id": ctx.user_id,
        "question": last_user_text(messages),
        "tools_used": [],
        "tool_results": {},
        "iteration": 0,
        "replans": 0,
    }
    final: dict[str, Any] = state
    config: RunnableConfig = {"recursion_limit": 8 * (settings.plan_max_replans + 1) + 8}
    # LangGraph annotates astream as an AsyncIterator of ``dict | Any``; it is an async generator and,
    # with a list of stream modes, it yields ``(mode, chunk)`` pairs
    stream: AsyncGenerator[tuple[str, Any], None] = compiled_graph().astream(  # type: ignore[assignment]
        state, config, context=rc, stream_mode=["custom", "values"]
    )
    async with contextlib.aclosing(stream):
        async for kind, chunk in stream:
            if kind == "custom" and isinstance(chunk, AgentStep):
                yield chunk
            elif kind == "values":
                final = chunk
    content = final.get("final_output", "")
    for i in range(0, len(content), ANSWER_CHUNK_CHARS):
        yield AnswerDelta(content[i : i + ANSWER_CHUNK_CHARS])
    verified = bool(final.get("verified"))
    yield AgentDone(
        content=content,
        steps=list(rc.steps),
        mode=Mode.PLAN_EXECUTE,
        reason="verified" if verified else "unverified",
        sources=rc.sources,
        usage=llm.usage,
        llm_calls=llm.calls,
        verified=verified,
    )
