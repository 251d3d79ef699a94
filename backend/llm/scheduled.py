"""The provider as one request sees it: each generation waits for a fair slot first.

Agents make several model calls per request; each call queues separately, so a long agent
run never holds the model while its tools execute. ``ScheduledProvider`` is also the one place
a request's model calls are counted (``CallCounter``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

from backend.errors import APIError, ServiceUnavailableError, UpstreamTimeoutError
from backend.llm.base import JsonConstraint, LLMProvider
from backend.llm.scheduler import FairScheduler
from backend.llm.types import Completion, GenerationParams, Message, StreamEvent
from backend.observability.metrics import Metrics

log = logging.getLogger("backend.llm.scheduled")


@dataclass(frozen=True)
class StreamTimeouts:
    first_byte_s: float  #: until the first token (or the whole non-stream answer)
    idle_s: float  #: between two tokens


@dataclass
class CallCounter:
    """How many model calls one request made (routing, answering, each agent step)."""

    calls: int = 0


class ModelReadiness:
    """The model backend's start-up load: started once in the lifespan, awaited by each call."""

    def __init__(self, provider: LLMProvider, *, after: ModelReadiness | None = None) -> None:
        self._provider = provider
        self._after = after  #: a load to wait for first (two models never load at once)
        self._loader: asyncio.Task[None] | None = None
        self._ready = False

    def start_loading(self) -> None:
        self._loader = asyncio.create_task(self._load())

    async def _load(self) -> None:
        if self._after is not None and self._after._loader is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._after._loader)
        try:
            await self._provider.start()
            log.info("model backend ready: %s", self._provider.model_id)
        except Exception as exc:  # the server stays up; /health/detailed and 503s say why
            log.error("model backend failed to start: %s", exc)

    async def ensure(self) -> None:
        """Wait for the start-up load; retry it once if it had failed (e.g. Ollama was down)."""
        loader = self._loader
        if loader is not None and not loader.done():
            await asyncio.shield(loader)
        if self._ready:
            return
        try:
            await self._provider.start()
        except APIError:
            raise
        except Exception as exc:
            raise ServiceUnavailableError(f"The model backend is not available: {exc}", retry_after=10) from exc
        self._ready = True

    async def aclose(self) -> None:
        if self._loader is not None:
            self._loader.cancel()
            with contextlib.suppress(BaseException):
                await self._loader


class ScheduledProvider(LLMProvider):
    def __init__(
        self,
        inner: LLMProvider,
        *,
        scheduler: FairScheduler,
        metrics: Metrics,
        readiness: ModelReadiness,
        timeouts: StreamTimeouts,
        user_id: str,
        counter: CallCounter | None = None,
    ) -> None:
        self._inner = inner
        self._scheduler = scheduler
        self._metrics = metrics
        self._readiness = readiness
        self._timeouts = timeouts
        self._user_id = user_id
        self._counter = counter if counter is not None else CallCounter()
        self.name = inner.name
        self.native_tool_calls = inner.native_tool_calls
        self.supports_complete = inner.supports_complete
        self.supports_text_completion = inner.supports_text_completion
        self.supports_suffix = inner.supports_suffix
        self.parallel = inner.parallel

    @property
    def calls(self) -> int:
        return self._counter.calls

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
        metrics, scheduler = self._metrics, self._scheduler
        ticket = scheduler.enqueue(self._user_id)
        metrics.queue_depth.set(scheduler.waiting)
        try:
            await scheduler.wait(ticket)
        finally:
            metrics.queue_depth.set(scheduler.waiting)
        metrics.queue_wait.labels(self.model_id).observe(ticket.waited_s)
        metrics.queue_active.set(scheduler.active)
        try:
            await self._readiness.ensure()
            self._counter.calls += 1
            yield time.perf_counter()
        finally:
            scheduler.release(ticket)
            metrics.queue_active.set(scheduler.active)

    async def _timed(self, agen: AsyncIterator[StreamEvent]) -> AsyncGenerator[StreamEvent, None]:
        async with self._slot() as start:
            first = True
            try:
                async for ev in self._guarded(agen, self._timeouts.first_byte_s, self._timeouts.idle_s):
                    if first:
                        self._metrics.ttft.labels(self.model_id).observe(time.perf_counter() - start)
                        first = False
                    yield ev
            finally:
                if isinstance(agen, AsyncGenerator):  # stops the generation now, not at garbage collection
                    await agen.aclose()

    def stream(self, messages: list[Message], params: GenerationParams) -> AsyncGenerator[StreamEvent, None]:
        return self._timed(self._inner.stream(messages, params).__aiter__())

    def stream_text(
        self, prompt: str, params: GenerationParams, *, suffix: str | None = None
    ) -> AsyncGenerator[StreamEvent, None]:
        """A raw completion (``/v1/completions``) through the same fair slot and timeouts as chat."""
        return self._timed(self._inner.stream_text(prompt, params, suffix=suffix).__aiter__())

    @staticmethod
    async def _guarded(
        agen: AsyncIterator[StreamEvent], first_timeout: float, idle_timeout: float
    ) -> AsyncIterator[StreamEvent]:
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
            timeout = self._timeouts.first_byte_s
            try:
                return await asyncio.wait_for(self._inner.complete(messages, params), timeout=timeout)
            except TimeoutError:
                raise UpstreamTimeoutError(f"The model backend did not answer within {timeout:.0f}s.") from None
