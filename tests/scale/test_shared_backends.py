"""Each shared backend against a real Redis: two instances (as two replicas would build them)
share one budget, one lockout, one revocation list, one set of queue places, one job board; and
Redis going away is a clean 503 ``shared_state_unavailable``, fast, never a hang or a trace."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backend.auth.revocations import FileRevocations
from backend.auth.throttle import LoginThrottle
from backend.errors import RateLimitError, ServiceUnavailableError
from backend.llm.scheduler import FairScheduler
from backend.rag.jobs import IngestJobs
from backend.shared_state import RedisConnection, SharedState
from tests.conftest import free_port
from tests.scale.conftest import RedisProcess

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def replicas(redis_server: RedisProcess) -> Iterator[tuple[SharedState, SharedState]]:
    """Two SharedStates on one Redis, with a key prefix of their own (tests do not see each other)."""
    prefix = "t" + secrets.token_hex(4)
    a = SharedState(RedisConnection(redis_server.url, prefix=prefix))
    b = SharedState(RedisConnection(redis_server.url, prefix=prefix))
    yield a, b
    a.close()
    b.close()


def test_request_budget_is_shared(replicas: tuple[SharedState, SharedState]) -> None:
    a, b = (s.rate_limiter(rpm=4, tpm=0) for s in replicas)
    for limiter in (a, b, a, b):
        state = limiter.check("u_bob")
    assert state.remaining_requests == 0
    for limiter in (a, b):
        with pytest.raises(RateLimitError) as exc:
            limiter.check("u_bob")
        assert exc.value.status_code == 429 and "4 requests per minute" in exc.value.message
        assert 1 <= int(exc.value.headers["Retry-After"]) <= 60
        assert exc.value.headers["x-ratelimit-remaining-requests"] == "0"
    a.check("u_carol")  # another user's budget is untouched


def test_token_budget_is_shared(replicas: tuple[SharedState, SharedState]) -> None:
    a, b = (s.rate_limiter(rpm=0, tpm=1000) for s in replicas)
    a.check("u_bob", estimated_tokens=100)
    a.record_tokens("u_bob", 600)
    assert b.check("u_bob", estimated_tokens=100).remaining_tokens == 400
    b.record_tokens("u_bob", 5000)  # charged up to the budget: the user is out for the window
    for limiter in (a, b):
        with pytest.raises(RateLimitError, match="1000 tokens per minute"):
            limiter.check("u_bob", estimated_tokens=1)


def test_login_lockout_is_shared(replicas: tuple[SharedState, SharedState]) -> None:
    a, b = (LoginThrottle(3, 300, counter=s.counter("login", 3, 300, 1000)) for s in replicas)
    a.failed("bob", "198.51.100.1")
    b.failed("bob", "198.51.100.2")
    a.failed("bob", "198.51.100.3")
    for throttle in (a, b):
        with pytest.raises(RateLimitError) as exc:
            throttle.check("BOB", "198.51.100.9")  # the username is case-folded
        assert exc.value.code == "too_many_login_attempts" and 250 <= int(exc.value.headers["Retry-After"]) <= 300
    b.check("carol", "198.51.100.9")
    b.succeeded("bob")  # a success clears the name on every replica (the addresses stay counted)
    a.check("bob", "198.51.100.9")


def test_revocation_is_shared(replicas: tuple[SharedState, SharedState], tmp_path: Path) -> None:
    legacy = tmp_path / "revoked_tokens.json"  # what an in-process deployment had revoked before REDIS_URL
    FileRevocations(legacy).revoke("jti-before", int(time.time()) + 3600)
    FileRevocations(legacy).revoke("jti-expired", int(time.time()) - 100)
    a, b = (s.revocations(legacy) for s in replicas)
    assert not b.is_revoked("jti-1")
    assert b.is_revoked("jti-before") and not b.is_revoked("jti-expired")  # carried over, expired ones dropped
    a.revoke("jti-1", int(time.time()) + 3600)
    assert b.is_revoked("jti-1") and not b.is_revoked("jti-2")
    assert "jti-1" not in legacy.read_text()  # kept in Redis, not in the file
    b.revoke("jti-old", int(time.time()) - 100)  # already expired: kept briefly (leeway), then gone
    ttl = replicas[0].redis.client.ttl(replicas[0].redis.key("revoked", "jti-old"))  # type: ignore[union-attr]
    assert 0 < ttl <= 11


def test_queue_places_are_counted_across_replicas(replicas: tuple[SharedState, SharedState]) -> None:
    async def scenario() -> None:
        sa = FairScheduler(capacity=1, max_queue=10, timeout_s=30, max_per_user=2,
                           accounting=replicas[0].queue_accounting("model"))
        sb = FairScheduler(capacity=1, max_queue=10, timeout_s=30, max_per_user=2,
                           accounting=replicas[1].queue_accounting("model"))
        busy_a, busy_b = sa.enqueue("u_carol"), sb.enqueue("u_carol")  # both slots taken at once
        waiting = [sa.enqueue("u_bob"), sb.enqueue("u_bob")]  # bob's two places, one on each replica
        for sched in (sa, sb):
            with pytest.raises(RateLimitError) as exc:
                sched.enqueue("u_bob")
            assert exc.value.code == "too_many_queued_requests"
        sb.enqueue("u_dave")  # others still queue
        sa.release(busy_a)  # bob's ticket on A is granted: its place is given back everywhere
        assert waiting[0].future.done()
        sb.enqueue("u_bob")
        sa.abandon(waiting[0])
        sb.release(busy_b)

    asyncio.run(scenario())


def test_job_status_is_visible_from_the_other_replica(replicas: tuple[SharedState, SharedState],
                                                      tmp_path: Path) -> None:
    root_a, root_b = tmp_path / "a", tmp_path / "b"  # not even the disk is shared here: only Redis
    jobs_a = IngestJobs(root_a, max_active_per_user=1, board=replicas[0].job_board())
    jobs_b = IngestJobs(root_b, max_active_per_user=1, board=replicas[1].job_board())
    release = asyncio.Event()

    async def work(progress: Any) -> dict[str, Any]:
        progress("embedding", 0.5)
        await release.wait()
        return {"object": "list", "data": ["ok"]}

    async def scenario() -> None:
        job = jobs_a.start("u_bob", ["a.txt"], work)
        await asyncio.sleep(0.05)
        seen = jobs_b.get("u_bob", job["id"])
        assert seen["status"] == "running" and seen["stage"] == "embedding" and seen["progress"] == 0.5
        with pytest.raises(RateLimitError) as exc:  # the per-user cap counts the job running on A
            jobs_b.check_capacity("u_bob")
        assert exc.value.code == "too_many_jobs"
        with pytest.raises(Exception) as other:  # another user cannot read it
            jobs_b.get("u_carol", job["id"])
        assert getattr(other.value, "status_code", None) == 404
        release.set()
        await jobs_a.drain()
        done = jobs_b.get("u_bob", job["id"])
        assert done["status"] == "succeeded" and done["result"] == {"object": "list", "data": ["ok"]}
        jobs_b.check_capacity("u_bob")  # the place is free again

    asyncio.run(scenario())


def test_redis_down_is_a_fast_clean_503(tmp_path: Path) -> None:
    down = RedisConnection(f"redis://127.0.0.1:{free_port()}/0", prefix="down", timeout_s=0.5, retry_s=2.0)
    state = SharedState(down)
    limiter = state.rate_limiter(rpm=5, tpm=100)
    started = time.monotonic()
    for call in (lambda: limiter.check("u_bob"), lambda: state.revocations(tmp_path / "x").is_revoked("j"),
                 lambda: LoginThrottle(3, 60, counter=state.counter("login", 3, 60, 100)).check("bob", "1.2.3.4")):
        with pytest.raises(ServiceUnavailableError) as exc:
            call()
        body = exc.value.body()["error"]
        assert exc.value.status_code == 503 and body["code"] == "shared_state_unavailable"
        assert set(body) == {"message", "type", "param", "code"} and "Redis" in body["message"]
        assert exc.value.headers["Retry-After"] == "2"
    assert time.monotonic() - started < 2.0  # the breaker: after the first failure nobody waits on the network
    assert down.ping() is False
    state.close()
