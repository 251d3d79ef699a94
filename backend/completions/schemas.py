"""The ``/v1/completions`` request, validated the way OpenAI's API validates it.

Unknown top-level fields are tolerated (SDKs add new ones); our own extra is ``check_syntax``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from backend.chat.schemas import StreamOptions, stop_sequences


class CompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=256)
    prompt: Any = Field(description="A string, or a list of strings (one choice each). Token arrays are refused.")
    suffix: str | None = Field(default=None, description="Text after the completion: fill-in-the-middle.")
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    n: int | None = Field(default=None, ge=1, le=128)
    best_of: int | None = Field(default=None, ge=0, le=20)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    logprobs: int | None = Field(default=None, ge=0, le=5)
    echo: bool | None = None
    stop: str | list[str] | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    seed: int | None = None
    user: str | None = None
    # --- our extension -------------------------------------------------------------
    check_syntax: Literal["python"] | None = Field(
        default=None,
        description="Return only text with which prompt + text + suffix parses as Python "
        "(trimmed at a line boundary, regenerated if need be); 422 if no attempt parses.",
    )

    @field_validator("stop")
    @classmethod
    def _stop(cls, value: str | list[str] | None) -> list[str] | None:
        return stop_sequences(value)
