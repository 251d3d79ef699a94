"""``/api/auth``: login (form or JSON), me, refresh, logout, password change, optional self-registration."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from backend.api.deps import current_user, get_services, off_loop, slow_hash
from backend.api.docs import json_body
from backend.auth.password_change import change_password
from backend.auth.passwords import verify_password
from backend.auth.throttle import LoginThrottle, RegistrationThrottle
from backend.errors import AuthenticationError, BadRequestError, PermissionDeniedError
from backend.services import Principal, Services
from backend.shared_state import shared_state
from backend.storage.users import public_user

router = APIRouter(prefix="/api/auth", tags=["auth"])


class Credentials(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=4096)


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    current_password: str = Field(min_length=1, max_length=4096)
    new_password: str = Field(min_length=1, max_length=4096)


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int
    user: dict[str, Any]


def _throttle(services: Services) -> LoginThrottle:
    t = services.extras.get("login_throttle")
    if t is None:
        s = services.settings
        counter = shared_state(services).counter("login", s.login_max_failures, s.login_window_s,
                                                 s.login_throttle_max_keys)  # this process, or Redis
        t = services.extras.setdefault(
            "login_throttle",
            LoginThrottle(s.login_max_failures, s.login_window_s, s.login_throttle_max_keys, counter=counter),
        )
    return t


def _registrations(services: Services) -> RegistrationThrottle:
    t = services.extras.get("registration_throttle")
    if t is None:
        s = services.settings
        counter = shared_state(services).counter("register", s.registration_max_per_ip, s.registration_window_s,
                                                 s.login_throttle_max_keys)
        t = services.extras.setdefault(
            "registration_throttle",
            RegistrationThrottle(s.registration_max_per_ip, s.registration_window_s, s.login_throttle_max_keys,
                                 counter=counter),
        )
    return t


def _client_ip(request: Request) -> str:
    # uvicorn rewrites the client from X-Forwarded-For only for FORWARDED_ALLOW_IPS (the proxy)
    return request.client.host if request.client else "unknown"


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


def _bearer_token(request: Request) -> str:
    return request.headers["authorization"].split(" ", 1)[1].strip()


@router.post("/login", response_model=TokenResponse, openapi_extra=json_body(Credentials, form=True))
async def login(request: Request, services: Services = Depends(get_services)) -> TokenResponse:
    creds = await _credentials(request)
    ip = _client_ip(request)
    throttle = _throttle(services)
    throttle.check(creds.username, ip)
    user = await off_loop(services, services.users.by_username, creds.username)
    ok = await slow_hash(services, verify_password, creds.password, user["password_hash"] if user else None)
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
    ip = _client_ip(request)
    registrations = _registrations(services)
    registrations.check(ip)
    creds = await _credentials(request)  # any 'role' in the body is ignored: new accounts are users
    registrations.record(ip)  # attempts count, taken names and weak passwords included
    user = await slow_hash(services, services.users.create, creds.username, creds.password, "user")
    services.audit.record("register", user=user["id"], ip=ip)
    return _issue(services, user)


@router.get("/me")
async def me(principal: Principal = Depends(current_user), services: Services = Depends(get_services)) -> dict[str, Any]:
    user = await off_loop(services, services.users.get, principal.user_id)
    return public_user(user) if user else {"id": principal.user_id, "username": principal.username, "role": principal.role}


@router.post("/refresh", response_model=TokenResponse)
async def refresh(request: Request, principal: Principal = Depends(current_user),
                  services: Services = Depends(get_services)) -> TokenResponse:
    """A new token for a valid one; the old one is revoked (a stolen token cannot be kept alive)."""
    if principal.via != "jwt":
        raise BadRequestError("Only login tokens can be refreshed.", code="not_a_jwt")
    user = await off_loop(services, services.users.get, principal.user_id)
    if user is None:
        raise AuthenticationError()
    await off_loop(services, services.tokens.revoke, services.tokens.decode(_bearer_token(request)))
    return _issue(services, user)


@router.post("/logout", status_code=204)
async def logout(request: Request, principal: Principal = Depends(current_user), services: Services = Depends(get_services)) -> None:
    if principal.via == "jwt":
        await off_loop(services, services.tokens.revoke, services.tokens.decode(_bearer_token(request)))
    services.audit.record("logout", user=principal.user_id)


@router.post("/password", response_model=TokenResponse)
async def change_my_password(request: Request, body: PasswordChange, principal: Principal = Depends(current_user),
                             services: Services = Depends(get_services)) -> TokenResponse:
    """Change your own password (login session only). Every token and API key of the account is
    revoked; the answer carries a fresh token for this session."""
    ip = _client_ip(request)
    throttle = _throttle(services)
    throttle.check(principal.username, ip)
    user = await off_loop(services, services.users.require, principal.user_id)
    if not await slow_hash(services, verify_password, body.current_password, user["password_hash"]):
        throttle.failed(principal.username, ip)
        raise AuthenticationError("The current password is not correct.", code="invalid_credentials")
    await slow_hash(services, change_password, services, principal.user_id, body.new_password, by=principal.user_id)
    return _issue(services, await off_loop(services, services.users.require, principal.user_id))
