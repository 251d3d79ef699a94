"""The ``POST /v1/responses`` request, validated the way OpenAI's API validates it.

Unlike chat completions, unknown fields are refused (``unknown_parameter``), and fields OpenAI
defines but this server cannot honour are refused with ``unsupported_parameter`` unless they are
null/default — a client never has a setting silently dropped. ``input`` items and ``tools`` are
checked item by item in ``backend.responses.translate`` so errors name the exact ``param``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from backend.errors import BadRequestError

#: OpenAI fields this server does not implement: accepted only when null (or the listed no-op value)
REFUSED: dict[str, tuple[Any, ...]] = {
    "top_logprobs": (None, 0),
    "max_tool_calls": (None,),
    "prompt": (None,),
    "conversation": (None,),
    "context_management": (None,),
    "moderation": (None,),
    "prompt_cache_retention": (None,),
    "prompt_cache_options": (None,),
    "include": (None, []),
    "truncation": (None, "disabled"),
    "background": (None, False),
    "service_tier": (None, "auto", "default"),
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextParam(_Strict):
    format: dict[str, Any] | None = None
    verbosity: Literal["medium"] | None = None  # low/high cannot be honoured by the local model


class ReasoningParam(_Strict):
    effort: Literal["none"] | None = None  # the local model does not reason; agent steps come as reasoning items
    summary: Literal["auto", "concise", "detailed"] | None = None
    generate_summary: Literal["auto", "concise", "detailed"] | None = None


class StreamOptions(_Strict):
    include_obfuscation: bool | None = None  # no obfuscation padding is sent either way


class ResponsesRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # REFUSED keys land here; anything else was refused before

    model: str = Field(min_length=1, max_length=256)
    input: str | list[Any]
    instructions: str | None = Field(default=None, max_length=200_000)
    tools: list[Any] | None = Field(default=None, max_length=128)
    tool_choice: str | dict[str, Any] | None = None
    text: TextParam | None = None
    reasoning: ReasoningParam | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    metadata: dict[str, str] | None = None
    parallel_tool_calls: bool | None = None
    user: str | None = Field(default=None, max_length=256)
    safety_identifier: str | None = Field(default=None, max_length=64)
    prompt_cache_key: str | None = Field(default=None, max_length=256)
    store: bool | None = None
    previous_response_id: str | None = Field(default=None, max_length=128)
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    # --- our extensions (RAG over the caller's uploaded documents) -----------------
    file_ids: list[str] | None = Field(default=None, max_length=100)
    use_documents: bool | None = None

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is None:
            return None
        if len(value) > 16:
            raise ValueError("at most 16 metadata keys")
        for key, item in value.items():
            if len(key) > 64:
                raise ValueError(f"metadata key '{key[:64]}…' is longer than 64 characters")
            if len(item) > 512:
                raise ValueError(f"metadata value of '{key}' is longer than 512 characters")
        return value


KNOWN = set(ResponsesRequest.model_fields) | set(REFUSED)
#: ``include`` values that need nothing from us: reasoning items carry no encrypted content, and none is
#: needed to continue, because reasoning items are never replayed to the model
INCLUDABLE = {"reasoning.encrypted_content"}


def check_fields(payload: dict[str, Any]) -> None:
    """400 for a field OpenAI does not define, or one this server cannot honour."""
    for key, value in payload.items():
        if key == "include" and isinstance(value, list) and set(value) <= INCLUDABLE:
            continue
        if key not in KNOWN:
            raise BadRequestError(f"Unknown parameter: '{key}'.", param=key, code="unknown_parameter")
        allowed = REFUSED.get(key)
        if allowed is not None and not any(value == ok and type(value) is type(ok) for ok in allowed if ok is not None) \
                and value is not None:
            raise BadRequestError(
                f"The parameter '{key}' is not supported by this server"
                + (f" (accepted: {', '.join(repr(a) for a in allowed if a is not None)})." if len(allowed) > 1 else "."),
                param=key,
                code="unsupported_parameter",
            )


def _inline_defs(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline_defs(defs[ref.split("/")[-1]], defs)
        return {k: _inline_defs(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline_defs(v, defs) for v in node]
    return node


def request_body_openapi() -> dict[str, Any]:
    """The request body as an OpenAPI ``requestBody`` (for /docs and the schemathesis fuzzer)."""
    schema = ResponsesRequest.model_json_schema()
    return {"required": True, "content": {"application/json": {"schema": _inline_defs(schema, schema.get("$defs", {}))}}}
