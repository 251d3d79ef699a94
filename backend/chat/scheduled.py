"""The provider as one request sees it: each generation waits for a fair slot first.

Agents make several model calls per request; each call queues separately, so a long agent
run never holds the model while its tools execute.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from backend.errors import APIError, ServiceUnavailableError, UpstreamTimeoutError
from backend.llm.base import JsonConstraint, LLMProvider
from backend.llm.types import Completion, GenerationParams, Message, StreamEvent

if TYPE_CHECKING:
    from backend.services import Services


async def ensure_ready(services: Services) -> None:
    """Wait for the start-up model load; retry it once if it had failed (e.g. Ollama was down)."""
    loader = services.extras.get("model_loader")
    if loader is not None and not loader.done():
        await asyncio.shield(loader)
    if services.extras.get("model_ready"):
        return
    try:
        await services.provider.start()
    except APIError:
        raise
    except Exception as exc:
        raise ServiceUnavailableError(f"The model backend is not available: {exc}", retry_after=10) from exc
    services.extras["model_ready"] = True


class ScheduledProvider(LLMProvider):
    def __init__(self, services: Services, user_id: str, result: Any = None) -> None:
        self._services = services
        self._inner = services.provider
        self._user_id = user_id
        self._result = result
        self.name = self._inner.name
        self.native_tool_calls = self._inner.native_tool_calls
        self.supports_complete = self._inner.supports_complete
        self.supports_text_completion = self._inner.supports_text_completion
        self.supports_suffix = self._inner.supports_suffix
        self.parallel = self._inner.parallel

    @property
    def model_id(self) -> str:
        return self._inner.model_id

    @property
    def context_window(self) -> int | None:
        return self._inner.context_window

    def count_tokens(self, text: str) -> int:
        return self._inner.count_tokens(text)

    async def health(self) -> dict[str, Any]:
        return await self._inner.health()

    def _stream_raw(
        self, messages: list[Message], params: GenerationParams, constraint: JsonConstraint | None
    ) -> AsyncIterator[StreamEvent]:
        return self._inner._stream_raw(messages, params, constraint)

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[float]:
        """Hold a fair model slot (after the start-up load); yields the generation start time."""
        services = self._services
        metrics = services.metrics
        scheduler = services.scheduler
        ticket = scheduler.enqueue(self._user_id)
        metrics.queue_depth.set(scheduler.waiting)
        try:
            await scheduler.wait(ticket)
        finally:
            metrics.queue_depth.set(scheduler.waiting)
        metrics.queue_wait.labels(self.model_id).observe(ticket.waited_s)
        metrics.queue_active.set(scheduler.active)
        try:
            await ensure_ready(services)
            if self._result is not None:
                self._result.llm_calls += 1
            yield time.perf_counter()
        finally:
            scheduler.release(ticket)
            metrics.queue_active.set(scheduler.active)

    async def stream(self, messages: list[Message], params: GenerationParams) -> AsyncIterator[StreamEvent]:
        settings = self._services.settings
        async with self._slot() as start:
            first = True
            agen = self._inner.stream(messages, params).__aiter__()
            try:
                async for ev in self._guarded(agen, settings.first_byte_timeout_s, settings.stream_idle_timeout_s):
                    if first:
                        self._services.metrics.ttft.labels(self.model_id).observe(time.perf_counter() - start)
                        first = False
                    yield ev
            finally:
                await agen.aclose()

    async def stream_text(
        self, prompt: str, params: GenerationParams, *, suffix: str | None = None
    ) -> AsyncIterator[StreamEvent]:
        """A raw completion (``/v1/completions``) through the same fair slot and timeouts as chat."""
        settings = self._services.settings
        async with self._slot() as start:
            first = True
            agen = self._inner.stream_text(prompt, params, suffix=suffix).__aiter__()
            try:
                async for ev in self._guarded(agen, settings.first_byte_timeout_s, settings.stream_idle_timeout_s):
                    if first:
                        self._services.metrics.ttft.labels(self.model_id).observe(time.perf_counter() - start)
                        first = False
                    yield ev
            finally:
                await agen.aclose()

    @staticmethod
    async def _guarded(agen: Any, first_timeout: float, idle_timeout: float) -> AsyncIterator[StreamEvent]:
        first = True
        while True:
            timeout = first_timeout if first else idle_timeout
            try:
                ev = await asyncio.wait_for(agen.__anext__(), timeout=timeout)
            except StopAsyncIteration:
                return
            except TimeoutError:
                what = "start answering" if first else "continue its answer"
                raise UpstreamTimeoutError(f"The model backend did not {what} within {timeout:.0f}s.") from None
            first = False
            yield ev

    async def complete(self, messages: list[Message], params: GenerationParams) -> Completion:
        if not self._inner.supports_complete:
            return await LLMProvider.complete(self, messages, params)  # aggregates self.stream
        async with self._slot():
            timeout = self._services.settings.first_byte_timeout_s
            try:
                return await asyncio.wait_for(self._inner.complete(messages, params), timeout=timeout)
            except TimeoutError:
                raise UpstreamTimeoutError(f"The model backend did not answer within {timeout:.0f}s.") from None
