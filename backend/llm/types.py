"""Provider-neutral request/response types (OpenAI-shaped messages and tools)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from backend.errors import BadRequestError

Message = dict[str, Any]  # OpenAI chat message: {"role": ..., "content": ..., "tool_calls"?: ...}
ToolSpec = dict[str, Any]  # {"type": "function", "function": {"name", "description", "parameters"}}


@dataclass
class GenerationParams:
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    max_tokens: int | None = None
    stop: list[str] | None = None
    seed: int | None = None
    # {"type": "json_object"} | {"type": "json_schema", "json_schema": {"name", "schema", ...}}
    response_format: dict[str, Any] | None = None
    tools: list[ToolSpec] | None = None
    # "auto" | "none" | "required" | {"type": "function", "function": {"name": ...}}
    tool_choice: str | dict[str, Any] | None = None
    # OpenAI's penalties (-2..2); every provider passes them to its runtime
    presence_penalty: float | None = None
    frequency_penalty: float | None = None


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: str  # a JSON document, as OpenAI sends it

    def to_openai(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_openai(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass
class Completion:
    content: str | None
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str = "stop"  # stop | length | tool_calls
    usage: Usage = field(default_factory=Usage)


@dataclass
class StreamEvent:
    """One piece of a streamed completion. Tool calls arrive whole, after any text."""

    content: str | None = None
    tool_calls: list[ToolCall] | None = None
    finish_reason: str | None = None
    usage: Usage | None = None


def message_text(content: Any, where: str = "messages", *, strict: bool = True) -> str:
    """A message's ``content`` as text: a string, or a list of text (and refusal) parts.

    The one "content → text" helper. Other parts (images, audio, files) are a 400 naming the part
    (``strict``), or skipped (the agents reading a history that was already checked).
    """
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        if strict:
            raise BadRequestError("Message content must be a string or a list of text parts.", param=where)
        return str(content)
    texts: list[str] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if isinstance(part, str):
            texts.append(part)
        elif kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "refusal":
            texts.append(str(part.get("refusal") or ""))
        elif strict:
            raise BadRequestError(
                f"Content parts of type '{kind or type(part).__name__}' are not supported by this server's "
                "models; send text.",
                param=f"{where}[{j}]",
                code="unsupported_content",
            )
    return "\n".join(texts)
