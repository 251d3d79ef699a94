"""API keys for OpenAI SDK clients. Only a SHA-256 of each key is stored; the key is shown once.

Read on every request made with a key: reads come from a ``CachedJsonFile`` (one ``stat`` while the
file is unchanged; a revocation by any process is seen on the next request), with an index from
digest to key id rebuilt when the document changes. Records handed out are copies.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from pathlib import Path
from typing import Any

from backend.errors import BadRequestError, NotFoundError
from backend.storage.cached import CachedJsonFile
from backend.storage.ids import new_id, require_id

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
        self._file = CachedJsonFile(path, lambda: {"keys": {}})
        # (the keys dict it indexes, held so it is compared by identity; digest -> key id)
        self._index: tuple[dict[str, dict[str, Any]] | None, dict[str, str]] = (None, {})

    def _all(self) -> dict[str, dict[str, Any]]:
        """The cached document's keys: read-only (copy a record before handing it out)."""
        keys: dict[str, dict[str, Any]] = self._file.snapshot().get("keys", {})
        return keys

    def _by_digest(self, keys: dict[str, dict[str, Any]]) -> dict[str, str]:
        built_for, index = self._index
        if built_for is not keys:
            index = {r["digest"]: k for k, r in keys.items() if isinstance(r.get("digest"), str)}
            self._index = (keys, index)
        return index

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
        mine = [_copy(k) for k in self._all().values() if k["user_id"] == user_id]
        return sorted(mine, key=lambda k: k["created_at"])

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

    def authenticate(self, presented: str, *, touch: bool = True) -> dict[str, Any] | None:
        """The key's record, or None. ``touch``: record the use now (a locked write, at most once a
        minute per key); callers on the event loop pass False and call ``touch`` off the loop."""
        if not presented.startswith(KEY_PREFIX) or len(presented) > 200:
            return None
        digest = _digest(presented)
        keys = self._all()
        record = keys.get(self._by_digest(keys).get(digest, ""))
        if record is None or not hmac.compare_digest(record["digest"], digest):
            return None
        record = _copy(record)
        if touch and self.touch_due(record["id"]):
            self.touch(record["id"])
        return record

    def touch_due(self, key_id: str) -> bool:
        """Whether ``last_used_at`` of this key is older than its resolution (one minute)."""
        record = self._all().get(key_id)
        return record is not None and (record.get("last_used_at") or 0) < int(time.time()) - _LAST_USED_RESOLUTION_S

    def touch(self, key_id: str) -> None:
        with self._file.update() as data:
            live = data.get("keys", {}).get(key_id)
            if live is not None:
                live["last_used_at"] = int(time.time())

def _copy(record: dict[str, Any]) -> dict[str, Any]:
    out = dict(record)
    if isinstance(out.get("scopes"), list):
        out["scopes"] = list(out["scopes"])
    return out
