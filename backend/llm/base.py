"""The provider interface.

A provider implements ``_stream_raw`` (text deltas, then a final event with ``finish_reason``
and ``usage``) and, optionally, native tool calling. ``stream``/``complete`` add what every
provider shares: ``tool_choice`` enforcement, text tool-call recovery and JSON-mode handling.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

from backend.errors import BadRequestError, UpstreamError
from backend.llm.tool_calling import (
    ToolChoice,
    forced_call_schema,
    looks_like_call_start,
    make_call,
    parse_tool_calls,
    resolve_tool_choice,
)
from backend.llm.types import Completion, GenerationParams, Message, StreamEvent, ToolCall, Usage


@dataclass(frozen=True)
class JsonConstraint:
    """Constrain the output to JSON; ``schema=None`` means any JSON object."""

    schema: dict[str, Any] | None = None


def json_constraint_from(response_format: dict[str, Any] | None) -> JsonConstraint | None:
    if not response_format:
        return None
    kind = response_format.get("type")
    if kind in (None, "text"):
        return None
    if kind == "json_object":
        return JsonConstraint(None)
    if kind == "json_schema":
        spec = response_format.get("json_schema") or {}
        schema = spec.get("schema")
        if not isinstance(schema, dict):
            raise BadRequestError(
                "response_format.json_schema.schema must be a JSON schema object.",
                param="response_format",
                code="invalid_value",
            )
        return JsonConstraint(schema)
    raise BadRequestError(
        f"Unsupported response_format type '{kind}'.", param="response_format", code="invalid_value"
    )


class LLMProvider(ABC):
    """Base class of the embedded, Ollama and OpenAI providers."""

    name: str = "provider"
    #: the upstream enforces tool_choice itself and returns structured tool calls
    native_tool_calls: bool = False
    #: how many generations may run at once (the fair scheduler uses it)
    parallel: int = 1
    #: ``_complete_raw`` is implemented: non-stream requests skip streaming overhead upstream
    supports_complete: bool = False
    #: ``_stream_text_raw`` is implemented (``/v1/completions``); ``supports_suffix``: with fill-in-the-middle
    supports_text_completion: bool = False
    supports_suffix: bool = False

    @property
    @abstractmethod
    def model_id(self) -> str:
        """The base model id shown in ``/v1/models``."""

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Load weights / open connections. Called once, off the request path when possible."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""

    @abstractmethod
    async def health(self) -> dict[str, Any]:
        """``{"ok": bool, "model": str, ...}`` without secrets."""

    def count_tokens(self, text: str) -> int:
        """Approximate token count (providers with a tokenizer override it)."""
        return max(1, len(text) // 4)

    @property
    def context_window(self) -> int | None:
        return None

    @abstractmethod
    def _stream_raw(
        self,
        messages: list[Message],
        params: GenerationParams,
        constraint: JsonConstraint | None,
    ) -> AsyncIterator[StreamEvent]:
        """Generate. ``params.tools`` are for rendering only unless ``native_tool_calls``."""

    async def _complete_raw(
        self, messages: list[Message], params: GenerationParams, constraint: JsonConstraint | None
    ) -> Completion:
        """One non-streamed generation (only where ``supports_complete``)."""
        raise NotImplementedError

    def _stream_text_raw(
        self, prompt: str, params: GenerationParams, suffix: str | None
    ) -> AsyncIterator[StreamEvent]:
        """A raw text completion of ``prompt`` (no chat template); with ``suffix``, the text that
        fills the gap between ``prompt`` and ``suffix`` (only where ``supports_suffix``)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ shared
    async def stream_text(
        self, prompt: str, params: GenerationParams, *, suffix: str | None = None
    ) -> AsyncIterator[StreamEvent]:
        """``/v1/completions``: text deltas, then an event with ``finish_reason`` and ``usage``."""
        if not self.supports_text_completion:
            raise BadRequestError(
                f"The '{self.name}' model backend does not offer raw text completions; use /v1/chat/completions.",
                param="prompt",
                code="unsupported_endpoint",
            )
        if suffix is not None and not self.supports_suffix:
            raise BadRequestError(
                f"The '{self.name}' model backend does not support 'suffix' (fill-in-the-middle).",
                param="suffix",
                code="unsupported_parameter",
            )
        async for ev in self._stream_text_raw(prompt, params, suffix):
            yield ev

    async def stream(self, messages: list[Message], params: GenerationParams) -> AsyncGenerator[StreamEvent, None]:
        choice = resolve_tool_choice(params.tools, params.tool_choice)
        constraint = json_constraint_from(params.response_format)
        if choice.kind == "none":
            raw = replace(params, tools=None, tool_choice=None)
            async for ev in self._stream_raw(messages, raw, constraint):
                yield ev
            return
        if self.native_tool_calls:
            async for ev in self._native_enforced(messages, params, choice, constraint):
                yield ev
            return
        if choice.kind in ("required", "named"):
            async for ev in self._forced(messages, params, choice):
                yield ev
            return
        async for ev in self._auto(messages, params, constraint):
            yield ev

    async def complete(self, messages: list[Message], params: GenerationParams) -> Completion:
        if self.supports_complete:
            choice = resolve_tool_choice(params.tools, params.tool_choice)
            if choice.kind == "none":
                params = replace(params, tools=None, tool_choice=None)
            if self.native_tool_calls or choice.kind == "none":
                result = await self._complete_raw(messages, params, json_constraint_from(params.response_format))
                if choice.kind in ("required", "named") and not result.tool_calls:
                    raise UpstreamError("The upstream model did not return the required tool call.")
                if choice.kind == "named" and any(c.name != choice.name for c in result.tool_calls):
                    raise UpstreamError(f"The upstream model did not call '{choice.name}'.")
                return result
        parts: list[str] = []
        calls: list[ToolCall] = []
        finish = "stop"
        usage = Usage()
        async for ev in self.stream(messages, params):
            if ev.content:
                parts.append(ev.content)
            if ev.tool_calls:
                calls.extend(ev.tool_calls)
            if ev.finish_reason:
                finish = ev.finish_reason
            if ev.usage:
                usage = ev.usage
        content = "".join(parts) if parts or not calls else None
        return Completion(content=content, tool_calls=calls, finish_reason=finish, usage=usage)

    async def _forced(
        self, messages: list[Message], params: GenerationParams, choice: ToolChoice
    ) -> AsyncIterator[StreamEvent]:
        schema = forced_call_schema(params.tools or [], choice)
        raw = replace(params, tool_choice=None, response_format=None)
        text: list[str] = []
        usage: Usage | None = None
        finish = "stop"
        async for ev in self._stream_raw(messages, raw, JsonConstraint(schema)):
            if ev.content:
                text.append(ev.content)
            if ev.usage:
                usage = ev.usage
            if ev.finish_reason:
                finish = ev.finish_reason
        body = "".join(text)
        try:
            obj = json.loads(body)
            call = make_call(obj["name"], obj.get("arguments", {}))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            reason = "the token limit cut the tool call short" if finish == "length" else "invalid JSON"
            raise UpstreamError(f"The model could not produce the required tool call ({reason}).") from exc
        yield StreamEvent(tool_calls=[call], finish_reason="tool_calls", usage=usage)

    async def _auto(
        self, messages: list[Message], params: GenerationParams, constraint: JsonConstraint | None
    ) -> AsyncIterator[StreamEvent]:
        tools = params.tools or []
        raw = replace(params, tool_choice=None)
        held: list[str] = []
        native: list[ToolCall] = []  # structured calls from an upstream that parses them itself (Ollama)
        buffering: bool | None = None
        async for ev in self._stream_raw(messages, raw, constraint):
            if ev.tool_calls:
                native.extend(ev.tool_calls)
            if ev.content:
                if buffering is None:
                    held.append(ev.content)
                    buffering = looks_like_call_start("".join(held))
                    if buffering is False:
                        yield StreamEvent(content="".join(held))
                        held.clear()
                elif buffering:
                    held.append(ev.content)
                else:
                    yield StreamEvent(content=ev.content)
            if ev.finish_reason or ev.usage:
                text = "".join(held)
                calls = parse_tool_calls(text, tools) if text else None
                if native:
                    if text and not calls:
                        yield StreamEvent(content=text)
                    calls = native + (calls or [])
                if calls:
                    yield StreamEvent(tool_calls=calls, finish_reason="tool_calls", usage=ev.usage)
                else:
                    if text:
                        yield StreamEvent(content=text)
                    yield StreamEvent(finish_reason=ev.finish_reason, usage=ev.usage)
                held.clear()
                return

    async def _native_enforced(
        self,
        messages: list[Message],
        params: GenerationParams,
        choice: ToolChoice,
        constraint: JsonConstraint | None,
    ) -> AsyncIterator[StreamEvent]:
        saw_call = False
        async for ev in self._stream_raw(messages, params, constraint):
            if ev.tool_calls:
                for call in ev.tool_calls:
                    if choice.kind == "named" and call.name != choice.name:
                        raise UpstreamError(f"The upstream model called '{call.name}' instead of '{choice.name}'.")
                saw_call = True
            if ev.finish_reason and choice.kind in ("required", "named") and not saw_call:
                raise UpstreamError("The upstream model did not return the required tool call.")
            yield ev
