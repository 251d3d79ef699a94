"""Per-user usage counters: concurrent writers in threads and in processes lose no count."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

import pytest

from backend.errors import NotFoundError
from backend.storage.usage import UsageStore

ALICE = "u_0123456789ab"
BOB = "u_ba9876543210"


def test_counts_requests_and_tokens_per_user(tmp_path):
    store = UsageStore(tmp_path / "usage")
    assert store.get(ALICE) == {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0}
    store.record_usage(ALICE, 12, 30)
    store.record_usage(ALICE, 8, 2)
    store.record_usage(BOB, 5, -3)  # a negative count is not subtracted
    assert store.get(ALICE) == {"requests": 2, "prompt_tokens": 20, "completion_tokens": 32}
    assert store.get(BOB) == {"requests": 1, "prompt_tokens": 5, "completion_tokens": 0}
    assert UsageStore(tmp_path / "usage").get(ALICE)["requests"] == 2  # on disk, not in memory
    assert store.delete_user(ALICE) is True and store.get(ALICE)["requests"] == 0
    assert store.get(BOB)["requests"] == 1


@pytest.mark.parametrize("user_id", ["../../users/users", "u_short", "", "u_abc/../../x"])
def test_user_ids_checked_before_the_filesystem(tmp_path, user_id):
    store = UsageStore(tmp_path / "usage")
    with pytest.raises(NotFoundError):
        store.record_usage(user_id, 1, 1)
    assert not (tmp_path / "usage").exists()


def test_concurrent_threads_lose_nothing(tmp_path):
    store = UsageStore(tmp_path / "usage")

    def work(n: int) -> None:
        for _ in range(25):
            store.record_usage(ALICE, n, 1)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.get(ALICE) == {"requests": 200, "prompt_tokens": 25 * sum(range(8)), "completion_tokens": 200}


def _process_worker(root: str, n: int) -> None:
    store = UsageStore(Path(root))
    for _ in range(20):
        store.record_usage(ALICE, n, 2)


def test_concurrent_processes_lose_nothing(tmp_path):
    ctx = multiprocessing.get_context("spawn")  # separate interpreters, as uvicorn's workers are
    procs = [ctx.Process(target=_process_worker, args=(str(tmp_path / "usage"), n)) for n in range(1, 5)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert UsageStore(tmp_path / "usage").get(ALICE) == {
        "requests": 80, "prompt_tokens": 20 * (1 + 2 + 3 + 4), "completion_tokens": 160}
    assert not list((tmp_path / "usage").glob("*.tmp"))  # no temp file left behind


def test_counts_written_behind_are_read_back_and_reach_the_file(tmp_path):
    """The chat pipeline's ``count_later``: many threads, no count lost, on disk once flushed."""
    store = UsageStore(tmp_path / "usage")

    def work(n: int) -> None:
        for _ in range(50):
            store.count_later(ALICE, n, 1)
        store.count_later(BOB, 3, -1)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.get(ALICE) == {"requests": 400, "prompt_tokens": 50 * sum(range(8)), "completion_tokens": 400}
    store.flush()
    assert UsageStore(tmp_path / "usage").get(BOB) == {"requests": 8, "prompt_tokens": 24, "completion_tokens": 0}
    with pytest.raises(NotFoundError):
        store.count_later("../x", 1, 1)
    store.count_later(ALICE, 1, 1)
    assert store.delete_user(ALICE) is True and store.get(ALICE)["requests"] == 0


def _count_later_and_exit(root: str) -> None:
    store = UsageStore(Path(root))
    for _ in range(5):
        store.count_later(ALICE, 2, 3)  # no flush: the interpreter's exit writes what is pending


def test_counts_written_behind_reach_the_file_when_the_process_exits(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(target=_count_later_and_exit, args=(str(tmp_path / "usage"),))
    proc.start()
    proc.join(120)
    assert proc.exitcode == 0
    assert UsageStore(tmp_path / "usage").get(ALICE) == {"requests": 5, "prompt_tokens": 10, "completion_tokens": 15}
