"""``/api/admin``: user administration (admins only)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field

from backend.account import delete_user, export_user
from backend.api.account import zip_response
from backend.api.deps import admin_user, get_services, off_loop, slow_hash
from backend.auth.password_change import change_password
from backend.errors import BadRequestError
from backend.services import Principal, Services
from backend.storage.users import public_user

router = APIRouter(prefix="/api/admin", tags=["admin"])


class NewUser(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=4096)
    role: Literal["admin", "user"] = "user"


class UserPatch(BaseModel):
    disabled: bool | None = None
    password: str | None = Field(default=None, max_length=4096)


def _usage(services: Services, rag: Any, user_id: str) -> dict[str, int]:
    """Answered requests and tokens (the usage counters), documents and their bytes (the catalog)."""
    return {**services.usage.get(user_id), **rag.usage(user_id)}


@router.get("/users")
async def list_users(limit: int = Query(50, ge=1, le=500), offset: int = Query(0, ge=0),
                     _: Principal = Depends(admin_user), services: Services = Depends(get_services)) -> dict[str, Any]:
    users, total = await off_loop(services, services.users.list, limit, offset)
    rag = await services.rag()

    def with_usage() -> list[dict[str, Any]]:
        return [{**public_user(u), "usage": _usage(services, rag, u["id"])} for u in users]

    data = await off_loop(services, with_usage)
    return {"data": data, "total": total, "has_more": offset + len(users) < total}


@router.get("/users/{user_id}/usage")
async def user_usage(user_id: str, _: Principal = Depends(admin_user), services: Services = Depends(get_services)) -> dict[str, int]:
    """``{"requests", "prompt_tokens", "completion_tokens", "documents", "bytes"}`` of one user."""
    await off_loop(services, services.users.require, user_id)
    rag = await services.rag()
    return await off_loop(services, _usage, services, rag, user_id)


@router.post("/users", status_code=201)
async def create_user(body: NewUser, admin: Principal = Depends(admin_user), services: Services = Depends(get_services)) -> dict[str, Any]:
    user = await slow_hash(services, services.users.create, body.username, body.password, body.role)
    services.audit.record("user_created", user=user["id"], by=admin.user_id, role=body.role)
    return public_user(user)


@router.patch("/users/{user_id}")
async def update_user(user_id: str, body: UserPatch, admin: Principal = Depends(admin_user),
                      services: Services = Depends(get_services)) -> dict[str, Any]:
    await off_loop(services, services.users.require, user_id)
    if body.disabled is not None:
        if user_id == admin.user_id and body.disabled:
            raise BadRequestError("You cannot disable your own account.")
        await off_loop(services, services.users.set_disabled, user_id, body.disabled)
        services.audit.record("user_disabled" if body.disabled else "user_enabled", user=user_id, by=admin.user_id)
    if body.password is not None:
        await slow_hash(services, change_password, services, user_id, body.password, by=admin.user_id)
    return public_user(await off_loop(services, services.users.require, user_id))


@router.get("/users/{user_id}/export", response_class=Response)
async def export_any(user_id: str, admin: Principal = Depends(admin_user), services: Services = Depends(get_services)) -> Response:
    user = await off_loop(services, services.users.require, user_id)
    services.audit.record("export", user=user_id, by=admin.user_id)
    return zip_response(await export_user(services, user_id), f"export-{user['username']}.zip")


@router.delete("/users/{user_id}")
async def delete_any(user_id: str, admin: Principal = Depends(admin_user), services: Services = Depends(get_services)) -> dict[str, Any]:
    if user_id == admin.user_id:
        raise BadRequestError("Delete your own account with DELETE /api/account.")
    counts = await delete_user(services, user_id)
    services.audit.record("account_deleted", user=user_id, by=admin.user_id)
    return {"deleted": True, **counts}
