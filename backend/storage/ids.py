"""Identifiers that may touch the filesystem are checked against strict patterns first."""

from __future__ import annotations

import re
import secrets

from backend.errors import BadRequestError, NotFoundError

_ID_RE = re.compile(r"^[a-z]{1,8}_[A-Za-z0-9]{8,40}$")
USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{1,31}$")


def new_id(prefix: str, nbytes: int = 12) -> str:
    """A random id such as ``conv_3f9a...``; only ``[A-Za-z0-9]`` after the prefix."""
    return f"{prefix}_{secrets.token_hex(nbytes)}"


def is_valid_id(value: object, prefix: str | None = None) -> bool:
    if not isinstance(value, str) or not _ID_RE.fullmatch(value):
        return False
    return prefix is None or value.startswith(prefix + "_")


def require_id(value: object, prefix: str, *, what: str = "resource") -> str:
    """Return ``value`` if it is a well-formed id, else a 404 (an id we never issued)."""
    if not is_valid_id(value, prefix):
        raise NotFoundError(f"No {what} found with id '{str(value)[:64]}'.")
    return str(value)


def require_username(value: str) -> str:
    if not isinstance(value, str) or not USERNAME_RE.fullmatch(value) or ".." in value:
        raise BadRequestError(
            "Usernames are 2-32 characters: letters, digits, '_', '.', '-', starting with a letter or digit.",
            param="username",
            code="invalid_username",
        )
    return value
