"""Turning a chat request's messages into what the agents need: the question and a trimmed history."""

from __future__ import annotations

from typing import Any

from backend.llm.types import Message, message_text

#: how much prior conversation goes into an agent prompt (characters, ~4 per token)
HISTORY_CHAR_BUDGET = 6000


def text_of(content: Any) -> str:
    """The text of an OpenAI message ``content`` (a string or a list of parts; others skipped)."""
    return message_text(content, strict=False)


def last_user_text(messages: list[Message]) -> str:
    for m in reversed(messages):
        if m.get("role") == "user":
            return text_of(m.get("content"))
    return ""


def split_conversation(messages: list[Message]) -> tuple[str, list[Message]]:
    """(the client's system text, the user/assistant turns as plain text, trimmed from the oldest).

    The last user turn is always kept. Client tool messages are dropped: in agent modes the
    server's tools are used, not the client's.
    """
    system = "\n".join(text_of(m.get("content")) for m in messages if m.get("role") in ("system", "developer")).strip()
    turns: list[Message] = []
    for m in messages:
        role = m.get("role")
        text = text_of(m.get("content")).strip()
        if role in ("user", "assistant") and text:
            turns.append({"role": role, "content": text})
    kept: list[Message] = []
    used = 0
    for m in reversed(turns):
        size = len(m["content"])
        if kept and used + size > HISTORY_CHAR_BUDGET:
            break
        kept.append(m)
        used += size
    kept.reverse()
    while kept and kept[0]["role"] != "user":
        kept.pop(0)
    return system, kept
