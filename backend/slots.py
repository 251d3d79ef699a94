"""Per-user concurrency slots: how many of one kind of request each user has running in this process."""

from __future__ import annotations

import threading

from backend.errors import RateLimitError


class PerUserSlots:
    """How many searches (or other bounded work) each user is running in this process."""

    def __init__(self, per_user: int) -> None:
        self._per_user = per_user
        self._running: dict[str, int] = {}
        self._lock = threading.Lock()

    def take(self, user_id: str) -> None:
        with self._lock:
            if self._running.get(user_id, 0) >= self._per_user:
                raise RateLimitError(
                    "Your previous searches are still running; retry in a moment.", headers={"Retry-After": "1"}
                )
            self._running[user_id] = self._running.get(user_id, 0) + 1

    def give(self, user_id: str) -> None:
        with self._lock:
            left = self._running.get(user_id, 1) - 1
            if left > 0:
                self._running[user_id] = left
            else:
                self._running.pop(user_id, None)
