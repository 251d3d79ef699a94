"""``/api/account``: export my data, delete my account."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from backend.account import delete_user, export_user
from backend.api.deps import current_user, get_services
from backend.errors import PermissionDeniedError
from backend.services import Principal, Services

router = APIRouter(prefix="/api/account", tags=["account"])


def zip_response(data: bytes, name: str) -> Response:
    return Response(
        data,
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{name}"', "X-Content-Type-Options": "nosniff"},
    )


@router.get("/export", response_class=Response)
async def export_me(principal: Principal = Depends(current_user), services: Services = Depends(get_services)) -> Response:
    if principal.via == "anonymous":
        raise PermissionDeniedError("Log in to export your data.")
    services.audit.record("export", user=principal.user_id, by=principal.user_id)
    return zip_response(await export_user(services, principal.user_id), f"export-{principal.username}.zip")


@router.delete("", status_code=200)
async def delete_me(principal: Principal = Depends(current_user), services: Services = Depends(get_services)) -> dict[str, Any]:
    if principal.via == "anonymous":
        raise PermissionDeniedError("Log in to delete your account.")
    counts = await delete_user(services, principal.user_id)
    services.audit.record("account_deleted", user=principal.user_id, by=principal.user_id)
    return {"deleted": True, **counts}
