"""One chat-completion run: resolve model and mode, then produce events.

``ChatRun.prepare()`` does every check that can fail fast (model, mode, limits, rate limit,
conversation ownership) so the client gets a proper HTTP status; the rate limit comes before
anything that costs work or leaves state (a ``"new"`` conversation, routing). ``ChatRun.events()`` yields
the run's events (agent meta, steps, text deltas, tool calls, sources, finish) whether the
answer comes from plain chat, RAG-grounded chat or an agent; the renderers in
``backend.chat.render`` turn them into a JSON body or SSE frames.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from backend.chat.fabricated_output import ClaimGuard
from backend.chat.messages import last_user_text, new_turn, normalise_messages
from backend.chat.modes import AGENT_MODES, MODE_ALIASES, resolve_model
from backend.chat.scheduled import ScheduledProvider
from backend.chat.schemas import ChatCompletionRequest
from backend.errors import BadRequestError, ContextLengthExceededError
from backend.llm.tool_calling import resolve_tool_choice
from backend.llm.types import GenerationParams, StreamEvent, ToolCall, Usage
from backend.offload import offload
from backend.ratelimit import enforce_user_limit
from backend.services import Principal, Services
from backend.storage.ids import require_id

log = logging.getLogger("backend.chat")


@dataclass
class AgentMeta:
    mode: str
    reason: str
    source: str = "heuristic"

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "reason": self.reason, "source": self.source}


@dataclass
class StepEvent:
    step: dict[str, Any]


@dataclass
class SourcesEvent:
    sources: list[dict[str, Any]]


@dataclass
class RunResult:
    content: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str = "stop"
    usage: Usage = field(default_factory=Usage)
    steps: list[dict[str, Any]] = field(default_factory=list)
    sources: list[dict[str, Any]] = field(default_factory=list)
    agent: AgentMeta | None = None
    llm_calls: int = 0


class ChatRun:
    def __init__(
        self,
        services: Services,
        principal: Principal,
        req: ChatCompletionRequest,
        *,
        conversation_id: str | None,
        idempotency_key: str | None,
        request_id: str | None,
        base_url: str,
        retry_count: int = 0,
    ) -> None:
        self.services = services
        self.settings = services.settings
        self.principal = principal
        self.req = req
        self.conversation_id = conversation_id
        self.idempotency_key = idempotency_key
        # the OpenAI SDK retries 408/409/429/5xx and lost connections, sending x-stainless-retry-count
        # but no Idempotency-Key: a retry is matched to the turn it repeats by the turn's content
        self.retry_count = retry_count
        self.turn_fingerprint: str | None = None
        self.request_id = request_id
        self.base_url = base_url.rstrip("/")
        self.id = "chatcmpl-" + secrets.token_hex(12)
        self.created = int(time.time())
        self.result = RunResult()
        self.mode = "chat"
        self.messages: list[dict[str, Any]] = []
        self.params = GenerationParams()
        self.rag_context: Any = None
        self.replayed: dict[str, Any] | None = None

    # ------------------------------------------------------------------ prepare
    async def prepare(self) -> None:
        req, settings = self.req, self.settings
        if req.n not in (None, 1):
            raise BadRequestError("Only n=1 is supported by this server.", param="n", code="unsupported_value")
        provider = self.services.provider
        base, mode = resolve_model(req.model, [provider.model_id])
        if req.mode:
            mode = MODE_ALIASES[req.mode]
        self.base_model = base
        self.messages = normalise_messages(req, settings)
        tools = [t.model_dump(exclude_none=True) for t in req.tools] if req.tools else None
        resolve_tool_choice(tools, req.tool_choice)  # 400 on a bad tool_choice, before any work
        max_tokens = req.max_completion_tokens or req.max_tokens or settings.default_max_tokens
        self.params = GenerationParams(
            temperature=req.temperature if req.temperature is not None else settings.temperature,
            top_p=req.top_p if req.top_p is not None else settings.top_p,
            top_k=settings.top_k,
            max_tokens=max_tokens,
            stop=req.stop,
            seed=req.seed,
            response_format=req.response_format,
            tools=tools,
            tool_choice=req.tool_choice,
            presence_penalty=req.presence_penalty,
            frequency_penalty=req.frequency_penalty,
        )
        # tokenising and the conversation files run off the event loop: a long prompt or a big
        # conversation delays this request only, never /health or other users
        await offload(sum(len(m.get("content") or "") for m in self.messages), self._check_context, max_tokens)
        if req.file_ids:
            for fid in req.file_ids:
                require_id(fid, "file", what="document")
        # the rate limit before any work or state: no routing (the router's LLM call takes a model
        # slot), no "new" conversation left behind by a 429
        self._rate_limit()
        if self.conversation_id is not None:
            await asyncio.to_thread(self._open_conversation)
        # client tools or a JSON format mean the caller wants the model's raw output
        self.mode = "chat" if (tools or req.response_format) and mode == "auto" else mode
        if self.mode == "auto":
            self.mode, self.result.agent = await self._route()
        elif self.mode != "chat":
            self.result.agent = AgentMeta(self.mode, "requested by the caller", "override")

    def _open_conversation(self) -> None:
        if self.conversation_id == "new":
            conv = self.services.conversations.create(self.principal.user_id)
            self.conversation_id = conv["id"]
        else:
            require_id(self.conversation_id, "conv", what="conversation")
            self.services.conversations.get(self.principal.user_id, self.conversation_id)
        turn = json.dumps(new_turn(self.messages), sort_keys=True, ensure_ascii=False)
        self.turn_fingerprint = "auto-" + hashlib.sha256(turn.encode()).hexdigest()[:32]
        self.replayed = self.services.conversations.replay(self.principal.user_id, self.conversation_id, self._dedupe_key)

    @property
    def _dedupe_key(self) -> str | None:
        """The key that marks this request as a repeat: explicit, or the fingerprint on a retry."""
        if self.idempotency_key:
            return self.idempotency_key
        return self.turn_fingerprint if self.retry_count > 0 else None

    def _check_context(self, max_tokens: int) -> None:
        provider = self.services.provider
        window = provider.context_window
        if not window:
            return
        prompt_chars = sum(len(m.get("content") or "") for m in self.messages)
        if prompt_chars < 200_000:
            prompt_tokens = provider.count_tokens(" ".join(m.get("content") or "" for m in self.messages))
        else:
            prompt_tokens = prompt_chars // 3
        self.estimated_prompt_tokens = prompt_tokens
        if prompt_tokens + min(max_tokens, window // 2) > window:
            raise ContextLengthExceededError(
                f"This model's maximum context length is {window} tokens. However, your messages resulted in "
                f"{prompt_tokens} tokens (plus {max_tokens} for the completion). Please reduce the length of the messages.",
                param="messages",
            )

    async def _route(self) -> tuple[str, AgentMeta]:
        from backend.agents.router import route

        decision = route(last_user_text(self.messages), provider=self._scheduled(), use_llm=self.settings.router_use_llm)
        if inspect.isawaitable(decision):
            decision = await decision
        meta = AgentMeta(decision.mode, decision.reason, getattr(decision, "source", "heuristic"))
        return decision.mode, meta

    def _rate_limit(self) -> None:
        estimate = getattr(self, "estimated_prompt_tokens", 0)
        self.rate_headers: dict[str, str] = enforce_user_limit(self.services, self.principal, estimate)

    def _scheduled(self) -> ScheduledProvider:
        return ScheduledProvider(self.services, self.principal.user_id, self.result)

    @property
    def wants_documents(self) -> bool:
        return bool(self.req.file_ids) or bool(self.req.use_documents)

    # ------------------------------------------------------------------ run
    async def events(self) -> AsyncIterator[Any]:
        if self.result.agent is not None:
            yield self.result.agent
        if self.mode in AGENT_MODES:
            async for ev in self._agent_events():
                yield ev
        else:
            async for ev in self._chat_events():
                yield ev

    async def _chat_events(self) -> AsyncIterator[Any]:
        messages = self.messages
        if self.wants_documents:
            from backend.rag.context import build_rag_context

            self.rag_context = await build_rag_context(
                self.services, self.principal.user_id, last_user_text(messages), self.req.file_ids, self.settings.rag_top_k
            )
            messages = [{"role": "system", "content": self.rag_context.system_prompt}, *messages]
            self.result.sources = list(self.rag_context.sources)
        provider = self._scheduled()
        # a program with an invented ```output``` block is settled before it is shown (raw output
        # for callers that asked for tool calls or JSON stays untouched)
        guard = ClaimGuard() if not (self.params.tools or self.params.response_format) else None
        held: list[StreamEvent] = []
        if not self.req.stream and provider.supports_complete:  # one upstream round trip, no SSE parsing
            done = await provider.complete(messages, self.params)
            events = [StreamEvent(content=done.content, tool_calls=done.tool_calls or None),
                      StreamEvent(finish_reason=done.finish_reason, usage=done.usage)]
        else:
            events = provider.stream(messages, self.params)
        async for ev in _iterate(events):
            if guard is not None and ev.content:
                ev = StreamEvent(content=guard.feed(ev.content), tool_calls=ev.tool_calls,
                                 finish_reason=ev.finish_reason, usage=ev.usage)
            if guard is not None and (ev.finish_reason or ev.usage) and not ev.content and not ev.tool_calls:
                held.append(ev)  # the end waits until the reply is settled
                continue
            if guard is None or ev.content or ev.tool_calls or ev.finish_reason or ev.usage:
                self._absorb(ev)
                yield ev
        if guard is not None:
            async for ev in self._settle(guard):
                yield ev
        for ev in held:
            self._absorb(ev)
            yield ev
        if self.result.sources:
            yield SourcesEvent(self.result.sources)

    async def _settle(self, guard: ClaimGuard) -> AsyncIterator[Any]:
        """Run the programs whose output the reply claims (``backend.chat.fabricated_output``)."""
        from backend.agents.tools import run_tool
        from backend.tools.registry import available_tools

        tools = {n: t for n, t in available_tools(self.settings).items() if n == "python_code"}
        ctx = self._tool_ctx()

        async def run(program: str) -> Any:
            return await run_tool(tools, ctx, "python_code", {"code": program})

        rest, settled = await guard.settle(last_user_text(self.messages), run if tools else None)
        for i, (program, result) in enumerate(settled.runs):
            step = {
                "index": len(self.result.steps) + i, "thought": "Run the program from the reply to check its output.",
                "tool": "python_code", "input": program, "observation": result.output, "ok": result.ok,
                "duration_s": round(result.duration_s, 4), "kind": "tool",
            }
            self.result.steps.append(step)
            yield StepEvent(step)
        if rest:
            ev = StreamEvent(content=rest)
            self._absorb(ev)
            yield ev

    def _tool_ctx(self) -> Any:
        from backend.tools.base import ToolContext

        return ToolContext(
            user_id=self.principal.user_id,
            settings=self.settings,
            services=self.services,
            request_id=self.request_id,
            file_ids=self.req.file_ids,
        )

    async def _agent_events(self) -> AsyncIterator[Any]:
        from backend.agents.runner import run_agent

        ctx = self._tool_ctx()
        params = GenerationParams(**{**self.params.__dict__, "tools": None, "tool_choice": None})
        provider = self._scheduled()
        async for ev in run_agent(self.mode, self.messages, ctx, provider, params, self.settings):
            kind = type(ev).__name__
            if kind == "AgentStep":
                step = _step_dict(ev)
                self.result.steps.append(step)
                self.services.metrics.tool_calls.labels(step.get("tool") or "none", "ok" if step.get("ok", True) else "error").inc()
                if step.get("tool"):
                    self.services.audit.record(
                        "tool_call", user=self.principal.user_id, tool=step["tool"], ok=step.get("ok", True),
                        request_id=self.request_id,
                    )
                yield StepEvent(step)
            elif kind == "AnswerDelta":
                self.result.content += ev.text
                yield StreamEvent(content=ev.text)
            elif kind == "AgentDone":
                if not self.result.content and ev.content:
                    yield StreamEvent(content=ev.content)
                if ev.content:  # the agent's final answer is authoritative (deltas may include pre-tool text)
                    self.result.content = ev.content
                self.result.sources = list(getattr(ev, "sources", None) or [])
                if self.result.sources:
                    yield SourcesEvent(self.result.sources)
                usage = getattr(ev, "usage", None)
                if isinstance(usage, Usage) and usage.total_tokens:
                    self.result.usage = usage
                self.result.llm_calls = getattr(ev, "llm_calls", 0)
                self.result.finish_reason = "stop"
                yield StreamEvent(finish_reason="stop", usage=self.result.usage)

    def _absorb(self, ev: StreamEvent) -> None:
        if ev.content:
            self.result.content += ev.content
        if ev.tool_calls:
            self.result.tool_calls.extend(ev.tool_calls)
        if ev.finish_reason:
            self.result.finish_reason = ev.finish_reason
        if ev.usage:
            self.result.usage = ev.usage

    # ------------------------------------------------------------------ after
    def annotations(self) -> list[dict[str, Any]]:
        if self.rag_context is None or not hasattr(self.rag_context, "annotations"):
            return []
        try:
            return list(self.rag_context.annotations(self.result.content, self.base_url))
        except Exception:  # citations are an extra: never fail the answer for them
            log.warning("could not build annotations", exc_info=True)
            return []

    def reply_message(self) -> dict[str, Any]:
        msg: dict[str, Any] = {"role": "assistant", "content": self.result.content or None}
        if self.result.tool_calls:
            msg["tool_calls"] = [c.to_openai() for c in self.result.tool_calls]
        if self.result.agent is not None:
            msg["agent"] = {**self.result.agent.to_dict(), "steps": self.result.steps}
        if self.result.sources:
            msg["sources"] = self.result.sources
        return msg

    def finish(self, response_body: dict[str, Any] | None) -> None:
        """Record usage/metrics and append the exchange to the conversation (success only)."""
        usage = self.result.usage
        model_label = self.base_model
        self.services.metrics.tokens_in.labels(model_label, self.mode).inc(usage.prompt_tokens)
        self.services.metrics.tokens_out.labels(model_label, self.mode).inc(usage.completion_tokens)
        self.services.rate_limiter.record_tokens(self.principal.user_id, usage.total_tokens)
        if self.conversation_id:
            self.services.conversations.append_exchange(
                self.principal.user_id,
                self.conversation_id,
                new_turn(self.messages),
                self.reply_message(),
                idempotency_key=self.idempotency_key or self.turn_fingerprint,
                response=response_body,
                dedupe=self._dedupe_key is not None,
            )


async def _iterate(events: Any) -> AsyncIterator[StreamEvent]:
    """A list of events or an async stream of them, as one async stream."""
    if isinstance(events, list):
        for ev in events:
            yield ev
        return
    async for ev in events:
        yield ev


def _step_dict(step: Any) -> dict[str, Any]:
    if hasattr(step, "to_dict"):
        return step.to_dict()
    if hasattr(step, "__dataclass_fields__"):
        from dataclasses import asdict

        return asdict(step)
    return dict(step)
