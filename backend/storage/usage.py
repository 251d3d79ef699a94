"""Per-user usage counters: answered requests and tokens, one small JSON file per user.

``{usage_dir}/{user_id}.json`` = ``{"requests", "prompt_tokens", "completion_tokens", "updated_at"}``.
``record_usage`` is a locked read-modify-write (``JsonFile.update``: ``flock`` plus an atomic
replace), so concurrent requests in threads or in other worker processes lose no count, and a
crash mid-write leaves the old or the new numbers. One file per user: one user's traffic never
waits on another's lock.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from backend.storage.ids import require_id
from backend.storage.jsonstore import JsonFile

COUNTERS = ("requests", "prompt_tokens", "completion_tokens")


def _empty() -> dict[str, Any]:
    return {key: 0 for key in COUNTERS}


class UsageStore:
    def __init__(self, root: Path) -> None:
        self._root = Path(root)

    def _file(self, user_id: str) -> JsonFile:
        require_id(user_id, "u", what="user")
        return JsonFile(self._root / f"{user_id}.json", _empty)

    def record_usage(self, user_id: str, prompt_tokens: int, completion_tokens: int) -> None:
        """Count one answered request and its tokens (negative numbers count as 0)."""
        with self._file(user_id).update() as counters:
            counters["requests"] = int(counters.get("requests", 0)) + 1
            counters["prompt_tokens"] = int(counters.get("prompt_tokens", 0)) + max(0, int(prompt_tokens))
            counters["completion_tokens"] = int(counters.get("completion_tokens", 0)) + max(0, int(completion_tokens))
            counters["updated_at"] = int(time.time())

    def get(self, user_id: str) -> dict[str, int]:
        """``{"requests", "prompt_tokens", "completion_tokens"}`` so far (zeros for a user never counted)."""
        stored = self._file(user_id).read()
        return {key: int(stored.get(key, 0)) for key in COUNTERS}

    def delete_user(self, user_id: str) -> bool:
        f = self._file(user_id)
        removed = f.delete()
        Path(str(f.path) + ".lock").unlink(missing_ok=True)
        return removed
