"""Step 1 of a chat request: ``prepare`` checks everything that can fail fast and returns a frozen ``ChatPlan``.

The order matters: cheap validation (model, mode, messages, tools, context length), then the
per-user rate limit, and only then anything that costs work or leaves state (a ``"new"``
conversation, the router's LLM classification, which takes a model slot).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field, replace
from typing import Any

from backend.chat.events import AgentMeta
from backend.chat.messages import last_user_text, new_turn, normalise_messages
from backend.chat.schemas import ChatCompletionRequest, stop_sequences
from backend.errors import BadRequestError, ContextLengthExceededError
from backend.llm.base import LLMProvider
from backend.llm.scheduled import CallCounter
from backend.llm.tool_calling import resolve_tool_choice
from backend.llm.types import GenerationParams, Message, message_text
from backend.modes import Mode, parse_model_id
from backend.offload import offload
from backend.ratelimit import enforce_user_limit
from backend.services import Principal, Services
from backend.storage.ids import require_id


@dataclass(frozen=True)
class RequestInfo:
    """What the route read from the HTTP request besides the body."""

    request_id: str | None = None
    base_url: str = ""
    conversation_id: str | None = None  #: an id, "new", or None (nothing is stored)
    idempotency_key: str | None = None
    #: the OpenAI SDK retries 408/409/429/5xx and lost connections, sending x-stainless-retry-count
    #: but no Idempotency-Key: a retry is matched to the turn it repeats by the turn's content
    retry_count: int = 0


@dataclass(frozen=True)
class Conversation:
    """Where the exchange is recorded, and how a repeat of it is recognised."""

    id: str
    record_key: str  #: stored with the exchange (explicit key, else the turn's fingerprint)
    dedupe: bool  #: this request may repeat an applied one (explicit key, or an SDK retry)


@dataclass(frozen=True)
class ChatPlan:
    id: str
    created: int
    user_id: str
    model: str  #: as requested (echoed in responses)
    base_model: str
    mode: Mode  #: never AUTO: the router has decided
    agent: AgentMeta | None  #: why an agent answers (None for plain chat the caller asked for)
    messages: list[Message]
    params: GenerationParams
    stream: bool
    include_usage: bool
    file_ids: list[str] | None
    use_documents: bool
    request_id: str | None
    base_url: str
    rate_headers: dict[str, str] = field(default_factory=dict)
    conversation: Conversation | None = None
    replayed: dict[str, Any] | None = None  #: the stored answer when this request repeats an applied one
    routing_calls: int = 0  #: model calls the router made
    started: float = 0.0  #: time.monotonic() when prepare began

    @property
    def wants_documents(self) -> bool:
        return bool(self.file_ids) or self.use_documents

    @property
    def raw_output(self) -> bool:
        """Client tools or a JSON format: the caller wants the model's output untouched."""
        return bool(self.params.tools or self.params.response_format)

    def headers(self) -> dict[str, str]:
        out = dict(self.rate_headers)
        if self.conversation is not None:
            out["X-Conversation-Id"] = self.conversation.id
        return out


def _params(req: ChatCompletionRequest, services: Services, tools: list[dict[str, Any]] | None) -> GenerationParams:
    settings = services.settings
    return GenerationParams(
        temperature=req.temperature if req.temperature is not None else settings.temperature,
        top_p=req.top_p if req.top_p is not None else settings.top_p,
        top_k=settings.top_k,
        max_tokens=req.max_completion_tokens or req.max_tokens or settings.default_max_tokens,
        stop=stop_sequences(req.stop),
        seed=req.seed,
        response_format=req.response_format,
        tools=tools,
        tool_choice=req.tool_choice,
        presence_penalty=req.presence_penalty,
        frequency_penalty=req.frequency_penalty,
    )


def check_context(provider: LLMProvider, messages: list[Message], max_tokens: int) -> int:
    """The prompt's token estimate; a 400 when it and the completion cannot fit the context window."""
    prompt_chars = sum(len(m.get("content") or "") for m in messages)
    if prompt_chars < 200_000:
        prompt_tokens = provider.count_tokens(" ".join(m.get("content") or "" for m in messages))
    else:
        prompt_tokens = prompt_chars // 3
    window = provider.context_window
    if window and prompt_tokens + min(max_tokens, window // 2) > window:
        raise ContextLengthExceededError(
            f"This model's maximum context length is {window} tokens. However, your messages resulted in "
            f"{prompt_tokens} tokens (plus {max_tokens} for the completion). Please reduce the length of the messages.",
            param="messages",
        )
    return prompt_tokens


def _open_conversation(
    services: Services, user_id: str, info: RequestInfo, messages: list[Message]
) -> tuple[Conversation, dict[str, Any], dict[str, Any] | None]:
    """The conversation (created for "new"), its stored settings, and the replay of a repeat."""
    store = services.conversations
    if info.conversation_id == "new":
        conv = store.create(user_id)
    else:
        conv = store.get(user_id, require_id(info.conversation_id or "", "conv", what="conversation"))
    turn = json.dumps(new_turn(messages), sort_keys=True, ensure_ascii=False)
    fingerprint = "auto-" + hashlib.sha256(turn.encode()).hexdigest()[:32]
    dedupe_key = info.idempotency_key or (fingerprint if info.retry_count > 0 else None)
    conversation = Conversation(conv["id"], info.idempotency_key or fingerprint, dedupe_key is not None)
    replayed = store.replay(user_id, conv["id"], dedupe_key) or None  # {}: a stream's, nothing to answer with
    settings = conv.get("settings")
    return conversation, settings if isinstance(settings, dict) else {}, replayed


def _apply_settings(
    stored: dict[str, Any], req: ChatCompletionRequest, messages: list[Message], params: GenerationParams
) -> tuple[list[Message], GenerationParams]:
    """A conversation's stored ``system_prompt`` (when the request has no system message) and
    ``temperature`` (when the request gives none)."""
    prompt = stored.get("system_prompt")
    if isinstance(prompt, str) and prompt.strip() and not any(m["role"] == "system" for m in messages):
        messages = [{"role": "system", "content": prompt}, *messages]
    temperature = stored.get("temperature")
    if req.temperature is None and isinstance(temperature, (int, float)) and not isinstance(temperature, bool):
        params = replace(params, temperature=float(temperature))
    return messages, params


async def _route(services: Services, user_id: str, messages: list[Message]) -> tuple[AgentMeta, int]:
    from backend.agents.router import route

    counter = CallCounter()
    provider = services.scheduled_provider(user_id, counter)
    decision = await route(last_user_text(messages), provider=provider, use_llm=services.settings.router_use_llm)
    return AgentMeta(decision.mode, decision.reason, decision.source), counter.calls


async def prepare(services: Services, principal: Principal, req: ChatCompletionRequest, info: RequestInfo) -> ChatPlan:
    """Every check that can fail fast, so the client gets a proper HTTP status; see the module docstring."""
    started = time.monotonic()
    if req.n not in (None, 1):
        raise BadRequestError("Only n=1 is supported by this server.", param="n", code="unsupported_value")
    settings, provider = services.settings, services.provider
    base, mode = parse_model_id(req.model, [provider.model_id])
    if req.mode:
        mode = Mode.from_name(req.mode) or mode
    messages = normalise_messages(req, settings)
    tools = [t.model_dump(exclude_none=True) for t in req.tools] if req.tools else None
    resolve_tool_choice(tools, req.tool_choice)  # 400 on a bad tool_choice, before any work
    params = _params(req, services, tools)
    max_tokens = params.max_tokens or settings.default_max_tokens
    # tokenising and the conversation files run off the event loop: a long prompt or a big
    # conversation delays this request only, never /health or other users
    prompt_chars = sum(len(message_text(m.get("content"), strict=False)) for m in messages)
    estimate = await offload(prompt_chars, check_context, provider, messages, max_tokens)
    for fid in req.file_ids or []:
        require_id(fid, "file", what="document")
    # the rate limit before any work or state: no routing (the router's LLM call takes a model
    # slot), no "new" conversation left behind by a 429
    rate_headers = enforce_user_limit(services, principal, estimate)
    conversation, replayed = None, None
    if info.conversation_id is not None:
        conversation, stored, replayed = await asyncio.to_thread(
            _open_conversation, services, principal.user_id, info, messages
        )
        with_settings, params = _apply_settings(stored, req, messages, params)
        if with_settings is not messages:
            messages = with_settings
            await asyncio.to_thread(check_context, provider, messages, max_tokens)
    if (tools or req.response_format) and mode is Mode.AUTO:
        mode = Mode.CHAT  # client tools or a JSON format mean the caller wants the model's raw output
    agent: AgentMeta | None = None
    routing_calls = 0
    if mode is Mode.AUTO and replayed is None:
        agent, routing_calls = await _route(services, principal.user_id, messages)
        mode = agent.mode
    elif mode is Mode.AUTO:
        mode = Mode.CHAT  # a replay is answered from the store: no routing
    elif mode is not Mode.CHAT:
        agent = AgentMeta(mode, "requested by the caller", "override")
    if agent is not None and mode.is_agent:
        agent = replace(agent, model=services.agent_model_id)
    return ChatPlan(
        id="chatcmpl-" + secrets.token_hex(12),
        created=int(time.time()),
        user_id=principal.user_id,
        model=req.model,
        base_model=base,
        mode=mode,
        agent=agent,
        messages=messages,
        params=params,
        stream=bool(req.stream),
        include_usage=bool(req.stream_options is not None and req.stream_options.include_usage),
        file_ids=req.file_ids,
        use_documents=bool(req.use_documents),
        request_id=info.request_id,
        base_url=info.base_url.rstrip("/"),
        rate_headers=rate_headers,
        conversation=conversation,
        replayed=replayed,
        routing_calls=routing_calls,
        started=started,
    )
