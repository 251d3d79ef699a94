"""Per-user rate limits: requests and tokens per minute (sliding one-minute window).

Two backends with one interface (``RateLimits``): ``RateLimiter`` keeps the windows in this process
(the default); ``RedisRateLimiter`` keeps them in Redis through the ``limits`` library, so every
replica with the same ``REDIS_URL`` counts against one budget (``backend.shared_state``).

Exceeding one → 429 with ``Retry-After`` and OpenAI's
``x-ratelimit-*`` headers (also set on successful responses). A limit of 0 means "no limit" for either
dimension (``RATE_LIMIT_RPM=0``, ``RATE_LIMIT_TPM=0``); a disabled limit sends no headers.
"""

from __future__ import annotations

import math
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from backend.errors import RateLimitError

if TYPE_CHECKING:
    from limits.util import WindowStats

    from backend.services import Principal, Services
    from backend.shared_state import RedisConnection

WINDOW_S = 60.0


@dataclass
class RateState:
    limit_requests: int
    remaining_requests: int
    limit_tokens: int
    remaining_tokens: int
    reset_s: float

    def headers(self) -> dict[str, str]:
        reset = f"{max(0.0, self.reset_s):.1f}s"
        out: dict[str, str] = {}
        if self.limit_requests:  # 0 = no request limit: nothing to report
            out |= {
                "x-ratelimit-limit-requests": str(self.limit_requests),
                "x-ratelimit-remaining-requests": str(max(0, self.remaining_requests)),
                "x-ratelimit-reset-requests": reset,
            }
        if self.limit_tokens:
            out |= {
                "x-ratelimit-limit-tokens": str(self.limit_tokens),
                "x-ratelimit-remaining-tokens": str(max(0, self.remaining_tokens)),
                "x-ratelimit-reset-tokens": reset,
            }
        return out


class RateLimits(Protocol):
    rpm: int
    tpm: int

    def check(self, user_id: str, estimated_tokens: int = 0) -> RateState:
        """Count one request; raise 429 if the request or token budget is spent."""
        ...

    def record_tokens(self, user_id: str, tokens: int) -> None:
        """Charge the tokens a finished request used."""
        ...


def _raise_limited(what: str, limit: int, retry_s: float, state: RateState) -> None:
    retry = max(1, math.ceil(retry_s))
    headers = state.headers() | {"Retry-After": str(retry)}
    raise RateLimitError(f"Rate limit reached: {limit} {what}. Try again in {retry}s.", headers=headers)


class RateLimiter:
    """In-process: ``rpm`` requests and ``tpm`` tokens per user per minute; 0 disables that limit."""

    def __init__(self, rpm: int, tpm: int) -> None:
        self.rpm = rpm
        self.tpm = tpm
        self._requests: dict[str, deque[float]] = defaultdict(deque)
        self._tokens: dict[str, deque[tuple[float, int]]] = defaultdict(deque)
        self._used: dict[str, int] = defaultdict(int)  #: the sum of ``_tokens[user]`` (kept, not re-added)
        self._lock = threading.Lock()

    def _prune(self, user_id: str, now: float) -> None:
        req = self._requests[user_id]
        while req and req[0] <= now - WINDOW_S:
            req.popleft()
        tok = self._tokens[user_id]
        while tok and tok[0][0] <= now - WINDOW_S:
            self._used[user_id] -= tok.popleft()[1]

    def _state(self, user_id: str, now: float) -> RateState:
        req = self._requests[user_id]
        tok = self._tokens[user_id]
        used_tokens = self._used[user_id]
        candidates = ([req[0]] if req else []) + ([tok[0][0]] if tok else [])
        oldest = min(candidates, default=now)
        return RateState(self.rpm, self.rpm - len(req), self.tpm, self.tpm - used_tokens, oldest + WINDOW_S - now)

    def check(self, user_id: str, estimated_tokens: int = 0) -> RateState:
        """Count one request; raise 429 if the request or token budget is spent."""
        now = time.monotonic()
        with self._lock:
            self._prune(user_id, now)
            req = self._requests[user_id]
            tok = self._tokens[user_id]
            used_tokens = self._used[user_id]
            if self.rpm and len(req) >= self.rpm:
                retry = req[0] + WINDOW_S - now
                self._raise("requests per minute", self.rpm, retry, self._state(user_id, now))
            if self.tpm and used_tokens + estimated_tokens > self.tpm and used_tokens > 0:
                retry = tok[0][0] + WINDOW_S - now if tok else WINDOW_S
                self._raise("tokens per minute", self.tpm, retry, self._state(user_id, now))
            req.append(now)
            return self._state(user_id, now)

    def record_tokens(self, user_id: str, tokens: int) -> None:
        if tokens <= 0:
            return
        with self._lock:
            self._tokens[user_id].append((time.monotonic(), tokens))
            self._used[user_id] += tokens

    _raise = staticmethod(_raise_limited)


class RedisRateLimiter:
    """The same budgets kept in Redis by ``limits``: requests in an exact moving window, tokens in a
    sliding-window counter (constant cost per update, however many tokens).

    A request is refused when the request window is full, or when tokens were already used and this
    request's estimate would pass the budget (as in-process). Tokens past the budget are charged up
    to the budget: the user is then blocked until the window moves on.
    """

    def __init__(self, redis: RedisConnection, rpm: int, tpm: int, name: str = "chat") -> None:
        from limits import RateLimitItemPerMinute
        from limits.storage import RedisStorage
        from limits.strategies import MovingWindowRateLimiter, SlidingWindowCounterRateLimiter

        self.rpm = rpm
        self.tpm = tpm
        self._redis = redis
        self._name = name
        storage = RedisStorage(redis.url, connection_pool=redis.pool, key_prefix=redis.key("limits"),
                               wrap_exceptions=True)
        self._requests = MovingWindowRateLimiter(storage)
        self._tokens = SlidingWindowCounterRateLimiter(storage)
        self._rpm_item = RateLimitItemPerMinute(max(1, rpm), namespace=f"{name}-rpm")
        self._tpm_item = RateLimitItemPerMinute(max(1, tpm), namespace=f"{name}-tpm")

    def _state(self, user_id: str, tokens: WindowStats | None = None, requests: WindowStats | None = None) -> RateState:
        """The headers' numbers (windows already read in this request are not read again)."""
        now = time.time()
        if self.rpm and requests is None:
            requests = self._requests.get_window_stats(self._rpm_item, user_id)
        if self.tpm and tokens is None:
            tokens = self._tokens.get_window_stats(self._tpm_item, user_id)
        resets = [w.reset_time for w in (requests, tokens) if w is not None]
        return RateState(self.rpm, requests.remaining if requests else 0, self.tpm, tokens.remaining if tokens else 0,
                         min(resets, default=now) - now)

    def check(self, user_id: str, estimated_tokens: int = 0) -> RateState:
        with self._redis.guard():
            tokens = self._tokens.get_window_stats(self._tpm_item, user_id) if self.tpm else None
            if tokens is not None:
                used = self.tpm - tokens.remaining
                if used > 0 and used + estimated_tokens > self.tpm:
                    _raise_limited("tokens per minute", self.tpm, tokens.reset_time - time.time(),
                                   self._state(user_id, tokens))
            if self.rpm and not self._requests.hit(self._rpm_item, user_id):
                requests = self._requests.get_window_stats(self._rpm_item, user_id)
                _raise_limited("requests per minute", self.rpm, requests.reset_time - time.time(),
                               self._state(user_id, tokens, requests))
            return self._state(user_id, tokens)

    def record_tokens(self, user_id: str, tokens: int) -> None:
        if tokens <= 0 or not self.tpm:
            return
        with self._redis.guard():
            if self._tokens.hit(self._tpm_item, user_id, cost=tokens):  # the common case: one round trip
                return
            for _ in range(3):  # past the budget: charge what is left (re-read if another replica charged meanwhile)
                remaining = self._tokens.get_window_stats(self._tpm_item, user_id).remaining
                cost = min(tokens, remaining)
                if cost <= 0 or self._tokens.hit(self._tpm_item, user_id, cost=cost):
                    return


def enforce_user_limit(services: Services, principal: Principal, estimated_tokens: int = 0) -> dict[str, str]:
    """Count one request against the caller's per-minute budget (administrators may be exempt);
    returns the ``x-ratelimit-*`` headers, or raises the 429."""
    if principal.is_admin and services.settings.rate_limit_admin_exempt:
        return {}
    try:
        state = services.rate_limiter.check(principal.user_id, estimated_tokens)  # RateLimits: memory or Redis
    except RateLimitError:
        services.metrics.rate_limited.labels("user").inc()
        raise
    return state.headers()
