"""FastAPI dependencies: the services container, the authenticated caller and its scopes."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from backend.auth.scopes import ALL_SCOPES, ANONYMOUS_SCOPES, DEFAULT_KEY_SCOPES, required_scope
from backend.errors import AuthenticationError, PermissionDeniedError
from backend.middleware import is_loopback_host
from backend.services import Principal, Services
from backend.storage.keys import KEY_PREFIX

ANONYMOUS_USER_ID = "u_anonymous"
#: declares the scheme in OpenAPI ("Authorize" in /docs); the header itself is read by ``_bearer``
BEARER_SCHEME = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="A login token (POST /api/auth/login) or an API key (sk-...).",
)
T = TypeVar("T")


async def get_services(request: Request) -> Services:
    """``async`` on purpose: FastAPI runs a plain ``def`` dependency in a worker thread, a thread hop
    on every request for one attribute read."""
    services: Services = request.app.state.services
    return services



async def off_loop(services: Services, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a JSON-store read/write off the event loop, in a pool of its own: long jobs in the
    default executor (ingestion, parsing) cannot make authentication wait."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(services.store_pool, functools.partial(fn, *args, **kwargs))


async def slow_hash(services: Services, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """bcrypt, in two threads of its own: a burst of logins cannot occupy every thread."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(services.hash_pool, functools.partial(fn, *args, **kwargs))


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def _looks_like_jwt(token: str) -> bool:
    return token.startswith("eyJ") and token.count(".") == 2


def _anonymous() -> Principal:
    return Principal(ANONYMOUS_USER_ID, "anonymous", "user", "anonymous", scopes=ANONYMOUS_SCOPES)


def authenticate(token: str | None, services: Services, *, loopback: bool = True, touch: bool = True) -> Principal:
    """Resolve a bearer credential (JWT or API key) to a Principal, or raise 401.

    With ``ALLOW_ANONYMOUS`` on a loopback connection, a request without credentials, or with a
    value that is not one of ours (local clients send dummy keys such as ``sk-no-key``), is the
    anonymous user; our own keys and tokens are still checked, so an expired one is a 401.
    ``touch=False``: an API key's ``last_used_at`` is left for the caller to record (off the loop).
    """
    anonymous_ok = services.settings.allow_anonymous and loopback
    if token is None or (anonymous_ok and not token.startswith(KEY_PREFIX) and not _looks_like_jwt(token)):
        if anonymous_ok:
            return _anonymous()
        raise AuthenticationError("Missing bearer token: send 'Authorization: Bearer <token or API key>'.")
    if token.startswith(KEY_PREFIX):
        return _key_principal(token, services, touch)
    claims = services.tokens.decode(token)
    user = services.users.get(claims.sub)
    if user is None:
        raise AuthenticationError("This token's account no longer exists.", code="invalid_token")
    if user.get("disabled"):
        raise AuthenticationError("This account is disabled.", code="account_disabled")
    if claims.pwv != int(user.get("password_version", 1)):
        raise AuthenticationError("This token predates a password or account change; log in again.", code="token_revoked")
    return Principal(user["id"], user["username"], user["role"], "jwt", claims.jti, scopes=ALL_SCOPES)


def _key_principal(token: str, services: Services, touch: bool = True) -> Principal:
    record = services.keys.authenticate(token, touch=touch)
    if record is None:
        raise AuthenticationError("Incorrect API key provided.")
    if record.get("expires_at") is not None and record["expires_at"] <= time.time():
        raise AuthenticationError("This API key has expired; create a new one.", code="api_key_expired")
    user = services.users.get(record["user_id"])
    if user is None or user.get("disabled"):
        raise AuthenticationError("This API key's account is disabled or deleted.", code="account_disabled")
    if "pwv" in record and record["pwv"] != int(user.get("password_version", 1)):
        raise AuthenticationError("This API key was revoked by a password or account change.", code="api_key_revoked")
    scopes = frozenset(record.get("scopes") or DEFAULT_KEY_SCOPES)
    return Principal(user["id"], user["username"], user["role"], "api_key", record["id"], scopes=scopes)


def _auth_inline(services: Services) -> bool:
    """Authentication inline, without a thread hop: it reads local files through caches (users and
    keys: one ``stat`` each while unchanged; a JWT check is one HMAC). With state shared over the
    network (``REDIS_URL``: revocations, throttles) it may wait on a socket, so it runs off the loop."""
    return services.settings.redis_url is None


def _route_path(request: Request) -> str:
    route = request.scope.get("route")
    return getattr(route, "path", None) or request.url.path


async def current_user(
    request: Request,
    services: Services = Depends(get_services),
    _declared: HTTPAuthorizationCredentials | None = Security(BEARER_SCHEME),
) -> Principal:
    cached = getattr(request.state, "principal", None)
    if isinstance(cached, Principal):
        return cached
    server = request.scope.get("server")
    loopback = server is not None and is_loopback_host(str(server[0]))
    if _auth_inline(services):
        principal = authenticate(_bearer(request), services, loopback=loopback, touch=False)
        if principal.via == "api_key" and principal.token_id and services.keys.touch_due(principal.token_id):
            await off_loop(services, services.keys.touch, principal.token_id)  # a locked write: once a minute
    else:
        principal = await off_loop(services, authenticate, _bearer(request), services, loopback=loopback)
    needed = required_scope(request.method, _route_path(request))
    if needed not in principal.scopes:
        if principal.via == "api_key":
            raise PermissionDeniedError(
                f"This API key lacks the '{needed}' scope: use a login session, or a key created with that scope.",
                code="insufficient_scope",
            )
        raise PermissionDeniedError("Log in to use this endpoint.", code="login_required")
    request.state.principal = principal
    return principal


async def admin_user(principal: Principal = Depends(current_user)) -> Principal:
    if not principal.is_admin:
        raise PermissionDeniedError("This endpoint is for administrators.")
    return principal
