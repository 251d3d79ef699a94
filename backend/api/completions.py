"""``POST /v1/completions``: raw text completions and fill-in-the-middle (thin: parse, run, render)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError

from backend.api.body import read_json_object, watch_disconnect
from backend.api.deps import current_user, get_services
from backend.api.docs import json_body
from backend.chat.render import KEEPALIVE, EventPump, error_frame
from backend.completions.render import chunk, completion_body, usage_chunk
from backend.completions.run import ChoiceEnd, CompletionRun, TextDelta, collect
from backend.completions.schemas import CompletionRequest
from backend.errors import validation_error
from backend.services import Principal, Services

router = APIRouter(prefix="/v1", tags=["openai"])


async def _sse(run: CompletionRun, pump: EventPump, first: Any, keepalive_s: float) -> AsyncIterator[bytes]:
    ok = False
    try:
        async for ev in pump.events(first, keepalive_s):
            if ev is KEEPALIVE:
                yield ev
            elif isinstance(ev, BaseException):
                yield error_frame(ev)
                break
            elif isinstance(ev, TextDelta):
                yield chunk(run, ev.index, ev.text, None)
            elif isinstance(ev, ChoiceEnd):
                yield chunk(run, ev.index, "", ev.finish_reason)
        else:
            ok = True
        if ok:
            opts = run.req.stream_options
            if opts is not None and opts.include_usage:
                yield usage_chunk(run)
            run.finish()
        yield b"data: [DONE]\n\n"
    finally:
        await pump.cancel()


@router.post("/completions", response_model=None, openapi_extra=json_body(CompletionRequest))
async def completions(
    request: Request,
    principal: Principal = Depends(current_user),
    services: Services = Depends(get_services),
) -> JSONResponse | StreamingResponse:
    payload = await read_json_object(request, services.settings)
    try:
        req = CompletionRequest.model_validate(payload)
    except ValidationError as exc:
        raise validation_error(exc) from None
    run = CompletionRun(services, principal, req)
    run.prepare()
    headers = dict(run.rate_headers)
    if not req.stream:
        task = asyncio.create_task(collect(run))
        watcher = asyncio.create_task(watch_disconnect(request, task))
        try:
            await task
        finally:
            watcher.cancel()
        run.finish()
        return JSONResponse(completion_body(run), headers=headers)

    pump = EventPump(run)  # type: ignore[arg-type]  # it only needs run.events()
    keepalive = services.settings.keepalive_interval_s
    try:
        first = await pump.get(keepalive)
    except TimeoutError:
        first = None  # still queued: start the stream with keep-alives
    except BaseException:
        await pump.cancel()
        raise
    if isinstance(first, BaseException):  # failed before any output: a proper HTTP error
        await pump.cancel()
        raise first
    headers |= {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(_sse(run, pump, first, keepalive), media_type="text/event-stream", headers=headers)
