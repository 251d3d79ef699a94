"""API keys for OpenAI SDK clients. Only a SHA-256 of each key is stored; the key is shown once."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from pathlib import Path
from typing import Any

from backend.errors import BadRequestError, NotFoundError
from backend.storage.ids import new_id, require_id
from backend.storage.jsonstore import JsonFile

KEY_PREFIX = "sk-local-"
PUBLIC_FIELDS = ("id", "name", "prefix", "scopes", "created_at", "expires_at", "last_used_at")
_LAST_USED_RESOLUTION_S = 60


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def public_key(record: dict[str, Any]) -> dict[str, Any]:
    out = {k: record.get(k) for k in PUBLIC_FIELDS}
    out["scopes"] = out["scopes"] or ["inference"]  # keys made before scopes existed are inference-only
    return out


class ApiKeyStore:
    def __init__(self, path: Path) -> None:
        self._file = JsonFile(path, lambda: {"keys": {}})

    def _all(self) -> dict[str, dict[str, Any]]:
        return self._file.read().get("keys", {})

    def create(
        self,
        user_id: str,
        name: str | None,
        *,
        scopes: list[str] | None = None,
        expires_at: int | None = None,
        password_version: int = 1,
    ) -> tuple[dict[str, Any], str]:
        """``scopes`` are validated by the caller (``backend.auth.scopes``); ``password_version``
        ties the key to the current password: a change or reset revokes it."""
        name = (name or "").strip()[:64] or "default"
        if any(ord(c) < 32 for c in name):
            raise BadRequestError("Key names cannot contain control characters.", param="name")
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        record = {
            "id": new_id("key"),
            "user_id": user_id,
            "name": name,
            "prefix": secret[: len(KEY_PREFIX) + 4] + "…",
            "digest": _digest(secret),
            "scopes": list(scopes or ["inference"]),
            "created_at": int(time.time()),
            "expires_at": expires_at,
            "last_used_at": None,
            "pwv": password_version,
        }
        with self._file.update() as data:
            data.setdefault("keys", {})[record["id"]] = record
        return record, secret

    def list_for(self, user_id: str) -> list[dict[str, Any]]:
        return sorted((k for k in self._all().values() if k["user_id"] == user_id), key=lambda k: k["created_at"])

    def revoke(self, user_id: str, key_id: str) -> None:
        require_id(key_id, "key", what="API key")
        with self._file.update() as data:
            keys = data.setdefault("keys", {})
            record = keys.get(key_id)
            if record is None or record["user_id"] != user_id:
                raise NotFoundError(f"No API key found with id '{key_id}'.")
            del keys[key_id]

    def delete_user(self, user_id: str) -> int:
        with self._file.update() as data:
            keys = data.setdefault("keys", {})
            doomed = [k for k, r in keys.items() if r["user_id"] == user_id]
            for k in doomed:
                del keys[k]
            return len(doomed)

    def authenticate(self, presented: str) -> dict[str, Any] | None:
        if not presented.startswith(KEY_PREFIX) or len(presented) > 200:
            return None
        digest = _digest(presented)
        for record in self._all().values():
            if hmac.compare_digest(record["digest"], digest):
                now = int(time.time())
                if (record.get("last_used_at") or 0) < now - _LAST_USED_RESOLUTION_S:
                    with self._file.update() as data:
                        live = data.get("keys", {}).get(record["id"])
                        if live is not None:
                            live["last_used_at"] = now
                return record
        return None
