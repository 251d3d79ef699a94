"""A provider wrapper that counts the agent's LLM calls and adds up their token usage."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from dataclasses import replace
from typing import Any

from backend.llm.base import LLMProvider
from backend.llm.types import Completion, GenerationParams, Message, StreamEvent, Usage

#: sampling for the agent's own steps (tool choice, plans, checks) when the request sets none
AGENT_TEMPERATURE = 0.2
STEP_MAX_TOKENS = 384


class CountingLLM:
    """Wraps an ``LLMProvider``; every ``complete``/``stream`` call is counted once."""

    def __init__(self, provider: LLMProvider, params: GenerationParams) -> None:
        self.provider = provider
        self.base = params
        self.calls = 0
        self.usage = Usage()

    def params(self, *, final: bool = False, **overrides: Any) -> GenerationParams:
        """The request's sampling settings with the agent's defaults and ``overrides``.

        Tools, tool_choice and response_format of the client request never leak into agent calls.
        """
        temperature = self.base.temperature if self.base.temperature is not None else AGENT_TEMPERATURE
        max_tokens = self.base.max_tokens
        if not final:
            max_tokens = min(max_tokens, STEP_MAX_TOKENS) if max_tokens else STEP_MAX_TOKENS
        out = replace(
            self.base,
            temperature=temperature,
            max_tokens=max_tokens,
            tools=None,
            tool_choice=None,
            response_format=None,
        )
        return replace(out, **overrides) if overrides else out

    def _add(self, usage: Usage | None) -> None:
        if usage is not None:
            self.usage = Usage(
                self.usage.prompt_tokens + usage.prompt_tokens,
                self.usage.completion_tokens + usage.completion_tokens,
            )

    async def complete(self, messages: list[Message], params: GenerationParams) -> Completion:
        self.calls += 1
        out = await self.provider.complete(messages, params)
        self._add(out.usage)
        return out

    async def stream(self, messages: list[Message], params: GenerationParams) -> AsyncGenerator[StreamEvent, None]:
        self.calls += 1
        seen_usage = False
        text: list[str] = []
        try:
            async with contextlib.aclosing(self.provider.stream(messages, params)) as events:
                async for ev in events:
                    if ev.usage is not None:
                        seen_usage = True
                        self._add(ev.usage)
                    if ev.content:
                        text.append(ev.content)
                    yield ev
        finally:
            if not seen_usage:  # the caller stopped reading early (e.g. a complete program): estimate
                self._add(self._estimate(messages, "".join(text)))

    def _estimate(self, messages: list[Message], completion: str) -> Usage:
        prompt = " ".join(str(m.get("content") or "") for m in messages)
        try:
            return Usage(self.provider.count_tokens(prompt), self.provider.count_tokens(completion) if completion else 0)
        except Exception:  # noqa: BLE001 - usage is an extra: never fail the run for it
            return Usage(len(prompt) // 4, len(completion) // 4)
