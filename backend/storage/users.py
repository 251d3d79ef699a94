"""Users in ``data/users/users.json``: ``{"users": {user_id: {...}}}``.

Read on every authenticated request, so reads come from a ``CachedJsonFile`` (one ``stat`` while the
file is unchanged; a change by any process is seen on the next read). Records handed out are copies.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from backend.auth.passwords import hash_password, validate_password
from backend.errors import BadRequestError, ConflictError, NotFoundError
from backend.storage.cached import CachedJsonFile
from backend.storage.ids import new_id, require_id, require_username

ROLES = ("admin", "user")
PUBLIC_FIELDS = ("id", "username", "role", "disabled", "created_at")


def public_user(record: dict[str, Any]) -> dict[str, Any]:
    return {k: record.get(k) for k in PUBLIC_FIELDS}


class UserStore:
    def __init__(self, path: Path, bcrypt_rounds: int = 12) -> None:
        self._file = CachedJsonFile(path, lambda: {"users": {}})
        self._rounds = bcrypt_rounds

    def _all(self) -> dict[str, dict[str, Any]]:
        """The cached document's users: read-only (copy a record before handing it out)."""
        users: dict[str, dict[str, Any]] = self._file.snapshot().get("users", {})
        return users

    def count(self) -> int:
        return len(self._all())

    def get(self, user_id: str) -> dict[str, Any] | None:
        user = self._all().get(user_id)
        return dict(user) if user is not None else None

    def require(self, user_id: str) -> dict[str, Any]:
        require_id(user_id, "u", what="user")
        user = self.get(user_id)
        if user is None:
            raise NotFoundError(f"No user found with id '{user_id}'.")
        return user

    def by_username(self, username: str) -> dict[str, Any] | None:
        key = username.casefold()
        for user in self._all().values():
            if user["username"].casefold() == key:
                return dict(user)
        return None

    def list(self, limit: int = 100, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        users = sorted(self._all().values(), key=lambda u: u["created_at"])
        return [dict(u) for u in users[offset : offset + limit]], len(users)

    def create(self, username: str, password: str, role: str = "user") -> dict[str, Any]:
        require_username(username)
        validate_password(password)
        if role not in ROLES:
            raise BadRequestError(f"role must be one of {ROLES}", param="role")
        password_hash = hash_password(password, self._rounds)  # slow: outside the lock
        record = {
            "id": new_id("u"),
            "username": username,
            "role": role,
            "disabled": False,
            "created_at": int(time.time()),
            "password_hash": password_hash,
            "password_version": 1,
        }
        with self._file.update() as data:
            users = data.setdefault("users", {})
            if any(u["username"].casefold() == username.casefold() for u in users.values()):
                raise ConflictError(f"The username '{username}' is taken.", param="username", code="username_taken")
            users[record["id"]] = record
        return record

    def set_password(self, user_id: str, password: str) -> None:
        validate_password(password)
        password_hash = hash_password(password, self._rounds)
        with self._file.update() as data:
            user = data.get("users", {}).get(user_id)
            if user is None:
                raise NotFoundError(f"No user found with id '{user_id}'.")
            user["password_hash"] = password_hash
            user["password_version"] = int(user.get("password_version", 1)) + 1

    def set_disabled(self, user_id: str, disabled: bool) -> dict[str, Any]:
        with self._file.update() as data:
            user = data.get("users", {}).get(user_id)
            if user is None:
                raise NotFoundError(f"No user found with id '{user_id}'.")
            user["disabled"] = disabled
            user["password_version"] = int(user.get("password_version", 1)) + 1
            return dict(user)

    def delete(self, user_id: str) -> bool:
        with self._file.update() as data:
            return data.get("users", {}).pop(user_id, None) is not None
