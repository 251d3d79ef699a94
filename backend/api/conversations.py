"""``/api/conversations``: the caller's conversations only (another user's id is a 404).

Plain ``def`` handlers: FastAPI runs them in its thread pool, so reading and writing the JSON
files never holds up the event loop."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from backend.api.deps import current_user, get_services
from backend.services import Principal, Services
from backend.storage.conversations import summary

router = APIRouter(prefix="/api/conversations", tags=["conversations"])


class NewConversation(BaseModel):
    title: str | None = Field(default=None, max_length=500)


class ConversationPatch(BaseModel):
    title: str = Field(min_length=1, max_length=500)


@router.get("")
def list_conversations(limit: int = Query(20, ge=1, le=200), offset: int = Query(0, ge=0),
                             principal: Principal = Depends(current_user),
                             services: Services = Depends(get_services)) -> dict[str, Any]:
    items, total = services.conversations.list(principal.user_id, limit, offset)
    return {"data": items, "total": total, "has_more": offset + len(items) < total}


@router.post("", status_code=201)
def create_conversation(body: NewConversation | None = None, principal: Principal = Depends(current_user),
                              services: Services = Depends(get_services)) -> dict[str, Any]:
    conv = services.conversations.create(principal.user_id, body.title if body else None)
    return summary(conv)


@router.get("/{conversation_id}")
def get_conversation(conversation_id: str, principal: Principal = Depends(current_user),
                           services: Services = Depends(get_services)) -> dict[str, Any]:
    conv = services.conversations.get(principal.user_id, conversation_id)
    return {**summary(conv), "messages": conv.get("messages", [])}


@router.patch("/{conversation_id}")
def rename_conversation(conversation_id: str, body: ConversationPatch, principal: Principal = Depends(current_user),
                              services: Services = Depends(get_services)) -> dict[str, Any]:
    return services.conversations.rename(principal.user_id, conversation_id, body.title)


@router.delete("/{conversation_id}", status_code=204)
def delete_conversation(conversation_id: str, principal: Principal = Depends(current_user),
                              services: Services = Depends(get_services)) -> None:
    services.conversations.delete(principal.user_id, conversation_id)
