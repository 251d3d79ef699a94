"""The stored-responses store: per-user directories, strict ids, a cap that evicts the oldest,
and concurrent writers that lose nothing."""

from __future__ import annotations

import threading

import pytest

from backend.errors import NotFoundError
from backend.storage.responses import ResponseStore

ALICE, BOB = "u_alice00001", "u_bob0000001"


def _rec(n: int) -> dict:
    return {"id": f"resp_{n:024d}", "response": {"id": f"resp_{n:024d}", "n": n}, "input_items": [], "history": []}


def test_save_get_delete_and_isolation(tmp_path):
    store = ResponseStore(tmp_path, max_per_user=10)
    store.save(BOB, _rec(1))
    assert store.get(BOB, _rec(1)["id"])["response"]["n"] == 1
    with pytest.raises(NotFoundError):
        store.get(ALICE, _rec(1)["id"])
    with pytest.raises(NotFoundError):
        store.delete(ALICE, _rec(1)["id"])
    for bad in ("../x", "resp_../../etc", "resp_short", "conv_" + "a" * 24):
        with pytest.raises(NotFoundError):
            store.get(BOB, bad)
    store.delete(BOB, _rec(1)["id"])
    with pytest.raises(NotFoundError):
        store.get(BOB, _rec(1)["id"])


def test_concurrent_writers_respect_the_cap_and_lose_nothing_else(tmp_path):
    store = ResponseStore(tmp_path, max_per_user=8)
    for n in range(3):
        store.save(ALICE, _rec(100 + n))
    errors: list[BaseException] = []

    def writer(start: int) -> None:
        try:
            for n in range(start, start + 10):
                store.save(BOB, _rec(n))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i * 10,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert store.count(BOB) == 8  # 40 saved, the oldest 32 evicted, none torn
    for record in store.export_user(BOB):
        assert record["response"]["id"].startswith("resp_")
    assert store.count(ALICE) == 3  # another user's responses are untouched by bob's cap
    assert store.delete_user(BOB) == 8 and store.count(BOB) == 0
