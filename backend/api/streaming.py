"""How a run reaches the client, for every generating route (chat, responses, completions).

* ``collect``: a non-stream run in a task that a client disconnect cancels; returns the last event.
* ``open_stream``: a stream's producer task (``EventPump``) and its first event, so a failure
  before any output is still a proper HTTP error;
* ``sse_body``: the SSE frames: comment keep-alives while the model is busy, an error frame if the
  run fails midway, ``[DONE]`` last; the run's terminal event is recorded before ``[DONE]``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Generic, TypeVar

from fastapi import Request

from backend.api.body import watch_disconnect
from backend.chat.render import frame
from backend.errors import APIError, error_body

log = logging.getLogger("backend.api.streaming")
E = TypeVar("E")
KEEPALIVE = b": keep-alive\n\n"  #: an SSE comment frame that keeps proxies and clients waiting
DONE = b"data: [DONE]\n\n"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class _End:
    pass


_END = _End()


class EventPump(Generic[E]):
    """Runs ``events`` in a task; the first event (or error) can be awaited before responding."""

    def __init__(self, events: AsyncIterator[E]) -> None:
        self._events = events
        self.queue: asyncio.Queue[E | BaseException | _End] = asyncio.Queue()
        self.task = asyncio.create_task(self._produce())

    async def _produce(self) -> None:
        try:
            async for ev in self._events:
                await self.queue.put(ev)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # delivered to the consumer
            await self.queue.put(exc)
        await self.queue.put(_END)

    async def get(self, timeout: float | None) -> E | BaseException | _End:
        return await asyncio.wait_for(self.queue.get(), timeout=timeout)

    async def events(self, first: E | None, keepalive_s: float) -> AsyncIterator[E | BaseException | bytes]:
        """``first`` (if any), then the queued events up to the end; ``KEEPALIVE`` whenever none
        came for ``keepalive_s``. A producer's exception arrives as an event (the bodies stop there)."""
        ev: E | BaseException | _End | None = first
        while True:
            if ev is None:
                try:
                    ev = await self.get(keepalive_s)
                except TimeoutError:
                    yield KEEPALIVE
                    continue
            if isinstance(ev, _End):
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


async def collect(
    request: Request, events: AsyncIterator[E], on_event: Callable[[E], object] | None = None
) -> E | None:
    """Consume a non-stream run (``on_event`` sees each event); the last event. The client going
    away cancels it (and with it the generation and any tool subprocess)."""

    async def drain() -> E | None:
        last: E | None = None
        async for ev in events:
            if on_event is not None:
                on_event(ev)
            last = ev
        return last

    task = asyncio.create_task(drain())
    watcher = asyncio.create_task(watch_disconnect(request, task))
    try:
        return await task
    finally:
        watcher.cancel()


async def open_stream(events: AsyncIterator[E], keepalive_s: float) -> tuple[EventPump[E], E | None]:
    """Start the producer and wait up to ``keepalive_s`` for its first event; its error is raised."""
    pump = EventPump(events)
    try:
        first = await pump.get(keepalive_s)
    except TimeoutError:
        return pump, None  # still queued or thinking: start the stream with keep-alives
    except BaseException:
        await pump.cancel()
        raise
    if isinstance(first, BaseException):  # failed before any output: a proper HTTP error
        await pump.cancel()
        raise first
    if isinstance(first, _End):
        await pump.queue.put(_END)  # an empty run: let events() end at once
        return pump, None
    return pump, first


def error_frame(exc: BaseException) -> bytes:
    if isinstance(exc, APIError):
        return frame(exc.body())
    log.error("stream failed", exc_info=exc)
    return frame(error_body("The server had an error while generating the response.", "server_error"))


async def sse_body(
    pump: EventPump[E],
    first: E | None,
    keepalive_s: float,
    render: Callable[[E], list[bytes]],
    record: Callable[[E], Awaitable[None]],
) -> AsyncIterator[bytes]:
    """The ``data:`` frames ``render`` makes of each event; ``record(ev)`` after each one's frames
    (it acts on the terminal event only; storage full etc. becomes an error frame: the answer was delivered)."""
    try:
        async for ev in pump.events(first, keepalive_s):
            if isinstance(ev, bytes):
                yield ev
                continue
            if isinstance(ev, BaseException):
                yield error_frame(ev)
                break
            for out in render(ev):
                yield out
            try:
                await record(ev)
            except Exception as exc:
                yield error_frame(exc)
        yield DONE
    finally:
        await pump.cancel()
