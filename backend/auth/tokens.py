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
LEEWAY_S = 5
#: verified tokens remembered per process (signature and claims checked once per token; expiry and
#: revocation are checked on every use)
VERIFIED_CACHE_SIZE = 4096


@dataclass(frozen=True)
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
        self._verified: dict[str, TokenClaims] = {}  #: token -> its claims, once signature and claims checked

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
        """Verify ``token`` and return its claims, or raise 401. A token already verified here skips the
        HMAC and claim parsing (same token string, same secret: same result) until it expires; whether
        it was logged out is asked of the revocation store on every call."""
        claims = self._verified.get(token)
        if claims is None:
            claims = self._verify(token)
            if len(self._verified) >= VERIFIED_CACHE_SIZE:
                self._verified.clear()
            self._verified[token] = claims
        elif time.time() > claims.exp + LEEWAY_S:
            self._verified.pop(token, None)
            raise AuthenticationError("Your token has expired; log in again.", code="token_expired")
        if self._revoked.is_revoked(claims.jti):
            raise AuthenticationError("This token was logged out.", code="token_revoked")
        return claims

    def _verify(self, token: str) -> TokenClaims:
        try:
            payload = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                options={"require": REQUIRED_CLAIMS},
                leeway=LEEWAY_S,
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationError("Your token has expired; log in again.", code="token_expired") from None
        except jwt.PyJWTError:
            raise AuthenticationError("Invalid authentication token.", code="invalid_token") from None
        if not isinstance(payload.get("sub"), str) or not isinstance(payload.get("jti"), str):
            raise AuthenticationError("Invalid authentication token.", code="invalid_token")
        pwv = payload.get("pwv", 0)
        return TokenClaims(sub=payload["sub"], jti=payload["jti"], exp=int(payload["exp"]), pwv=int(pwv) if isinstance(pwv, int) else -1)

    def revoke(self, claims: TokenClaims) -> None:
        self._revoked.revoke(claims.jti, claims.exp)
