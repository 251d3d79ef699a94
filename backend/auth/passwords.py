"""bcrypt password hashing.

bcrypt only reads the first 72 bytes of its input (bcrypt >= 4.1 raises on longer input), so
passwords are pre-hashed with SHA-256 and base64-encoded (44 bytes) before bcrypt: every byte of a
long password counts, and nothing is silently truncated.
"""

from __future__ import annotations

import base64
import hashlib

import bcrypt

from backend.errors import BadRequestError

MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 1024
_DUMMY_HASH = bcrypt.hashpw(b"timing-equaliser", bcrypt.gensalt(rounds=12))


def _prehash(password: str) -> bytes:
    return base64.b64encode(hashlib.sha256(password.encode("utf-8")).digest())


def validate_password(password: object) -> str:
    if not isinstance(password, str) or not (MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS):
        raise BadRequestError(
            f"Passwords must be {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters long.",
            param="password",
            code="invalid_password",
        )
    return password


def hash_password(password: str, rounds: int = 12) -> str:
    return bcrypt.hashpw(_prehash(password), bcrypt.gensalt(rounds=rounds)).decode("ascii")


def verify_password(password: str, hashed: str | None) -> bool:
    """Constant-ish time: an unknown user (``hashed=None``) still costs one bcrypt check."""
    if not isinstance(password, str) or len(password) > MAX_PASSWORD_CHARS:
        bcrypt.checkpw(b"x", _DUMMY_HASH)
        return False
    if not hashed:
        bcrypt.checkpw(_prehash(password), _DUMMY_HASH)
        return False
    try:
        return bcrypt.checkpw(_prehash(password), hashed.encode("ascii"))
    except ValueError:
        return False
