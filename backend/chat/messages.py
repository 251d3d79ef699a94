"""Validated request messages → the plain OpenAI-shaped dicts providers consume."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from backend.chat.schemas import (
    AssistantMessage,
    ChatCompletionRequest,
    ContentPart,
    DeveloperMessage,
    FunctionMessage,
    ToolMessage,
)
from backend.errors import BadRequestError, ContextLengthExceededError
from backend.llm.types import message_text
from backend.settings import Settings


def content_text(content: str | Sequence[ContentPart] | None, index: int) -> str:
    """``messages[index].content`` as text (``backend.llm.types.message_text``); non-text parts are a 400."""
    if isinstance(content, list):
        return message_text([part.model_dump() for part in content], f"messages[{index}].content")
    return message_text(content, f"messages[{index}].content")


def normalise_messages(req: ChatCompletionRequest, settings: Settings) -> list[dict[str, Any]]:
    if len(req.messages) > settings.max_messages:
        raise BadRequestError(
            f"Too many messages ({len(req.messages)}); the limit is {settings.max_messages}.",
            param="messages",
            code="too_many_messages",
        )
    out: list[dict[str, Any]] = []
    total = 0
    for i, msg in enumerate(req.messages):
        text = content_text(msg.content, i)
        if len(text) > settings.max_message_chars:
            raise BadRequestError(
                f"messages[{i}] is too long ({len(text)} characters; limit {settings.max_message_chars}).",
                param=f"messages[{i}].content",
                code="string_above_max_length",
            )
        total += len(text)
        if isinstance(msg, DeveloperMessage):
            out.append({"role": "system", "content": text})
        elif isinstance(msg, AssistantMessage):
            entry: dict[str, Any] = {"role": "assistant", "content": text if msg.content is not None else None}
            if msg.tool_calls:
                entry["tool_calls"] = [tc.model_dump(include={"id", "type", "function"}) for tc in msg.tool_calls]
            out.append(entry)
        elif isinstance(msg, ToolMessage):
            out.append({"role": "tool", "content": text, "tool_call_id": msg.tool_call_id})
        elif isinstance(msg, FunctionMessage):
            out.append({"role": "tool", "content": text, "tool_call_id": msg.name, "name": msg.name})
        else:
            out.append({"role": msg.role, "content": text})
    if total > settings.max_message_chars * 4:
        raise ContextLengthExceededError(
            f"The messages total {total} characters, more than this server accepts.", param="messages"
        )
    return out


def last_user_text(messages: list[dict[str, Any]]) -> str:
    for msg in reversed(messages):
        if msg["role"] == "user":
            return msg["content"] or ""
    return ""


def new_turn(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages after the last assistant turn: what this request adds to a conversation."""
    for i in range(len(messages) - 1, -1, -1):
        if messages[i]["role"] == "assistant":
            return [m for m in messages[i + 1 :] if m["role"] != "system"]
    return [m for m in messages if m["role"] != "system"]
