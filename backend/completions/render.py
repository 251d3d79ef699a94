"""A ``CompletionRun`` as OpenAI's ``text_completion`` body or SSE chunks (same shape, per OpenAI)."""

from __future__ import annotations

import json
from typing import Any

from backend.completions.run import CompletionRun


def _base(run: CompletionRun) -> dict[str, Any]:
    return {"id": run.id, "object": "text_completion", "created": run.created, "model": run.req.model}


def completion_body(run: CompletionRun) -> dict[str, Any]:
    choices = [
        {"index": c.index, "text": c.text, "finish_reason": c.finish_reason, "logprobs": None}
        for c in run.choices
    ]
    body = {**_base(run), "choices": choices, "usage": run.usage.to_openai()}
    if run.req.check_syntax:
        body["syntax_check"] = [
            {"index": c.index, "language": run.req.check_syntax, "attempts": c.attempts, "trimmed_chars": c.trimmed_chars}
            for c in run.choices
        ]
    return body


def frame(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


def chunk(run: CompletionRun, index: int, text: str, finish_reason: str | None) -> bytes:
    choice = {"index": index, "text": text, "finish_reason": finish_reason, "logprobs": None}
    return frame({**_base(run), "choices": [choice]})


def usage_chunk(run: CompletionRun) -> bytes:
    return frame({**_base(run), "choices": [], "usage": run.usage.to_openai()})
