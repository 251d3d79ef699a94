"""``POST /v1/embeddings`` over the embedder RAG already uses (MiniLM by default).

Inputs are text (a string or a list of strings); token arrays are refused with a 400, since
they are token ids of OpenAI's tokenizer, not of this model. Vectors are L2-normalised float32,
as JSON floats or base64 (the ``openai`` SDK asks for base64 by default). Texts are embedded in
batches of ``embedding_batch_size`` off the event loop, each batch waiting for a fair per-user
slot, so one user's long request does not hold the model for everyone; the per-user rate limit
is the chat one. Texts past the model's input length (256 tokens for MiniLM) are truncated,
as sentence-transformers does.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any, Literal

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from backend.api.body import read_json_object, watch_disconnect
from backend.api.deps import current_user, get_services
from backend.api.docs import json_body
from backend.errors import BadRequestError, NotFoundError, validation_error
from backend.ratelimit import enforce_user_limit
from backend.services import Principal, Services

router = APIRouter(prefix="/v1", tags=["openai"])

TOKEN_ARRAYS_UNSUPPORTED = (
    "Token arrays are not supported: they are ids of OpenAI's tokenizer, not of this embedding model. "
    "Send the text itself (LangChain: OpenAIEmbeddings(check_embedding_ctx_length=False))."
)


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    input: Any = Field(description="A string or a list of strings (token arrays are refused).")
    model: str = Field(min_length=1, max_length=256)
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None


def _is_token_array(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(t, int) and not isinstance(t, bool) for t in value)


def parse_inputs(value: object, limit: int) -> list[str]:
    """The texts to embed, or a 400 that names the offending input."""
    if isinstance(value, str):
        texts = [value]
    elif isinstance(value, list) and value:
        if _is_token_array(value) or all(_is_token_array(v) for v in value):
            raise BadRequestError(TOKEN_ARRAYS_UNSUPPORTED, param="input", code="unsupported_value")
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise BadRequestError(f"input[{i}] must be a string.", param=f"input[{i}]", code="invalid_value")
        texts = list(value)
    else:
        raise BadRequestError("'input' must be a string or a non-empty list of strings.", param="input", code="invalid_value")
    if len(texts) > limit:
        raise BadRequestError(f"At most {limit} inputs per request; split the list.", param="input", code="too_many_inputs")
    for i, text in enumerate(texts):
        if not text.strip():
            where = "input" if isinstance(value, str) else f"input[{i}]"
            raise BadRequestError(f"'{where}' must not be empty.", param=where, code="invalid_value")
    return texts


def embedding_model_id(services: Services) -> str:
    return services.settings.embedding_model


def _encode(vector: np.ndarray, fmt: str) -> list[float] | str:
    if fmt == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
    values: list[float] = vector.astype(np.float32).tolist()
    return values


def _token_counts(embedder: Any, texts: list[str]) -> list[int]:
    counter = getattr(embedder, "token_counts", None)
    return counter(texts) if counter is not None else [max(1, len(t) // 4) for t in texts]


async def _embed_all(services: Services, user_id: str, texts: list[str]) -> tuple[np.ndarray, int]:
    from backend.rag.embeddings import build_embedder

    embedder = build_embedder(services.settings)
    scheduler = services.embedding_scheduler
    assert scheduler is not None
    size = max(1, services.settings.embedding_batch_size)

    def work(batch: list[str]) -> tuple[np.ndarray, int]:
        return embedder.embed(batch), sum(_token_counts(embedder, batch))

    rows: list[np.ndarray] = []
    tokens = 0
    for begin in range(0, len(texts), size):
        async with scheduler.slot(user_id):
            matrix, used = await asyncio.to_thread(work, texts[begin : begin + size])
        rows.append(matrix)
        tokens += used
    return np.concatenate(rows, axis=0), tokens


@router.post("/embeddings", response_model=None, openapi_extra=json_body(EmbeddingRequest))
async def create_embeddings(
    request: Request,
    principal: Principal = Depends(current_user),
    services: Services = Depends(get_services),
) -> JSONResponse:
    payload = await read_json_object(request, services.settings)
    try:
        req = EmbeddingRequest.model_validate(payload)
    except ValidationError as exc:
        raise validation_error(exc) from None
    model_id = embedding_model_id(services)
    if req.model != model_id:
        raise NotFoundError(
            f"The model '{req.model}' does not exist or is not an embedding model; embeddings come from '{model_id}'.",
            param="model",
            code="model_not_found",
        )
    texts = parse_inputs(req.input, services.settings.embeddings_max_inputs)
    from backend.rag.embeddings import build_embedder

    embedder = build_embedder(services.settings)
    dim = await asyncio.to_thread(lambda: embedder.dim)  # an Ollama embedder asks its server once
    if req.dimensions is not None and req.dimensions != dim:
        raise BadRequestError(
            f"'{model_id}' returns {dim}-dimensional vectors and cannot shorten them; omit 'dimensions' or send {dim}.",
            param="dimensions",
            code="unsupported_value",
        )
    headers = enforce_user_limit(services, principal, sum(len(t) for t in texts) // 4)
    task = asyncio.create_task(_embed_all(services, principal.user_id, texts))
    watcher = asyncio.create_task(watch_disconnect(request, task))
    try:
        matrix, tokens = await task
    finally:
        watcher.cancel()
    services.rate_limiter.record_tokens(principal.user_id, tokens)
    services.metrics.tokens_in.labels(model_id, "embeddings").inc(tokens)
    fmt = req.encoding_format or "float"
    data = [{"object": "embedding", "index": i, "embedding": _encode(row, fmt)} for i, row in enumerate(matrix)]
    body = {"object": "list", "data": data, "model": req.model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
    return JSONResponse(body, headers=headers)
