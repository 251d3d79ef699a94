"""JWT access tokens (PyJWT, HS256 pinned).

Claims: ``sub`` (user id), ``exp``, ``iat``, ``nbf``, ``jti``, ``pwv`` (the user's password
version: changing the password or disabling the account invalidates older tokens). Logout
revokes one ``jti`` (kept until it would have expired anyway) in a ``RevocationStore``
(``backend.auth.revocations``: a file under data/, or Redis when replicas share ``REDIS_URL``).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from backend.auth.revocations import FileRevocations, RevocationStore
from backend.errors import AuthenticationError

ALGORITHM = "HS256"  # pinned: never taken from the token header
REQUIRED_CLAIMS = ["exp", "iat", "nbf", "sub", "jti"]


@dataclass
class TokenClaims:
    sub: str
    jti: str
    exp: int
    pwv: int


class TokenService:
    def __init__(self, secret: str, expiry_minutes: int, revoked: Path | RevocationStore) -> None:
        self._secret = secret
        self._expiry_s = expiry_minutes * 60
        self._revoked: RevocationStore = FileRevocations(revoked) if isinstance(revoked, Path) else revoked

    @property
    def expiry_s(self) -> int:
        return self._expiry_s

    def issue(self, user_id: str, password_version: int) -> str:
        now = int(time.time())
        payload: dict[str, Any] = {
            "sub": user_id,
            "iat": now,
            "nbf": now,
            "exp": now + self._expiry_s,
            "jti": secrets.token_hex(16),
            "pwv": password_version,
        }
        return jwt.encode(payload, self._secret, algorithm=ALGORITHM)

    def decode(self, token: str) -> TokenClaims:
        try:
            payload = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                options={"require": REQUIRED_CLAIMS},
                leeway=5,
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationError("Your token has expired; log in again.", code="token_expired") from None
        except jwt.PyJWTError:
            raise AuthenticationError("Invalid authentication token.", code="invalid_token") from None
        if not isinstance(payload.get("sub"), str) or not isinstance(payload.get("jti"), str):
            raise AuthenticationError("Invalid authentication token.", code="invalid_token")
        if self._revoked.is_revoked(payload["jti"]):
            raise AuthenticationError("This token was logged out.", code="token_revoked")
        pwv = payload.get("pwv", 0)
        return TokenClaims(sub=payload["sub"], jti=payload["jti"], exp=int(payload["exp"]), pwv=int(pwv) if isinstance(pwv, int) else -1)

    def revoke(self, claims: TokenClaims) -> None:
        self._revoked.revoke(claims.jti, claims.exp)
