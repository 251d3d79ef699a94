"""A bounded, per-user fair queue in front of the model backend.

``capacity`` generations run at once (1 for in-process llama.cpp; ``OLLAMA_NUM_PARALLEL`` for
Ollama). Waiters queue per user and are served round-robin across users, so one user's burst
cannot starve the others. A full queue, or a wait past ``timeout``, is a 503 with Retry-After.
One user may hold at most ``max_per_user`` of the queue's places (429 beyond that), so a burst
cannot fill the whole queue and lock the other users out with 503s.

Those per-user places are counted by a ``QueueAccounting``: ``LocalQueueAccounting`` (this process,
the default) or ``RedisQueueAccounting`` (replicas sharing ``REDIS_URL``: a user's places are
counted across all of them, so a burst spread over replicas is bounded too). A Redis entry lives at
most as long as a wait can (the queue timeout), so a replica that dies leaks nothing for long.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from backend.errors import RateLimitError, ServiceUnavailableError

if TYPE_CHECKING:
    from backend.shared_state import RedisConnection


@dataclass
class Ticket:
    user_id: str
    future: asyncio.Future[None]
    enqueued_at: float = field(default_factory=time.monotonic)
    granted_at: float | None = None
    released: bool = False
    place_id: str = field(default_factory=lambda: secrets.token_hex(8))

    @property
    def waited_s(self) -> float:
        end = self.granted_at if self.granted_at is not None else time.monotonic()
        return end - self.enqueued_at


class QueueAccounting(Protocol):
    """A user's places in the wait queue (all replicas, or this process)."""

    def join(self, user_id: str, place_id: str, limit: int, ttl_s: float) -> bool:
        """Take a place unless the user already holds ``limit``; False when refused."""
        ...

    def leave(self, user_id: str, place_id: str) -> None: ...


class LocalQueueAccounting:
    def __init__(self) -> None:
        self._places: dict[str, set[str]] = {}

    def join(self, user_id: str, place_id: str, limit: int, ttl_s: float) -> bool:
        places = self._places.setdefault(user_id, set())
        if len(places) >= limit:
            return False
        places.add(place_id)
        return True

    def leave(self, user_id: str, place_id: str) -> None:
        places = self._places.get(user_id)
        if places is not None:
            places.discard(place_id)
            if not places:
                del self._places[user_id]


# one atomic step: drop expired places, refuse at the limit, else add this one (sorted set: deadline)
_JOIN_LUA = """
redis.call('zremrangebyscore', KEYS[1], '-inf', ARGV[1])
if redis.call('zcard', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('zadd', KEYS[1], ARGV[3], ARGV[4])
redis.call('pexpire', KEYS[1], ARGV[5])
return 1
"""


class RedisQueueAccounting:
    def __init__(self, redis: RedisConnection, name: str) -> None:
        self._redis = redis
        self._name = name
        self._join = redis.client.register_script(_JOIN_LUA)

    def _key(self, user_id: str) -> str:
        return self._redis.key("queue", self._name, user_id)

    def join(self, user_id: str, place_id: str, limit: int, ttl_s: float) -> bool:
        now = time.time()
        deadline = now + ttl_s
        args = [now, limit, deadline, place_id, int(ttl_s * 1000) + 1000]
        return bool(self._redis.call(self._join, keys=[self._key(user_id)], args=args))

    def leave(self, user_id: str, place_id: str) -> None:
        self._redis.call(self._redis.client.zrem, self._key(user_id), place_id)


class FairScheduler:
    def __init__(self, capacity: int = 1, max_queue: int = 64, timeout_s: float = 300.0, max_per_user: int | None = None,
                 accounting: QueueAccounting | None = None) -> None:
        self.capacity = max(1, capacity)
        self.max_queue = max_queue
        self.timeout_s = timeout_s
        self.max_per_user = max_per_user if max_per_user is not None else max(1, max_queue // 4)
        self._active = 0
        self._queues: OrderedDict[str, deque[Ticket]] = OrderedDict()
        self._waiting = 0
        self._accounting: QueueAccounting = accounting if accounting is not None else LocalQueueAccounting()

    # ------------------------------------------------------------------ state
    @property
    def active(self) -> int:
        return self._active

    @property
    def waiting(self) -> int:
        return self._waiting

    def retry_after_s(self) -> int:
        return max(1, min(60, 2 * (self._waiting + 1)))

    # ------------------------------------------------------------------ core
    def enqueue(self, user_id: str) -> Ticket:
        """Join the queue (or get a slot at once). Raises 503 when the queue is full."""
        loop = asyncio.get_running_loop()
        ticket = Ticket(user_id, loop.create_future())
        if self._active < self.capacity and self._waiting == 0:
            self._active += 1
            ticket.granted_at = ticket.enqueued_at
            ticket.future.set_result(None)
            return ticket
        if self._waiting >= self.max_queue:
            raise ServiceUnavailableError(
                "The model is busy and the queue is full; try again shortly.",
                retry_after=self.retry_after_s(),
                code="queue_full",
            )
        if not self._accounting.join(user_id, ticket.place_id, self.max_per_user, self.timeout_s + 5):
            raise RateLimitError(
                f"You already have {self.max_per_user} requests waiting for the model; wait for one to finish.",
                code="too_many_queued_requests",
                headers={"Retry-After": str(self.retry_after_s())},
            )
        self._queues.setdefault(user_id, deque()).append(ticket)
        self._waiting += 1
        return ticket

    async def wait(self, ticket: Ticket, timeout_s: float | None = None) -> None:
        """Wait until ``ticket`` holds a slot; on timeout or cancellation it leaves the queue."""
        timeout = self.timeout_s if timeout_s is None else timeout_s
        try:
            await asyncio.wait_for(asyncio.shield(ticket.future), timeout=timeout)
        except TimeoutError:
            self.abandon(ticket)
            raise ServiceUnavailableError(
                f"The model stayed busy for {timeout:.0f}s; try again shortly.",
                retry_after=self.retry_after_s(),
                code="queue_timeout",
            ) from None
        except asyncio.CancelledError:
            self.abandon(ticket)
            raise

    def abandon(self, ticket: Ticket) -> None:
        """Leave the queue, or give the slot back if it was granted meanwhile."""
        if ticket.future.done() and not ticket.future.cancelled():
            self.release(ticket)
            return
        queue = self._queues.get(ticket.user_id)
        if queue and ticket in queue:
            queue.remove(ticket)
            self._waiting -= 1
            self._leave(ticket)
            if not queue:
                del self._queues[ticket.user_id]
        ticket.future.cancel()

    def _leave(self, ticket: Ticket) -> None:
        try:
            self._accounting.leave(ticket.user_id, ticket.place_id)
        except ServiceUnavailableError:
            pass  # shared state down: the place expires with the queue timeout

    def release(self, ticket: Ticket) -> None:
        if ticket.released:
            return
        ticket.released = True
        self._active -= 1
        self._grant_next()

    def _grant_next(self) -> None:
        while self._active < self.capacity and self._queues:
            user_id, queue = next(iter(self._queues.items()))
            ticket = queue.popleft()
            self._waiting -= 1
            self._leave(ticket)
            if queue:
                self._queues.move_to_end(user_id)  # round-robin: this user goes to the back
            else:
                del self._queues[user_id]
            if ticket.future.done():
                continue
            self._active += 1
            ticket.granted_at = time.monotonic()
            ticket.future.set_result(None)

    @asynccontextmanager
    async def slot(self, user_id: str, timeout_s: float | None = None) -> AsyncIterator[Ticket]:
        ticket = self.enqueue(user_id)
        await self.wait(ticket, timeout_s)
        try:
            yield ticket
        finally:
            self.release(ticket)
