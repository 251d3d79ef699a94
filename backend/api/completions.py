"""``POST /v1/completions``: raw text completions and fill-in-the-middle (thin: parse, run, render)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError

from backend.api.body import read_json_object
from backend.api.deps import current_user, get_services
from backend.api.docs import json_body
from backend.api.streaming import SSE_HEADERS, collect, open_stream, sse_body
from backend.completions.render import chunk, completion_body, usage_chunk
from backend.completions.run import ChoiceEnd, CompletionDone, CompletionEvent, CompletionRun, TextDelta
from backend.completions.schemas import CompletionRequest
from backend.errors import validation_error
from backend.services import Principal, Services

router = APIRouter(prefix="/v1", tags=["openai"])


def _frames(run: CompletionRun, ev: CompletionEvent) -> list[bytes]:
    if isinstance(ev, TextDelta):
        return [chunk(run, ev.index, ev.text, None)]
    if isinstance(ev, ChoiceEnd):
        return [chunk(run, ev.index, "", ev.finish_reason)]
    opts = run.req.stream_options
    return [usage_chunk(run)] if opts is not None and opts.include_usage else []


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
        await collect(request, run.events())
        await asyncio.to_thread(run.finish)
        return JSONResponse(completion_body(run), headers=headers)

    async def record(ev: CompletionEvent) -> None:
        if isinstance(ev, CompletionDone):
            await asyncio.to_thread(run.finish)

    pump, first = await open_stream(run.events(), services.settings.keepalive_interval_s)
    frames = sse_body(pump, first, services.settings.keepalive_interval_s, lambda ev: _frames(run, ev), record)
    return StreamingResponse(frames, media_type="text/event-stream", headers=headers | SSE_HEADERS)
