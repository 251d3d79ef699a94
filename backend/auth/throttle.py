"""Login throttling per username and per client IP (same answer for unknown users)."""

from __future__ import annotations

import math
import threading
import time
from collections import defaultdict, deque

from backend.errors import RateLimitError


class LoginThrottle:
    def __init__(self, max_failures: int, window_s: int) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._failures[key]
        while q and q[0] <= now - self.window_s:
            q.popleft()
        return q

    def check(self, username: str, ip: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in (f"user:{username.casefold()}", f"ip:{ip}"):
                q = self._recent(key, now)
                if len(q) >= self.max_failures:
                    retry = max(1, math.ceil(q[0] + self.window_s - now))
                    raise RateLimitError(
                        f"Too many failed logins; try again in {retry}s.",
                        code="too_many_login_attempts",
                        headers={"Retry-After": str(retry)},
                    )

    def failed(self, username: str, ip: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in (f"user:{username.casefold()}", f"ip:{ip}"):
                self._recent(key, now).append(now)

    def succeeded(self, username: str) -> None:
        with self._lock:
            self._failures.pop(f"user:{username.casefold()}", None)
