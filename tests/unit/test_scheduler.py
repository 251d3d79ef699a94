"""The fair queue: round-robin across users, bounded, timeouts and cancellation free the slot."""

from __future__ import annotations

import asyncio

import pytest

from backend.errors import ServiceUnavailableError
from backend.llm.scheduler import FairScheduler


def test_round_robin_across_users():
    async def main() -> list[str]:
        sched = FairScheduler(capacity=1, max_queue=100)
        order: list[str] = []

        async def job(user: str) -> None:
            async with sched.slot(user):
                order.append(user)
                await asyncio.sleep(0.01)

        # a burst of 6 from "greedy", then one each from two others
        tasks = [asyncio.create_task(job("greedy")) for _ in range(6)]
        await asyncio.sleep(0)
        tasks += [asyncio.create_task(job("u2")), asyncio.create_task(job("u3"))]
        await asyncio.gather(*tasks)
        return order

    order = asyncio.run(main())
    # u2 and u3 are served within the first rounds, not after greedy's whole burst
    assert order.index("u2") <= 3 and order.index("u3") <= 4


def test_queue_full_is_503():
    async def main() -> None:
        sched = FairScheduler(capacity=1, max_queue=2)
        held = sched.enqueue("a")
        sched.enqueue("b")
        sched.enqueue("c")
        with pytest.raises(ServiceUnavailableError) as info:
            sched.enqueue("d")
        assert info.value.headers["Retry-After"]
        sched.release(held)

    asyncio.run(main())


def test_timeout_and_cancel_leave_queue_clean():
    async def main() -> None:
        sched = FairScheduler(capacity=1, max_queue=10)
        held = sched.enqueue("a")
        t = sched.enqueue("b")
        with pytest.raises(ServiceUnavailableError):
            await sched.wait(t, timeout_s=0.05)
        assert sched.waiting == 0
        t2 = sched.enqueue("c")
        waiter = asyncio.create_task(sched.wait(t2))
        await asyncio.sleep(0.01)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert sched.waiting == 0
        sched.release(held)
        assert sched.active == 0
        async with sched.slot("d"):
            assert sched.active == 1

    asyncio.run(main())
