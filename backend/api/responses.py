"""OpenAI's Responses API over the chat pipeline: ``POST /v1/responses``, ``GET``/``DELETE
/v1/responses/{id}``, ``GET /v1/responses/{id}/input_items``.

Thin: parse the request, translate it into the pipeline's input (``backend.responses.translate``),
prepare and run it exactly as ``/v1/chat/completions`` does (``backend.chat``), render its events as
Responses output (``backend.responses.render``), record it, and store the response per user when
``store`` is on.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError

from backend.api.body import read_json_object
from backend.api.deps import current_user, get_services
from backend.api.streaming import SSE_HEADERS, collect, open_stream
from backend.api.v1 import request_info
from backend.chat.events import ChatDone, ChatResult
from backend.chat.plan import ChatPlan, prepare
from backend.chat.record import count_outcome, count_success, record
from backend.chat.run import run
from backend.errors import APIError, BadRequestError, validation_error
from backend.responses.render import ResponseBuilder
from backend.responses.schemas import ResponsesRequest, check_fields, request_body_openapi
from backend.responses.translate import echo_text, echo_tools, input_items, new_item_id, to_chat_request
from backend.services import Principal, Services

router = APIRouter(prefix="/v1", tags=["openai"])


async def _parse(request: Request, services: Services) -> ResponsesRequest:
    payload = await read_json_object(request, services.settings)
    check_fields(payload)
    try:
        return ResponsesRequest.model_validate(payload)
    except ValidationError as exc:
        raise validation_error(exc) from None


def _echo(req: ResponsesRequest, plan: ChatPlan, tools: list[dict[str, Any]] | None) -> dict[str, Any]:
    """The request's settings as the Response object reports them (the effective values)."""
    return {
        "model": req.model,
        "instructions": req.instructions,
        "tools": echo_tools(tools),
        "tool_choice": req.tool_choice if req.tool_choice is not None else "auto",
        "parallel_tool_calls": req.parallel_tool_calls if req.parallel_tool_calls is not None else True,
        "temperature": plan.params.temperature,
        "top_p": plan.params.top_p,
        "max_output_tokens": req.max_output_tokens,
        "metadata": req.metadata or {},
        "previous_response_id": req.previous_response_id,
        "text": echo_text(req.text),
        "reasoning": {"effort": None, "summary": None},
        "truncation": "disabled",
        "background": False,
        "service_tier": "default",
        "store": req.store is not False,
        "safety_identifier": req.safety_identifier,
        "prompt_cache_key": req.prompt_cache_key,
    } | ({"user": req.user} if req.user is not None else {})


def _record(builder: ResponseBuilder, items: list[dict[str, Any]], history: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": builder.id, "response": builder.response(), "input_items": items, "history": history}


def _frame(event: dict[str, Any]) -> bytes:
    data = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    return f"event: {event['type']}\ndata: {data}\n\n".encode()


@router.post("/responses", response_model=None, openapi_extra={"requestBody": request_body_openapi()})
async def create_response(
    request: Request,
    principal: Principal = Depends(current_user),
    services: Services = Depends(get_services),
) -> JSONResponse | StreamingResponse:
    req = await _parse(request, services)
    store = services.responses
    history: list[dict[str, Any]] = []
    if req.previous_response_id is not None:
        prev = store.get(principal.user_id, req.previous_response_id, param="previous_response_id")
        history = [*prev.get("history", []), *prev.get("input_items", []), *prev["response"].get("output", [])]
    items = input_items(req.input, services.settings.responses_max_input_items)
    chat_req, tools = to_chat_request(req, history, items, [services.provider.model_id],
                                      max_tokens_limit=services.settings.max_tokens_limit)
    plan = await prepare(services, principal, chat_req, request_info(request, None))
    headers = plan.headers()
    builder = ResponseBuilder(new_item_id("resp"), _echo(req, plan, tools),
                              parallel_tool_calls=req.parallel_tool_calls is not False,
                              agent_answers=plan.mode.is_agent)
    keep = req.store is not False
    keepalive = services.settings.keepalive_interval_s

    def save(result: ChatResult | None) -> None:
        """Recorded and stored before the client sees the end, so it can chain on it at once."""
        if result is not None:
            record(services, plan, result, None)
        if keep:
            store.save(principal.user_id, _record(builder, items, history))

    with count_outcome(services.metrics, plan):
        if not plan.stream:
            done = await collect(request, run(plan, services), builder.feed)
            assert isinstance(done, ChatDone)  # a run always ends with ChatDone
            await asyncio.to_thread(save, done.result)
            count_success(services.metrics, plan)
            return JSONResponse(builder.response(), headers=headers)
        pump, first = await open_stream(run(plan, services), keepalive)
    count_success(services.metrics, plan)

    async def body() -> AsyncIterator[bytes]:
        try:
            for event in builder.start():
                yield _frame(event)
            events: list[dict[str, Any]] = []
            result: ChatResult | None = None
            async for ev in pump.events(first, keepalive):
                if isinstance(ev, bytes):
                    yield ev
                    continue
                if isinstance(ev, BaseException):
                    events = builder.fail(ev)
                    break
                if isinstance(ev, ChatDone):
                    result = ev.result
                    events = builder.feed(ev)  # the final events, sent once stored
                    continue
                for event in builder.feed(ev):
                    yield _frame(event)
            failure: APIError | None = None
            try:
                await asyncio.to_thread(save, result)
            except APIError as exc:
                failure = exc
            for event in events:
                yield _frame(event)
            if failure is not None:
                yield _frame({"type": "error", "sequence_number": builder.seq, "code": failure.code,
                              "message": failure.message, "param": failure.param})
        finally:
            await pump.cancel()

    return StreamingResponse(body(), media_type="text/event-stream", headers=headers | SSE_HEADERS)


@router.get("/responses/{response_id}")
async def get_response(
    response_id: str,
    stream: bool | None = None,
    principal: Principal = Depends(current_user),
    services: Services = Depends(get_services),
) -> dict[str, Any]:
    if stream:
        raise BadRequestError("Replaying a stored response as a stream is not supported; omit 'stream'.",
                              param="stream", code="unsupported_parameter")
    response: dict[str, Any] = services.responses.get(principal.user_id, response_id)["response"]
    return response


@router.delete("/responses/{response_id}")
async def delete_response(
    response_id: str, principal: Principal = Depends(current_user), services: Services = Depends(get_services)
) -> dict[str, Any]:
    services.responses.delete(principal.user_id, response_id)
    return {"id": response_id, "object": "response", "deleted": True}


@router.get("/responses/{response_id}/input_items")
async def list_input_items(
    response_id: str,
    limit: int = Query(default=20, ge=1, le=100),
    order: Literal["asc", "desc"] = "desc",
    after: str | None = Query(default=None, max_length=128),
    principal: Principal = Depends(current_user),
    services: Services = Depends(get_services),
) -> dict[str, Any]:
    items = list(services.responses.get(principal.user_id, response_id).get("input_items", []))
    if order == "desc":
        items.reverse()
    if after is not None:
        ids = [item["id"] for item in items]
        if after not in ids:
            raise BadRequestError(f"No input item with id '{after}' in this response.", param="after")
        items = items[ids.index(after) + 1 :]
    page = items[:limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": len(items) > limit,
    }
