"""A scripted provider: the real base-class logic (tool_choice, parsing) runs on canned text."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from backend.llm.base import JsonConstraint, LLMProvider
from backend.llm.types import GenerationParams, Message, StreamEvent, Usage


class ScriptedProvider(LLMProvider):
    name = "scripted"

    def __init__(self, outputs: list[str] | None = None, *, delay_s: float = 0.0, fail: Exception | None = None) -> None:
        self.outputs = list(outputs or [])
        self.default = "Hello from the scripted model."
        self.delay_s = delay_s
        self.fail = fail
        self.calls: list[dict[str, Any]] = []
        self.cancelled = 0

    @property
    def model_id(self) -> str:
        return "scripted-model"

    @property
    def context_window(self) -> int | None:
        return 4096

    async def health(self) -> dict[str, Any]:
        return {"ok": True, "model": self.model_id}

    async def _stream_raw(
        self, messages: list[Message], params: GenerationParams, constraint: JsonConstraint | None
    ) -> AsyncIterator[StreamEvent]:
        self.calls.append({"messages": messages, "params": params, "constraint": constraint})
        if self.fail is not None:
            raise self.fail
        text = self.outputs.pop(0) if self.outputs else self.default
        words = text.split(" ")
        try:
            for i, word in enumerate(words):
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                yield StreamEvent(content=word if i == 0 else " " + word)
        except (asyncio.CancelledError, GeneratorExit):
            self.cancelled += 1
            raise
        yield StreamEvent(finish_reason="stop", usage=Usage(prompt_tokens=7, completion_tokens=len(words)))

    # ------------------------------------------------------------ raw text completion (/v1/completions)
    supports_text_completion = True
    supports_suffix = True

    async def _stream_text_raw(self, prompt: str, params: GenerationParams, suffix: str | None) -> AsyncIterator[StreamEvent]:
        self.calls.append({"prompt": prompt, "suffix": suffix, "params": params})
        if self.fail is not None:
            raise self.fail
        text = self.outputs.pop(0) if self.outputs else self.default
        pieces = [text[i : i + 5] for i in range(0, len(text), 5)]
        try:
            for piece in pieces:
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                yield StreamEvent(content=piece)
        except (asyncio.CancelledError, GeneratorExit):
            self.cancelled += 1
            raise
        yield StreamEvent(finish_reason="stop", usage=Usage(prompt_tokens=len(prompt) // 4 + 1, completion_tokens=len(pieces)))
