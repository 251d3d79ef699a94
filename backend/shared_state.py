"""Where per-user counters and short-lived state live: this process, or Redis (``REDIS_URL``).

One ``SharedState`` is built by the app factory. Without ``REDIS_URL`` it hands out the in-process
backends (today's behaviour: each server process keeps its own limits). With it, every replica
pointing at the same Redis shares:

* rate limits (RPM/TPM, upload/search RPM): the ``limits`` library's Redis storage
  (``backend.ratelimit.RedisRateLimiter``);
* the login and registration throttles: ``limits`` moving windows (``backend.auth.throttle``);
* token revocations: one key per revoked ``jti`` that expires with the token
  (``backend.auth.revocations``);
* the per-user queue places of the fair scheduler (``backend.llm.scheduler.RedisQueueAccounting``);
* ingest-job status and the per-user count of active jobs (``backend.rag.jobs.RedisJobBoard``).

Redis down at request time: **fail closed**. A replica that cannot reach the shared state cannot
know whether a token was logged out or a user is over the limit, so such requests get a 503
``shared_state_unavailable`` (OpenAI error body, ``Retry-After``) instead of a guess; the cause is
logged once per outage, never a trace. Socket timeouts (``REDIS_TIMEOUT_S``) bound each attempt,
and after a failure the state is treated as down for ``REDIS_RETRY_S`` seconds (no request waits on
the network meanwhile). Requests that need no shared state (``/health``, static files) keep working.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from backend.errors import ServiceUnavailableError

if TYPE_CHECKING:
    import redis

    from backend.auth.revocations import RevocationStore
    from backend.auth.throttle import Counter
    from backend.llm.scheduler import QueueAccounting
    from backend.rag.jobs import JobBoard
    from backend.ratelimit import RateLimits
    from backend.settings import Settings

log = logging.getLogger("backend.shared_state")
T = TypeVar("T")
UNAVAILABLE_CODE = "shared_state_unavailable"


class RedisConnection:
    """One connection pool to ``REDIS_URL``, with a breaker that turns an outage into a clean 503."""

    def __init__(self, url: str, *, prefix: str = "agent", timeout_s: float = 0.5, retry_s: float = 2.0) -> None:
        import redis

        self.url = url
        self.prefix = prefix
        self.retry_s = retry_s
        self.pool = redis.ConnectionPool.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, health_check_interval=30
        )
        self.client: redis.Redis = redis.Redis(connection_pool=self.pool)
        self._down_until = 0.0
        self._lock = threading.Lock()
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        try:
            from limits.errors import StorageError as LimitsStorageError

            self._errors += (LimitsStorageError,)
        except ImportError:  # pragma: no cover - limits is a pinned dependency
            pass

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def _unavailable(self) -> ServiceUnavailableError:
        return ServiceUnavailableError(
            "The shared state (Redis) this server uses for limits and logins is unreachable; try again shortly.",
            retry_after=max(1, int(self.retry_s + 0.999)),
            code=UNAVAILABLE_CODE,
        )

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """Run Redis calls; a connection failure becomes the 503 (and opens the breaker)."""
        if time.monotonic() < self._down_until:
            raise self._unavailable()
        try:
            yield
        except self._errors as exc:
            with self._lock:
                first = time.monotonic() >= self._down_until
                self._down_until = time.monotonic() + self.retry_s
            if first:
                log.warning("shared state unreachable (%s: %s); refusing requests that need it for %.0fs",
                            type(exc).__name__, exc, self.retry_s)
            raise self._unavailable() from None

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self.guard():
            return fn(*args, **kwargs)

    def ping(self) -> bool:
        try:
            with self.guard():
                return bool(self.client.ping())
        except ServiceUnavailableError:
            return False

    def close(self) -> None:
        self.pool.disconnect()


class SharedState:
    """Builds each shared concern's backend: in-process (``redis is None``) or Redis."""

    def __init__(self, redis: RedisConnection | None = None) -> None:
        self.redis = redis

    @classmethod
    def from_settings(cls, settings: Settings) -> SharedState:
        if not settings.redis_url:
            return cls(None)
        return cls(RedisConnection(settings.redis_url.get_secret_value(), prefix=settings.redis_key_prefix,
                                   timeout_s=settings.redis_timeout_s, retry_s=settings.redis_retry_s))

    @property
    def backend(self) -> str:
        return "redis" if self.redis is not None else "memory"

    def rate_limiter(self, rpm: int, tpm: int, name: str = "chat") -> RateLimits:
        from backend.ratelimit import RateLimiter, RedisRateLimiter

        if self.redis is None:
            return RateLimiter(rpm, tpm)
        return RedisRateLimiter(self.redis, rpm, tpm, name)

    def counter(self, name: str, limit: int, window_s: int, max_keys: int) -> Counter:
        """A per-key sliding event counter (the login and registration throttles)."""
        from backend.auth.throttle import RedisSlidingCounter, SlidingCounter

        if self.redis is None:
            return SlidingCounter(limit, window_s, max_keys)
        return RedisSlidingCounter(self.redis, name, limit, window_s)

    def revocations(self, path: Any) -> RevocationStore:
        from backend.auth.revocations import FileRevocations, RedisRevocations

        if self.redis is None:
            return FileRevocations(path)
        return RedisRevocations(self.redis, legacy=path)

    def queue_accounting(self, name: str) -> QueueAccounting:
        from backend.llm.scheduler import LocalQueueAccounting, RedisQueueAccounting

        if self.redis is None:
            return LocalQueueAccounting()
        return RedisQueueAccounting(self.redis, name)

    def job_board(self) -> JobBoard | None:
        """Where other replicas read a job's live status (None: this process's memory only)."""
        if self.redis is None:
            return None
        from backend.rag.jobs import RedisJobBoard

        return RedisJobBoard(self.redis)

    def close(self) -> None:
        if self.redis is not None:
            self.redis.close()
