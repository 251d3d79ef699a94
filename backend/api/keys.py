"""``/api/keys``: long-lived API keys for OpenAI SDK clients (the secret is shown once).

A key gets the ``inference`` scope unless more are asked for; a key can only create keys with
scopes it holds itself, and ``admin`` is for administrators. Keys may expire (``expires_in_days``
or ``expires_at``); a password change or reset revokes them all.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from backend.api.deps import current_user, get_services, off_loop
from backend.auth.scopes import normalise_scopes
from backend.errors import BadRequestError, PermissionDeniedError
from backend.services import Principal, Services
from backend.storage.keys import public_key

router = APIRouter(prefix="/api/keys", tags=["keys"])
MAX_DAYS = 3650


class NewKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=64)
    scopes: list[str] | None = Field(default=None, max_length=16)
    expires_in_days: int | None = Field(default=None, ge=1, le=MAX_DAYS)
    expires_at: int | None = Field(default=None, ge=0)


def _real_user(principal: Principal) -> None:
    if principal.via == "anonymous":
        raise PermissionDeniedError("Log in to manage API keys.")


def _expiry(body: NewKey, max_days: int) -> int | None:
    now = int(time.time())
    if body.expires_in_days is not None and body.expires_at is not None:
        raise BadRequestError("Send either 'expires_in_days' or 'expires_at', not both.", param="expires_at")
    expires = now + body.expires_in_days * 86400 if body.expires_in_days is not None else body.expires_at
    if expires is not None and not now < expires <= now + MAX_DAYS * 86400:
        raise BadRequestError("'expires_at' must be in the future (at most ten years).", param="expires_at")
    if max_days and (expires is None or expires > now + max_days * 86400):
        raise BadRequestError(f"Keys on this server expire within {max_days} days; set 'expires_in_days'.",
                              param="expires_in_days", code="expiry_required")
    return expires


@router.post("", status_code=201)
async def create_key(body: NewKey | None = None, principal: Principal = Depends(current_user),
                     services: Services = Depends(get_services)) -> dict[str, Any]:
    _real_user(principal)
    body = body or NewKey()
    scopes = normalise_scopes(body.scopes)
    if "admin" in scopes and not principal.is_admin:
        raise PermissionDeniedError("Only administrators can create keys with the 'admin' scope.", code="insufficient_scope")
    beyond = [s for s in scopes if s not in principal.scopes]
    if beyond:
        raise PermissionDeniedError(f"A key cannot grant scopes it does not hold: {beyond}.", code="insufficient_scope")
    expires_at = _expiry(body, services.settings.api_key_max_days)
    user = await off_loop(services, services.users.require, principal.user_id)
    record, secret = await off_loop(services, services.keys.create, principal.user_id, body.name, scopes=scopes,
                                    expires_at=expires_at, password_version=int(user.get("password_version", 1)))
    services.audit.record("api_key_created", user=principal.user_id, key=record["id"], scopes=",".join(scopes))
    return {**public_key(record), "key": secret}


@router.get("")
async def list_keys(principal: Principal = Depends(current_user), services: Services = Depends(get_services)) -> dict[str, Any]:
    keys = await off_loop(services, services.keys.list_for, principal.user_id)
    return {"data": [public_key(k) for k in keys]}


@router.delete("/{key_id}", status_code=204)
async def revoke_key(key_id: str, principal: Principal = Depends(current_user), services: Services = Depends(get_services)) -> None:
    _real_user(principal)
    await off_loop(services, services.keys.revoke, principal.user_id, key_id)
    services.audit.record("api_key_revoked", user=principal.user_id, key=key_id)
