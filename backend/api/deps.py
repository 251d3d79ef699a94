"""FastAPI dependencies: the services container and the authenticated caller."""

from __future__ import annotations

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from backend.errors import AuthenticationError, PermissionDeniedError
from backend.services import Principal, Services
from backend.storage.keys import KEY_PREFIX

ANONYMOUS_USER_ID = "u_anonymous"
#: declares the scheme in OpenAPI ("Authorize" in /docs); the header itself is read by ``_bearer``
BEARER_SCHEME = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="A login token (POST /api/auth/login) or an API key (sk-...).",
)


def get_services(request: Request) -> Services:
    return request.app.state.services


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def authenticate(token: str | None, services: Services) -> Principal:
    """Resolve a bearer credential (JWT or API key) to a Principal, or raise 401."""
    if token is None:
        if services.settings.allow_anonymous:
            return Principal(ANONYMOUS_USER_ID, "anonymous", "user", "anonymous")
        raise AuthenticationError("Missing bearer token: send 'Authorization: Bearer <token or API key>'.")
    if token.startswith(KEY_PREFIX):
        record = services.keys.authenticate(token)
        if record is None:
            raise AuthenticationError("Incorrect API key provided.")
        user = services.users.get(record["user_id"])
        if user is None or user.get("disabled"):
            raise AuthenticationError("This API key's account is disabled or deleted.", code="account_disabled")
        return Principal(user["id"], user["username"], user["role"], "api_key", record["id"])
    claims = services.tokens.decode(token)
    user = services.users.get(claims.sub)
    if user is None:
        raise AuthenticationError("This token's account no longer exists.", code="invalid_token")
    if user.get("disabled"):
        raise AuthenticationError("This account is disabled.", code="account_disabled")
    if claims.pwv != int(user.get("password_version", 1)):
        raise AuthenticationError("This token predates a password or account change; log in again.", code="token_revoked")
    return Principal(user["id"], user["username"], user["role"], "jwt", claims.jti)


async def current_user(
    request: Request,
    services: Services = Depends(get_services),
    _declared: HTTPAuthorizationCredentials | None = Security(BEARER_SCHEME),
) -> Principal:
    cached = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    principal = authenticate(_bearer(request), services)
    request.state.principal = principal
    return principal


async def admin_user(principal: Principal = Depends(current_user)) -> Principal:
    if not principal.is_admin:
        raise PermissionDeniedError("This endpoint is for administrators.")
    return principal
