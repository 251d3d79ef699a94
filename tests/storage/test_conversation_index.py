"""The conversations index (a stat-validated cache of summaries and citations), search, truncation."""

from __future__ import annotations

import json
import threading

import pytest

from backend.errors import NotFoundError
from backend.storage import conversations as conv_mod
from backend.storage.conversations import INDEX_VERSION, ConversationStore, find_folded, snippet

USER = "u_0123456789ab"
OTHER = "u_ba9876543210"


def _exchange(store: ConversationStore, conv_id: str, question: str, answer: str, **reply: object) -> None:
    store.append_exchange(USER, conv_id, [{"role": "user", "content": question}], {"role": "assistant", "content": answer, **reply})


def _count_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    reads: list[str] = []
    real = conv_mod._read_quietly

    def counting(path):  # noqa: ANN001, ANN202
        reads.append(path.name)
        return real(path)

    monkeypatch.setattr(conv_mod, "_read_quietly", counting)
    return reads


def test_listing_reads_only_conversations_that_changed(tmp_path, monkeypatch):
    store = ConversationStore(tmp_path)
    ids = [store.create(USER, f"t{n}")["id"] for n in range(6)]
    reads = _count_reads(monkeypatch)
    assert store.list(USER, 100)[1] == 6 and len(reads) == 6  # first listing builds the index
    reads.clear()
    assert store.list(USER, 100)[1] == 6 and reads == []  # then nothing is re-read
    _exchange(store, ids[2], "hello", "world")
    items, _ = store.list(USER, 100)
    assert reads == [f"{ids[2]}.json"]
    assert {i["id"]: i["message_count"] for i in items} == {c: 2 if c == ids[2] else 0 for c in ids}


def test_index_follows_writes_from_another_process_and_survives_damage(tmp_path):
    mine, theirs = ConversationStore(tmp_path), ConversationStore(tmp_path)  # two workers, one directory
    cid = mine.create(USER, "first")["id"]
    assert mine.list(USER)[0][0]["title"] == "first"
    theirs.rename(USER, cid, "renamed elsewhere")
    second = theirs.create(USER, "second")["id"]
    items, total = mine.list(USER)
    assert total == 2 and {i["id"]: i["title"] for i in items} == {cid: "renamed elsewhere", second: "second"}
    theirs.delete(USER, second)
    assert [i["id"] for i in mine.list(USER)[0]] == [cid]
    (tmp_path / USER / "index.json").write_text("{ torn")  # a damaged cache is rebuilt, not an error
    assert mine.list(USER)[0][0]["title"] == "renamed elsewhere"
    assert json.loads((tmp_path / USER / "index.json").read_text())["version"] == INDEX_VERSION
    assert mine.delete_user(USER) == 1 and not (tmp_path / USER).exists()


def test_concurrent_writes_and_listings_lose_nothing(tmp_path):
    store = ConversationStore(tmp_path)
    ids = [store.create(USER)["id"] for _ in range(4)]
    errors: list[BaseException] = []

    def write(cid: str) -> None:
        for n in range(10):
            _exchange(store, cid, f"q{n}", f"a{n}")

    def read() -> None:
        try:
            for _ in range(20):
                store.list(USER, 100)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(c,)) for c in ids] + [threading.Thread(target=read) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert {i["message_count"] for i in store.list(USER, 100)[0]} == {20}


def test_search_and_citations_stay_within_the_user(tmp_path):
    store = ConversationStore(tmp_path)
    cid = store.create(USER)["id"]
    _exchange(store, cid, "where is it?", "In the manual [1].", sources=[{"index": 1, "file_id": "file_aaaaaaaaaaaa"}])
    other = store.create(OTHER)["id"]
    store.append_exchange(OTHER, other, [{"role": "user", "content": "manual"}],
                          {"role": "assistant", "content": "x", "sources": [{"file_id": "file_bbbbbbbbbbbb"}]})
    page = store.search(USER, "MANUAL", 10, 0, max_bytes=1 << 20)
    assert [i["id"] for i in page.items] == [cid] and page.items[0]["snippet"] == "In the manual [1]."
    assert store.citations(USER) == {"file_aaaaaaaaaaaa": [{"conversation_id": cid, "title": "where is it?"}]}
    assert store.citations(OTHER) == {"file_bbbbbbbbbbbb": [{"conversation_id": other, "title": "manual"}]}
    # content given as parts is searched too
    parts = store.create(USER)["id"]
    store.append_exchange(USER, parts, [{"role": "user", "content": [{"type": "text", "text": "look at the zebra"}]}],
                          {"role": "assistant", "content": "ok"})
    assert [i["id"] for i in store.search(USER, "zebra", 10, 0, max_bytes=1 << 20).items] == [parts]


def test_truncate_removes_the_tail_and_the_replay_cache(tmp_path):
    store = ConversationStore(tmp_path)
    cid = store.create(USER)["id"]
    store.append_exchange(USER, cid, [{"role": "user", "content": "q"}], {"role": "assistant", "content": "a"},
                          idempotency_key="k1", response={"id": "chatcmpl-1"})
    assert store.replay(USER, cid, "k1") == {"id": "chatcmpl-1"}
    with pytest.raises(NotFoundError):
        store.truncate(USER, cid, 2)
    assert store.replay(USER, cid, "k1") is not None  # a refused truncation changes nothing
    conv = store.truncate(USER, cid, 1)
    assert [m["content"] for m in conv["messages"]] == ["q"] and store.replay(USER, cid, "k1") is None
    with pytest.raises(NotFoundError):
        store.truncate(OTHER, cid, 0)


@pytest.mark.parametrize(("text", "needle", "lead", "trail"), [
    ("short text with   needle\ninside", "needle", False, False),
    ("a" * 500 + "needle" + "b" * 500, "needle", True, True),
    ("needle" + " word" * 100, "needle", False, True),
    ("word " * 100 + "needle", "needle", True, False),
    ("x" * 300, "x" * 200, False, True),
])
def test_snippets_are_at_most_160_characters_around_the_match(text, needle, lead, trail):
    start = text.index(needle)
    out = snippet(text, start, start + len(needle))
    assert len(out) <= 160 and needle[:150] in out
    assert out.startswith("…") is lead and out.endswith("…") is trail
    assert "\n" not in out and "  " not in out  # whitespace collapsed for a one-line preview
    if lead and trail:  # the match sits in the middle
        assert abs(out.index(needle) - (len(out) - out.index(needle) - len(needle))) <= 2


@pytest.mark.parametrize(("text", "query", "found"), [
    ("Die Straße ist lang", "STRASSE", "Straße"),
    ("ΣΟΦΙΑ and more", "σοφια", "ΣΟΦΙΑ"),
    ("Größe: ß then Fluss", "fluss", "Fluss"),  # after a character that folds to two
    ("nothing here", "zebra", None),
])
def test_matching_uses_unicode_case_folding_and_maps_back(text, query, found):
    span = find_folded(text, query.casefold())
    assert (text[span[0]:span[1]] if span else None) == found


def test_conversations_updated_within_one_second_list_newest_first(tmp_path):
    store = ConversationStore(tmp_path)
    ids = [store.create(USER, f"c{n}")["id"] for n in range(6)]  # all within the same second
    assert [i["id"] for i in store.list(USER, 10)[0]] == ids[::-1]
    _exchange(store, ids[0], "q", "a")  # the oldest becomes the newest
    assert store.list(USER, 10)[0][0]["id"] == ids[0]
