"""Per-user rate limits: requests and tokens per minute (sliding one-minute window).

Limits are per server process. Exceeding one → 429 with ``Retry-After`` and OpenAI's
``x-ratelimit-*`` headers (also set on successful responses). A limit of 0 means "no limit" for either
dimension (``RATE_LIMIT_RPM=0``, ``RATE_LIMIT_TPM=0``); a disabled limit sends no headers.
"""

from __future__ import annotations

import math
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from backend.errors import RateLimitError

if TYPE_CHECKING:
    from backend.services import Principal, Services

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


class RateLimiter:
    """``rpm`` requests and ``tpm`` tokens per user per minute; 0 disables that limit."""

    def __init__(self, rpm: int, tpm: int) -> None:
        self.rpm = rpm
        self.tpm = tpm
        self._requests: dict[str, deque[float]] = defaultdict(deque)
        self._tokens: dict[str, deque[tuple[float, int]]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _prune(self, user_id: str, now: float) -> None:
        req = self._requests[user_id]
        while req and req[0] <= now - WINDOW_S:
            req.popleft()
        tok = self._tokens[user_id]
        while tok and tok[0][0] <= now - WINDOW_S:
            tok.popleft()

    def _state(self, user_id: str, now: float) -> RateState:
        req = self._requests[user_id]
        tok = self._tokens[user_id]
        used_tokens = sum(n for _, n in tok)
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
            used_tokens = sum(n for _, n in tok)
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

    @staticmethod
    def _raise(what: str, limit: int, retry_s: float, state: RateState) -> None:
        retry = max(1, math.ceil(retry_s))
        headers = state.headers() | {"Retry-After": str(retry)}
        raise RateLimitError(
            f"Rate limit reached: {limit} {what}. Try again in {retry}s.", headers=headers
        )


def enforce_user_limit(services: Services, principal: Principal, estimated_tokens: int = 0) -> dict[str, str]:
    """Count one request against the caller's per-minute budget (administrators may be exempt);
    returns the ``x-ratelimit-*`` headers, or raises the 429."""
    if principal.is_admin and services.settings.rate_limit_admin_exempt:
        return {}
    try:
        state = services.rate_limiter.check(principal.user_id, estimated_tokens)
    except RateLimitError:
        services.metrics.rate_limited.labels("user").inc()
        raise
    return state.headers()
