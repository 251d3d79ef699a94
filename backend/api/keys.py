"""``/api/keys``: long-lived API keys for OpenAI SDK clients (the secret is shown once)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from backend.api.deps import current_user, get_services
from backend.errors import PermissionDeniedError
from backend.services import Principal, Services
from backend.storage.keys import public_key

router = APIRouter(prefix="/api/keys", tags=["keys"])


class NewKey(BaseModel):
    name: str | None = Field(default=None, max_length=64)


def _real_user(principal: Principal) -> None:
    if principal.via == "anonymous":
        raise PermissionDeniedError("Log in to manage API keys.")


@router.post("", status_code=201)
async def create_key(body: NewKey | None = None, principal: Principal = Depends(current_user),
                     services: Services = Depends(get_services)) -> dict[str, Any]:
    _real_user(principal)
    record, secret = services.keys.create(principal.user_id, body.name if body else None)
    services.audit.record("api_key_created", user=principal.user_id, key=record["id"])
    return {**public_key(record), "key": secret}


@router.get("")
async def list_keys(principal: Principal = Depends(current_user), services: Services = Depends(get_services)) -> dict[str, Any]:
    return {"data": [public_key(k) for k in services.keys.list_for(principal.user_id)]}


@router.delete("/{key_id}", status_code=204)
async def revoke_key(key_id: str, principal: Principal = Depends(current_user), services: Services = Depends(get_services)) -> None:
    _real_user(principal)
    services.keys.revoke(principal.user_id, key_id)
    services.audit.record("api_key_revoked", user=principal.user_id, key=key_id)
