"""What every JSON route of ``/v1`` shares: reading the body safely, and noticing a client leave."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import Request

from backend.errors import BadRequestError
from backend.offload import offload
from backend.settings import Settings


def _json_depth(value: object, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return False
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return True


async def read_json_object(request: Request, settings: Settings) -> dict[str, Any]:
    """The body as a JSON object; malformed, too deep or non-Unicode bodies are a clear 400."""
    raw = await request.body()
    request.state.body_size = len(raw)
    # decoding up to MAX_BODY_BYTES of JSON is CPU work: off the event loop unless the body is small
    return await offload(len(raw), _decode, raw, settings.max_json_depth)


def body_size(request: Request) -> int:
    """The length of the body ``read_json_object`` read (what later CPU work on it scales with)."""
    return int(getattr(request.state, "body_size", 0))


def _decode(raw: bytes, max_depth: int) -> dict[str, Any]:
    try:
        payload = json.loads(raw)
    except RecursionError:  # thousands of nested brackets: deeper than the parser goes
        raise BadRequestError("The request body is nested too deeply.", code="too_deep") from None
    except ValueError:  # JSONDecodeError, UnicodeDecodeError, integers beyond Python's digit limit
        raise BadRequestError(
            "We could not parse the JSON body of your request. Send a JSON object.", code="invalid_json"
        ) from None
    if not isinstance(payload, dict):
        raise BadRequestError("The request body must be a JSON object.", code="invalid_json")
    if not _json_depth(payload, max_depth):
        raise BadRequestError("The request body is nested too deeply.", code="too_deep")
    try:  # a lone surrogate escape ("\ud800") is not Unicode: it could be neither stored nor answered
        json.dumps(payload, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequestError("The request contains invalid Unicode (a lone surrogate escape).", code="invalid_unicode") from None
    return payload


async def watch_disconnect(request: Request, task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` the moment the client goes away (the body is already read, so the next
    ASGI message can only be ``http.disconnect``) — as Starlette's StreamingResponse listens."""
    while not task.done():
        message = await request.receive()
        if message["type"] == "http.disconnect":
            task.cancel()
            return
