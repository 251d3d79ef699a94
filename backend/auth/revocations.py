"""Logged-out token ids (``jti``), each kept until the token would have expired anyway.

Two backends: ``FileRevocations`` (a JSON file under ``data/secrets``, the default: every process on
the same data directory sees it) and ``RedisRevocations`` (one key per ``jti`` with the token's
remaining lifetime as its TTL, for replicas sharing ``REDIS_URL``; Redis expires them itself).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from backend.storage.cached import CachedJsonFile
from backend.storage.jsonstore import JsonFile

if TYPE_CHECKING:
    from backend.shared_state import RedisConnection


class RevocationStore(Protocol):
    def is_revoked(self, jti: str) -> bool: ...

    def revoke(self, jti: str, expires_at: int) -> None: ...


class FileRevocations:
    """Asked on every authenticated request: a lookup costs one ``stat`` while the file is unchanged
    (``CachedJsonFile``), and a logout by any process replaces the file, so it is seen at once."""

    def __init__(self, path: Path) -> None:
        self._file = CachedJsonFile(path)

    def is_revoked(self, jti: str) -> bool:
        return jti in self._file.snapshot()

    def revoke(self, jti: str, expires_at: int) -> None:
        now = int(time.time())
        with self._file.update() as revoked:
            for old in [j for j, exp in revoked.items() if exp < now]:
                del revoked[old]
            revoked[jti] = expires_at


class RedisRevocations:
    """Revocations in Redis. ``legacy``: the file an in-process deployment kept them in; its unexpired
    entries are copied into Redis before the first lookup, so switching to ``REDIS_URL`` does not bring
    logged-out tokens back."""

    def __init__(self, redis: RedisConnection, legacy: Path | None = None) -> None:
        self._redis = redis
        self._legacy = legacy

    def _key(self, jti: str) -> str:
        return self._redis.key("revoked", jti)

    def _import_legacy(self) -> None:
        path, self._legacy = self._legacy, None
        if path is None or not path.exists():
            return
        now = int(time.time())
        entries = {j: int(exp) for j, exp in JsonFile(path).read().items() if isinstance(exp, int) and exp >= now}
        if not entries:
            return
        pipe = self._redis.client.pipeline(transaction=False)
        for jti, exp in entries.items():
            pipe.set(self._key(jti), "1", ex=max(1, exp - now + 10), nx=True)
        try:
            self._redis.call(pipe.execute)
        except Exception:
            self._legacy = path  # Redis down: try again at the next lookup
            raise

    def is_revoked(self, jti: str) -> bool:
        if self._legacy is not None:
            self._import_legacy()
        return bool(self._redis.call(self._redis.client.exists, self._key(jti)))

    def revoke(self, jti: str, expires_at: int) -> None:
        ttl = max(1, expires_at - int(time.time()) + 10)  # + the decoder's leeway
        self._redis.call(self._redis.client.set, self._key(jti), "1", ex=ttl)
