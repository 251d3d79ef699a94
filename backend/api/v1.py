"""OpenAI-compatible routes: ``/v1/models`` and ``/v1/chat/completions``.

The chat route only wires the four steps: ``prepare`` (``backend.chat.plan``) → ``run``
(``backend.chat.run``) → ``render`` (``backend.chat.render``) → ``record`` (``backend.chat.record``).
"""

from __future__ import annotations

import re
import time
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError

from backend.api.body import body_size, read_json_object
from backend.api.deps import current_user, get_services
from backend.api.docs import json_body
from backend.api.embeddings import embedding_model_id
from backend.api.streaming import SSE_HEADERS, collect, open_stream, sse_body
from backend.chat.events import ChatDone, ChatEvent
from backend.chat.plan import RequestInfo, prepare
from backend.chat.record import count_outcome, count_success, record_off_loop
from backend.chat.render import ChunkWriter, completion_body
from backend.chat.run import run
from backend.chat.schemas import ChatCompletionRequest
from backend.errors import BadRequestError, validation_error
from backend.modes import model_ids, parse_model_id
from backend.offload import offload
from backend.services import Principal, Services

router = APIRouter(prefix="/v1", tags=["openai"])
_IDEMPOTENCY_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_STARTED = int(time.time())


def _model_entry(model_id: str) -> dict[str, object]:
    return {"id": model_id, "object": "model", "created": _STARTED, "owned_by": "local"}


@router.get("/models")
async def list_models(
    principal: Principal = Depends(current_user), services: Services = Depends(get_services)
) -> dict[str, object]:
    ids = model_ids([services.provider.model_id])
    return {"object": "list", "data": [_model_entry(i) for i in ids] + [_embedding_entry(services)]}


def _embedding_entry(services: Services) -> dict[str, object]:
    """The embedding model of ``/v1/embeddings`` (listed last: clients take the first model for chat)."""
    return _model_entry(embedding_model_id(services)) | {"type": "embedding"}


@router.get("/models/{model_id:path}")
async def get_model(
    model_id: str, principal: Principal = Depends(current_user), services: Services = Depends(get_services)
) -> dict[str, object]:
    if model_id == embedding_model_id(services):
        return _embedding_entry(services)
    parse_model_id(model_id, [services.provider.model_id])
    return _model_entry(model_id)


def _validate(payload: dict[str, Any], max_tokens_limit: int) -> ChatCompletionRequest:
    try:
        return ChatCompletionRequest.model_validate(payload, context={"max_tokens_limit": max_tokens_limit})
    except ValidationError as exc:
        raise validation_error(exc) from None


async def _parse(request: Request, services: Services) -> ChatCompletionRequest:
    payload = await read_json_object(request, services.settings)
    return await offload(body_size(request), _validate, payload, services.settings.max_tokens_limit)


def request_info(request: Request, conversation_id: str | None) -> RequestInfo:
    """What a chat run needs from the HTTP request besides the body (a bad Idempotency-Key is a 400)."""
    idem = request.headers.get("idempotency-key")
    if idem is not None and not _IDEMPOTENCY_RE.fullmatch(idem):
        raise BadRequestError("Invalid Idempotency-Key header.", param="Idempotency-Key")
    raw = request.headers.get("x-stainless-retry-count", "0")
    request_id: str | None = getattr(request.state, "request_id", None)  # set by RequestContextMiddleware
    return RequestInfo(
        request_id=request_id,
        base_url=str(request.base_url),
        conversation_id=conversation_id or request.headers.get("x-conversation-id") or None,
        idempotency_key=idem,
        retry_count=int(raw) if raw.isdigit() and len(raw) < 4 else 0,
    )


@router.post("/chat/completions", response_model=None, openapi_extra=json_body(ChatCompletionRequest))
async def chat_completions(
    request: Request,
    principal: Principal = Depends(current_user),
    services: Services = Depends(get_services),
) -> JSONResponse | StreamingResponse:
    req = await _parse(request, services)
    plan = await prepare(services, principal, req, request_info(request, req.conversation_id))
    headers = plan.headers()
    if plan.replayed is not None:  # a retry of a request that was already applied: answer it again, append nothing
        return JSONResponse(plan.replayed, headers=headers | {"Idempotent-Replayed": "true"})
    keepalive = services.settings.keepalive_interval_s
    with count_outcome(services.metrics, plan):
        if not plan.stream:
            done = await collect(request, run(plan, services))
            assert isinstance(done, ChatDone)  # a run always ends with ChatDone
            body = completion_body(plan, done.result)
            await record_off_loop(services, plan, done.result, body)
            count_success(services.metrics, plan)
            return JSONResponse(body, headers=headers)
        pump, first = await open_stream(run(plan, services), keepalive)
    count_success(services.metrics, plan)

    async def record_done(ev: ChatEvent) -> None:
        if isinstance(ev, ChatDone):
            await record_off_loop(services, plan, ev.result, None)

    frames = sse_body(pump, first, keepalive, ChunkWriter(plan).render, record_done)
    return StreamingResponse(frames, media_type="text/event-stream", headers=headers | SSE_HEADERS)
