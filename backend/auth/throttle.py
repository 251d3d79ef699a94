"""Login and registration throttling (same answer for unknown users), in bounded memory.

Each key (``user:<name>``, ``ip:<address>``) keeps at most ``limit`` timestamps, and at most
``max_keys`` keys are remembered: when full, expired keys go first, then the least recently
touched, so a flood of made-up usernames costs a fixed amount of memory.

The counter is the swap point (``Counter``): ``SlidingCounter`` in this process by default, or
``RedisSlidingCounter`` (a ``limits`` moving window in Redis, keys expire with their window) when
replicas share ``REDIS_URL`` — then a lockout earned on one replica holds on all of them.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from typing import TYPE_CHECKING, Protocol

from backend.errors import RateLimitError

if TYPE_CHECKING:
    from backend.shared_state import RedisConnection


class Counter(Protocol):
    def __len__(self) -> int: ...

    def retry_after(self, key: str) -> int | None:
        """Seconds until ``key`` may act again, or None if it is under the limit."""
        ...

    def add(self, key: str) -> None: ...

    def clear(self, key: str) -> None: ...


class SlidingCounter:
    """Events per key in a sliding window, LRU-bounded."""

    def __init__(self, limit: int, window_s: float, max_keys: int = 10_000) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_keys = max_keys
        self._events: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._events)

    def _recent(self, key: str, now: float) -> deque[float] | None:
        q = self._events.get(key)
        if q is None:
            return None
        while q and q[0] <= now - self.window_s:
            q.popleft()
        if not q:
            del self._events[key]
            return None
        return q

    def retry_after(self, key: str) -> int | None:
        """Seconds until ``key`` may act again, or None if it is under the limit."""
        now = time.monotonic()
        with self._lock:
            q = self._recent(key, now)
            if q is None or len(q) < self.limit:
                return None
            return max(1, math.ceil(q[0] + self.window_s - now))

    def add(self, key: str) -> None:
        now = time.monotonic()
        with self._lock:
            q = self._recent(key, now)
            if q is None:
                if len(self._events) >= self.max_keys:
                    self._evict(now)
                q = self._events[key] = deque(maxlen=self.limit)
            self._events.move_to_end(key)
            q.append(now)

    def _evict(self, now: float) -> None:
        for key in list(self._events)[: max(1, self.max_keys // 10)]:  # the oldest tenth: drop expired
            self._recent(key, now)
        while len(self._events) >= self.max_keys:
            self._events.popitem(last=False)

    def clear(self, key: str) -> None:
        with self._lock:
            self._events.pop(key, None)


class RedisSlidingCounter:
    """``limit`` events per key per ``window_s`` in a ``limits`` moving window kept in Redis."""

    def __init__(self, redis: RedisConnection, name: str, limit: int, window_s: int) -> None:
        from limits import RateLimitItemPerSecond
        from limits.storage import RedisStorage
        from limits.strategies import MovingWindowRateLimiter

        self.limit = limit
        self.window_s = window_s
        self._redis = redis
        storage = RedisStorage(redis.url, connection_pool=redis.pool, key_prefix=redis.key("limits"),
                               wrap_exceptions=True)
        self._window = MovingWindowRateLimiter(storage)
        self._item = RateLimitItemPerSecond(max(1, limit), max(1, int(window_s)), namespace=name)

    def __len__(self) -> int:
        return 0  # Redis bounds it: each key expires with its window

    def retry_after(self, key: str) -> int | None:
        with self._redis.guard():
            if self._window.test(self._item, key):
                return None
            reset = self._window.get_window_stats(self._item, key).reset_time
        return max(1, math.ceil(reset - time.time()))

    def add(self, key: str) -> None:
        with self._redis.guard():
            self._window.hit(self._item, key)  # a full window stays full: nothing more to record

    def clear(self, key: str) -> None:
        with self._redis.guard():
            self._window.clear(self._item, key)


def _limited(message: str, code: str, retry: int) -> RateLimitError:
    return RateLimitError(message, code=code, headers={"Retry-After": str(retry)})


class LoginThrottle:
    def __init__(self, max_failures: int, window_s: int, max_keys: int = 10_000, counter: Counter | None = None) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._failures: Counter = counter if counter is not None else SlidingCounter(max_failures, window_s, max_keys)

    @staticmethod
    def _keys(username: str, ip: str) -> tuple[str, str]:
        return f"user:{username.casefold()[:64]}", f"ip:{ip}"

    def check(self, username: str, ip: str) -> None:
        for key in self._keys(username, ip):
            retry = self._failures.retry_after(key)
            if retry is not None:
                raise _limited(f"Too many failed logins; try again in {retry}s.", "too_many_login_attempts", retry)

    def failed(self, username: str, ip: str) -> None:
        for key in self._keys(username, ip):
            self._failures.add(key)

    def succeeded(self, username: str) -> None:
        self._failures.clear(self._keys(username, "")[0])

    @property
    def remembered(self) -> int:
        return len(self._failures)


class RegistrationThrottle:
    """At most ``limit`` self-registrations per client IP per window."""

    def __init__(self, limit: int, window_s: int, max_keys: int = 10_000, counter: Counter | None = None) -> None:
        self._counter: Counter = counter if counter is not None else SlidingCounter(limit, window_s, max_keys)

    def check(self, ip: str) -> None:
        retry = self._counter.retry_after(ip)
        if retry is not None:
            raise _limited(f"Too many registrations from your address; try again in {retry}s.",
                           "too_many_registrations", retry)

    def record(self, ip: str) -> None:
        self._counter.add(ip)
