"""``/api/auth``: login (form or JSON), me, refresh, logout, optional self-registration."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from backend.api.deps import current_user, get_services
from backend.api.docs import json_body
from backend.auth.passwords import verify_password
from backend.auth.throttle import LoginThrottle
from backend.errors import AuthenticationError, BadRequestError, PermissionDeniedError
from backend.services import Principal, Services
from backend.storage.users import public_user

router = APIRouter(prefix="/api/auth", tags=["auth"])


class Credentials(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=4096)


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int
    user: dict[str, Any]


def _throttle(services: Services) -> LoginThrottle:
    t = services.extras.get("login_throttle")
    if t is None:
        t = services.extras["login_throttle"] = LoginThrottle(
            services.settings.login_max_failures, services.settings.login_window_s
        )
    return t


async def _credentials(request: Request) -> Credentials:
    ctype = request.headers.get("content-type", "")
    try:
        if ctype.startswith("application/x-www-form-urlencoded") or ctype.startswith("multipart/form-data"):
            form = await request.form()
            data = {"username": form.get("username"), "password": form.get("password")}
        else:
            data = json.loads(await request.body() or b"{}")
        return Credentials.model_validate(data)
    except (ValueError, TypeError, RecursionError):
        raise BadRequestError("Send 'username' and 'password' as JSON or form fields.", code="invalid_credentials_body") from None


def _issue(services: Services, user: dict[str, Any]) -> TokenResponse:
    token = services.tokens.issue(user["id"], int(user.get("password_version", 1)))
    return TokenResponse(access_token=token, expires_in=services.tokens.expiry_s, user=public_user(user))


@router.post("/login", response_model=TokenResponse, openapi_extra=json_body(Credentials, form=True))
async def login(request: Request, services: Services = Depends(get_services)) -> TokenResponse:
    creds = await _credentials(request)
    ip = request.client.host if request.client else "unknown"
    throttle = _throttle(services)
    throttle.check(creds.username, ip)
    user = services.users.by_username(creds.username)
    ok = await asyncio.to_thread(verify_password, creds.password, user["password_hash"] if user else None)
    if not ok or user is None or user.get("disabled"):
        throttle.failed(creds.username, ip)
        services.audit.record("login_failed", username=creds.username[:64], ip=ip)
        raise AuthenticationError("Incorrect username or password.", code="invalid_credentials")
    throttle.succeeded(creds.username)
    services.audit.record("login", user=user["id"], ip=ip)
    return _issue(services, user)


@router.post("/register", response_model=TokenResponse, status_code=201, openapi_extra=json_body(Credentials, form=True))
async def register(request: Request, services: Services = Depends(get_services)) -> TokenResponse:
    if not services.settings.allow_registration:
        raise PermissionDeniedError("Self-registration is disabled on this server.", code="registration_disabled")
    creds = await _credentials(request)  # any 'role' in the body is ignored: new accounts are users
    user = await asyncio.to_thread(services.users.create, creds.username, creds.password, "user")
    services.audit.record("register", user=user["id"])
    return _issue(services, user)


@router.get("/me")
async def me(principal: Principal = Depends(current_user), services: Services = Depends(get_services)) -> dict[str, Any]:
    user = services.users.get(principal.user_id)
    return public_user(user) if user else {"id": principal.user_id, "username": principal.username, "role": principal.role}


@router.post("/refresh", response_model=TokenResponse)
async def refresh(principal: Principal = Depends(current_user), services: Services = Depends(get_services)) -> TokenResponse:
    if principal.via != "jwt":
        raise BadRequestError("Only login tokens can be refreshed.", code="not_a_jwt")
    user = services.users.get(principal.user_id)
    if user is None:
        raise AuthenticationError()
    return _issue(services, user)


@router.post("/logout", status_code=204)
async def logout(request: Request, principal: Principal = Depends(current_user), services: Services = Depends(get_services)) -> None:
    if principal.via == "jwt":
        token = request.headers["authorization"].split(" ", 1)[1].strip()
        services.tokens.revoke(services.tokens.decode(token))
    services.audit.record("logout", user=principal.user_id)
