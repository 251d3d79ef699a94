from __future__ import annotations

import threading

import pytest

from backend.errors import BadRequestError, ConflictError, NotFoundError
from backend.storage.conversations import ConversationStore
from backend.storage.users import UserStore


def test_duplicate_usernames_conflict_under_concurrency(tmp_path):
    store = UserStore(tmp_path / "users.json", bcrypt_rounds=4)
    results: list[str] = []

    def attempt() -> None:
        try:
            store.create("Carol", "password123")
            results.append("ok")
        except ConflictError:
            results.append("conflict")

    threads = [threading.Thread(target=attempt) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["conflict"] * 5 + ["ok"]
    with pytest.raises(ConflictError):
        store.create("carol", "password123")  # case-insensitive


@pytest.mark.parametrize("name", ["../etc", "a/b", "..", "é" * 3, "x", "a" * 40, "bad name", "%2e%2e", "ａｄｍｉｎ"])
def test_usernames_validated(tmp_path, name):
    with pytest.raises(BadRequestError):
        UserStore(tmp_path / "users.json", bcrypt_rounds=4).create(name, "password123")


@pytest.mark.parametrize("conv_id", ["../../users/users", "conv_..%2f..", "conv_abc/../../x", "conv_\u2215etc", "", "conv_"])
def test_conversation_ids_validated_before_filesystem(tmp_path, conv_id):
    store = ConversationStore(tmp_path / "conversations")
    with pytest.raises(NotFoundError):
        store.get("u_0123456789ab", conv_id)
    assert not (tmp_path / "conversations").exists()  # nothing touched


def test_concurrent_appends_lose_nothing(tmp_path):
    store = ConversationStore(tmp_path / "c")
    conv = store.create("u_0123456789ab")

    def add(i: int) -> None:
        store.append_exchange("u_0123456789ab", conv["id"], [{"role": "user", "content": f"q{i}"}],
                              {"role": "assistant", "content": f"a{i}"})

    threads = [threading.Thread(target=add, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    messages = store.get("u_0123456789ab", conv["id"])["messages"]
    assert len(messages) == 40
    assert {m["content"] for m in messages if m["role"] == "user"} == {f"q{i}" for i in range(20)}
