"""OpenAI-compatible routes: ``/v1/models`` and ``/v1/chat/completions`` (thin: parse, wire, render)."""

from __future__ import annotations

import asyncio
import re
import time

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError

from backend.api.body import body_size, read_json_object, watch_disconnect
from backend.api.deps import current_user, get_services
from backend.api.docs import json_body
from backend.api.embeddings import embedding_model_id
from backend.chat.modes import model_ids, resolve_model
from backend.chat.pipeline import ChatRun
from backend.chat.render import EventPump, run_to_completion, sse_body
from backend.chat.schemas import ChatCompletionRequest
from backend.errors import BadRequestError, validation_error
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
    resolve_model(model_id, [services.provider.model_id])
    return _model_entry(model_id)


def _validate(payload: dict, max_tokens_limit: int) -> ChatCompletionRequest:
    try:
        return ChatCompletionRequest.model_validate(payload, context={"max_tokens_limit": max_tokens_limit})
    except ValidationError as exc:
        raise validation_error(exc) from None


async def _parse(request: Request, services: Services) -> ChatCompletionRequest:
    payload = await read_json_object(request, services.settings)
    return await offload(body_size(request), _validate, payload, services.settings.max_tokens_limit)


def _retry_count(request: Request) -> int:
    raw = request.headers.get("x-stainless-retry-count", "0")
    return int(raw) if raw.isdigit() and len(raw) < 4 else 0


@router.post("/chat/completions", response_model=None, openapi_extra=json_body(ChatCompletionRequest))
async def chat_completions(
    request: Request,
    principal: Principal = Depends(current_user),
    services: Services = Depends(get_services),
) -> JSONResponse | StreamingResponse:
    req = await _parse(request, services)
    conversation_id = req.conversation_id or request.headers.get("x-conversation-id") or None
    idem = request.headers.get("idempotency-key")
    if idem is not None and not _IDEMPOTENCY_RE.fullmatch(idem):
        raise BadRequestError("Invalid Idempotency-Key header.", param="Idempotency-Key")
    run = ChatRun(
        services,
        principal,
        req,
        conversation_id=conversation_id,
        idempotency_key=idem,
        request_id=getattr(request.state, "request_id", None),
        base_url=str(request.base_url),
        retry_count=_retry_count(request),
    )
    await run.prepare()
    headers = dict(getattr(run, "rate_headers", {}))
    if run.conversation_id:
        headers["X-Conversation-Id"] = run.conversation_id
    if run.replayed:  # a retry of a request that was already applied: answer it again, append nothing
        return JSONResponse(run.replayed, headers=headers | {"Idempotent-Replayed": "true"})
    metrics = services.metrics
    stream_label = "true" if req.stream else "false"

    if not req.stream:
        task = asyncio.create_task(run_to_completion(run))
        watcher = asyncio.create_task(watch_disconnect(request, task))
        try:
            body = await task
        except asyncio.CancelledError:
            metrics.completions.labels(run.base_model, run.mode, stream_label, "cancelled").inc()
            raise
        except Exception:
            metrics.completions.labels(run.base_model, run.mode, stream_label, "error").inc()
            raise
        finally:
            watcher.cancel()
        if run.conversation_id:
            await asyncio.to_thread(run.finish, body)  # the conversation append: off the event loop
        else:
            run.finish(body)  # counters only
        metrics.completions.labels(run.base_model, run.mode, stream_label, "ok").inc()
        return JSONResponse(body, headers=headers)

    pump = EventPump(run)
    keepalive = services.settings.keepalive_interval_s
    try:
        first = await pump.get(keepalive)
    except TimeoutError:
        first = None  # still queued or thinking: start the stream with keep-alives
    except BaseException:
        await pump.cancel()
        raise
    if isinstance(first, BaseException):  # failed before any output: a proper HTTP error
        await pump.cancel()
        metrics.completions.labels(run.base_model, run.mode, stream_label, "error").inc()
        raise first
    metrics.completions.labels(run.base_model, run.mode, stream_label, "started").inc()
    headers |= {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(sse_body(run, pump, first, keepalive), media_type="text/event-stream", headers=headers)

