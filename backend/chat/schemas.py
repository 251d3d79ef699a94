"""The chat-completions request, validated the way OpenAI's API validates it.

Unknown top-level fields are tolerated (SDKs add new ones); our own extras are
``conversation_id``, ``mode``, ``file_ids`` and ``use_documents``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationInfo, field_validator, model_validator


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow")


class TextPart(_Loose):
    type: Literal["text"]
    text: str


class RefusalPart(_Loose):
    type: Literal["refusal"]
    refusal: str


class ImageURL(_Loose):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(_Loose):
    type: Literal["image_url"]
    image_url: ImageURL


class InputAudio(_Loose):
    data: str
    format: Literal["wav", "mp3"]


class AudioPart(_Loose):
    type: Literal["input_audio"]
    input_audio: InputAudio


class FileRef(_Loose):
    file_data: str | None = None
    file_id: str | None = None
    filename: str | None = None


class FilePart(_Loose):
    type: Literal["file"]
    file: FileRef


# OpenAI's part types per role: anything else (or a malformed part) is a 400, not a guess.
# Parts this server's text models cannot read (images, audio, files) are refused later with
# ``unsupported_content``; text and an assistant's refusal become the message text.
UserPart = Annotated[TextPart | ImagePart | AudioPart | FilePart, Field(discriminator="type")]
AssistantPart = Annotated[TextPart | RefusalPart, Field(discriminator="type")]
Content = str | Annotated[list[TextPart], Field(min_length=1)]
UserContent = str | Annotated[list[UserPart], Field(min_length=1)]
AssistantContent = str | Annotated[list[AssistantPart], Field(min_length=1)]
ContentPart = TextPart | RefusalPart | ImagePart | AudioPart | FilePart


class FunctionCall(_Loose):
    name: str = Field(min_length=1, max_length=64)
    arguments: str


class ToolCallIn(_Loose):
    id: str = Field(min_length=1, max_length=128)
    type: Literal["function"] = "function"
    function: FunctionCall


class SystemMessage(_Loose):
    role: Literal["system"]
    content: Content
    name: str | None = Field(default=None, max_length=256)


class DeveloperMessage(_Loose):
    role: Literal["developer"]
    content: Content
    name: str | None = None


class UserMessage(_Loose):
    role: Literal["user"]
    content: UserContent
    name: str | None = None


class AssistantMessage(_Loose):
    role: Literal["assistant"]
    content: AssistantContent | None = None
    tool_calls: list[ToolCallIn] | None = None
    name: str | None = None
    refusal: str | None = None

    @model_validator(mode="after")
    def _content_or_calls(self) -> AssistantMessage:
        if self.content is None and not self.tool_calls:
            raise ValueError("an assistant message needs 'content' or 'tool_calls'")
        return self


class ToolMessage(_Loose):
    role: Literal["tool"]
    content: Content
    tool_call_id: str = Field(min_length=1, max_length=128)


class FunctionMessage(_Loose):
    role: Literal["function"]
    content: str | None
    name: str


Message = Annotated[
    SystemMessage | DeveloperMessage | UserMessage | AssistantMessage | ToolMessage | FunctionMessage,
    Field(discriminator="role"),
]


class FunctionDef(_Loose):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None  # a JSON schema object (OpenAI: FunctionParameters)
    strict: bool | None = None


class ToolDef(_Loose):
    type: Literal["function"]
    function: FunctionDef


class _NamedFunction(_Loose):
    name: str = Field(min_length=1, max_length=64)


class NamedToolChoice(_Loose):
    type: Literal["function"]
    function: _NamedFunction


class _JsonSchemaSpec(_Loose):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class _FormatText(_Loose):
    type: Literal["text"]


class _FormatJsonObject(_Loose):
    type: Literal["json_object"]


class _FormatJsonSchema(_Loose):
    type: Literal["json_schema"]
    json_schema: _JsonSchemaSpec


# validated shapes of the fields the providers read as plain dicts/strings
_RESPONSE_FORMAT = TypeAdapter(
    Annotated[_FormatText | _FormatJsonObject | _FormatJsonSchema, Field(discriminator="type")]
)
_TOOL_CHOICE = TypeAdapter(Literal["none", "auto", "required"] | NamedToolChoice)


def stop_sequences(value: str | list[str] | None) -> list[str] | None:
    """OpenAI's ``stop``: one string or up to 4; empty ones dropped (chat and text completions)."""
    if value is None:
        return None
    stops = [value] if isinstance(value, str) else value
    if len(stops) > 4:
        raise ValueError("at most 4 stop sequences")
    return [s for s in stops if s]


class StreamOptions(_Loose):
    include_usage: bool | None = None


class ChatCompletionRequest(_Loose):
    model: str = Field(min_length=1, max_length=256)
    messages: list[Message] = Field(min_length=1)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int | None = Field(default=None, ge=1, le=128)
    response_format: dict[str, Any] | None = None
    tools: list[ToolDef] | None = Field(default=None, max_length=128)
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    user: str | None = None
    # --- our extensions ---------------------------------------------------------
    conversation_id: str | None = Field(default=None, max_length=64)
    mode: Literal["auto", "chat", "react", "plan-execute", "plan_execute", "code"] | None = None
    file_ids: list[str] | None = Field(default=None, max_length=100)
    use_documents: bool | None = None

    @field_validator("stop")
    @classmethod
    def _stop(cls, value: str | list[str] | None) -> list[str] | None:
        return stop_sequences(value)

    @field_validator("response_format")
    @classmethod
    def _response_format(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            _RESPONSE_FORMAT.validate_python(value)
        return value

    @field_validator("tool_choice")
    @classmethod
    def _tool_choice(cls, value: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
        if value is not None:
            _TOOL_CHOICE.validate_python(value)
        return value

    @field_validator("max_tokens", "max_completion_tokens")
    @classmethod
    def _max_tokens(cls, value: int | None, info: ValidationInfo) -> int | None:
        limit = (info.context or {}).get("max_tokens_limit")
        if value is not None and limit is not None and value > limit:
            raise ValueError(f"at most {limit} tokens can be generated per request on this server")
        return value
