"""``/api/conversations``: the caller's conversations only (another user's id is a 404).

Plain ``def`` handlers: FastAPI runs them in its thread pool, so reading and writing the JSON
files never holds up the event loop. Search is bounded twice: it reads at most
``conversation_search_max_bytes`` of stored conversations per request, and one user runs at most
``conversation_search_per_user`` searches at once (more are a 429), so a user with many large
conversations cannot occupy the server's threads.
"""

from __future__ import annotations

import json
import re
import threading
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from backend.api.deps import current_user, get_services
from backend.chat.modes import MODE_ALIASES
from backend.errors import RateLimitError
from backend.services import Principal, Services
from backend.storage.conversations import message_text, summary

router = APIRouter(prefix="/api/conversations", tags=["conversations"])

CurrentUser = Annotated[Principal, Depends(current_user)]
ServicesDep = Annotated[Services, Depends(get_services)]
SYSTEM_PROMPT_CHARS = 8000


class NewConversation(BaseModel):
    title: str | None = Field(default=None, max_length=500)


class ConversationSettings(BaseModel):
    """Per-conversation defaults for ``/v1/chat/completions`` with this ``conversation_id``; ``null`` clears one."""

    model_config = ConfigDict(extra="forbid")

    system_prompt: str | None = Field(default=None, max_length=SYSTEM_PROMPT_CHARS)
    temperature: float | None = Field(default=None, ge=0, le=2)
    model: str | None = Field(default=None, min_length=1, max_length=200)
    mode: str | None = Field(default=None, description=f"One of {sorted(MODE_ALIASES)}.")

    @field_validator("mode")
    @classmethod
    def _known_mode(cls, value: str | None) -> str | None:
        if value is not None and value not in MODE_ALIASES:
            raise ValueError(f"mode must be one of {sorted(MODE_ALIASES)}")
        return value


class ConversationPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(default=None, min_length=1, max_length=500)
    settings: ConversationSettings | None = None

    @model_validator(mode="after")
    def _something(self) -> ConversationPatch:
        if self.title is None and self.settings is None:
            raise ValueError("send 'title', 'settings' or both")
        return self


class _SearchSlots:
    """How many searches each user is running in this process."""

    def __init__(self, per_user: int) -> None:
        self._per_user = per_user
        self._running: dict[str, int] = {}
        self._lock = threading.Lock()

    def take(self, user_id: str) -> None:
        with self._lock:
            if self._running.get(user_id, 0) >= self._per_user:
                raise RateLimitError(
                    "Your previous searches are still running; retry in a moment.", headers={"Retry-After": "1"}
                )
            self._running[user_id] = self._running.get(user_id, 0) + 1

    def give(self, user_id: str) -> None:
        with self._lock:
            left = self._running.get(user_id, 1) - 1
            if left > 0:
                self._running[user_id] = left
            else:
                self._running.pop(user_id, None)


def _slots(services: Services) -> _SearchSlots:
    slots = services.extras.get("conversation_search_slots")
    if slots is None:
        slots = services.extras.setdefault(
            "conversation_search_slots", _SearchSlots(services.settings.conversation_search_per_user)
        )
    return slots  # type: ignore[no-any-return]


@router.get("")
def list_conversations(
    principal: CurrentUser,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    offset: Annotated[int, Query(ge=0)] = 0,
    q: Annotated[str | None, Query(max_length=200, description="Search titles and message text (case-insensitive).")] = None,
) -> dict[str, Any]:
    """Newest first. With ``q``: only matches, each with a ``snippet`` (``null`` when only the title
    matched); ``truncated`` is true when the search stopped at its byte budget."""
    query = " ".join(q.split()) if q else ""
    if not query:
        items, total = services.conversations.list(principal.user_id, limit, offset)
        return {"data": items, "total": total, "has_more": offset + len(items) < total}
    slots = _slots(services)
    slots.take(principal.user_id)
    try:
        page = services.conversations.search(
            principal.user_id, query, limit, offset, max_bytes=services.settings.conversation_search_max_bytes
        )
    finally:
        slots.give(principal.user_id)
    return {
        "data": page.items,
        "total": page.total,
        "has_more": offset + len(page.items) < page.total,
        "truncated": page.truncated,
    }


@router.post("", status_code=201)
def create_conversation(principal: CurrentUser, services: ServicesDep, body: NewConversation | None = None) -> dict[str, Any]:
    conv = services.conversations.create(principal.user_id, body.title if body else None)
    return summary(conv)


@router.get("/{conversation_id}")
def get_conversation(conversation_id: str, principal: CurrentUser, services: ServicesDep) -> dict[str, Any]:
    conv = services.conversations.get(principal.user_id, conversation_id)
    return {**summary(conv), "messages": conv.get("messages", [])}


@router.patch("/{conversation_id}")
def update_conversation(
    conversation_id: str, body: ConversationPatch, principal: CurrentUser, services: ServicesDep
) -> dict[str, Any]:
    """Rename and/or change the conversation's settings (merged into the stored ones)."""
    settings = body.settings.model_dump(exclude_unset=True) if body.settings is not None else None
    return services.conversations.update(principal.user_id, conversation_id, title=body.title, settings=settings)


@router.delete("/{conversation_id}", status_code=204)
def delete_conversation(conversation_id: str, principal: CurrentUser, services: ServicesDep) -> None:
    services.conversations.delete(principal.user_id, conversation_id)


@router.delete("/{conversation_id}/messages/{index}")
def truncate_conversation(
    conversation_id: str,
    index: Annotated[int, Path(ge=0, description="The first message removed (0-based); every later one goes too.")],
    principal: CurrentUser,
    services: ServicesDep,
) -> dict[str, Any]:
    """Remove message ``index`` and all after it (regenerate, edit and resend); the conversation after it."""
    conv = services.conversations.truncate(principal.user_id, conversation_id, index)
    return {**summary(conv), "messages": conv.get("messages", [])}


_EXPORT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The conversation as an attachment.",
        "content": {"text/markdown": {"schema": {"type": "string"}}, "application/json": {"schema": {"type": "object"}}},
    }
}


@router.get("/{conversation_id}/export", response_class=Response, responses=_EXPORT_RESPONSES)
def export_conversation(
    conversation_id: str,
    principal: CurrentUser,
    services: ServicesDep,
    format: Annotated[Literal["md", "json"], Query(description="md: Markdown; json: the stored conversation.")] = "md",
) -> Response:
    conv = services.conversations.export(principal.user_id, conversation_id)
    name = f"{_slug(conv.get('title') or 'conversation')}-{conv['id']}.{format}"
    if format == "json":
        body = json.dumps(conv, ensure_ascii=False, indent=1).encode("utf-8")
        media_type = "application/json"
    else:
        body = conversation_markdown(conv).encode("utf-8")
        media_type = "text/markdown; charset=utf-8"
    return Response(
        body,
        media_type=media_type,
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, no-store",
        },
    )


def _slug(title: str) -> str:
    """A file-name-safe form of a title (ASCII letters, digits and dashes, at most 40)."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", title).strip("-").lower()[:40].strip("-")
    return slug or "conversation"


def conversation_markdown(conv: dict[str, Any]) -> str:
    """The title as a heading, then each message as ``## role`` and its text."""
    parts = [f"# {conv.get('title') or 'New conversation'}\n"]
    for message in conv.get("messages", []):
        text = message_text(message)
        if not text and message.get("tool_calls"):
            calls = [c.get("function", {}) for c in message["tool_calls"] if isinstance(c, dict)]
            text = "\n".join(f"Tool call: `{c.get('name')}({c.get('arguments', '')})`" for c in calls)
        parts.append(f"## {message.get('role', 'unknown')}\n\n{text}\n")
    return "\n".join(parts)
