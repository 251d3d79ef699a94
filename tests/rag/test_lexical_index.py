"""The numpy BM25 index: bm25s's scores, incremental updates, bytes round trip, ligatures (issue 15, item 3)."""

from __future__ import annotations

import random

import bm25s
import numpy as np
import pytest

from backend.rag.lexical import LexicalIndex, tokenize

WORDS = ["protein", "binding", "cell", "mutation", "cancer", "patient", "dose", "effect", "field", "office", "study", "trial", "gene", "expression", "receptor", "signal", "pathway", "tumour", "growth", "vaccine"]


def corpus(n: int, seed: int = 3) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 40))) for _ in range(n)]


def build(texts: list[str], per_file: int = 7) -> LexicalIndex:
    index = LexicalIndex()
    for begin in range(0, len(texts), per_file):
        part = texts[begin : begin + per_file]
        file_id = f"file_{begin // per_file}"
        index.add([file_id] * len(part), [f"{file_id}:{n}" for n in range(len(part))], part)
    return index


def test_scores_equal_bm25s_lucene() -> None:
    texts = corpus(120)
    ours = build(texts)
    reference = bm25s.BM25()
    reference.index(tokenize(texts), show_progress=False)
    for query in ["protein binding", "cancer cancer vaccine", "tumour growth signal pathway", "field office"]:
        tokens = [t for t in tokenize([query])[0] if t in reference.vocab_dict]
        expected = reference.get_scores(tokens)
        got = ours.scores(query)
        assert got is not None
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_removing_files_equals_building_without_them_and_bytes_round_trip() -> None:
    texts = corpus(70)
    index = build(texts)
    assert index.remove_files({"file_2", "file_5"}) == 14
    kept = [t for n, t in enumerate(texts) if n // 7 not in (2, 5)]
    fresh = LexicalIndex()
    fresh.add(["f"] * len(kept), [str(n) for n in range(len(kept))], kept)
    np.testing.assert_allclose(index.scores("cell mutation gene"), fresh.scores("cell mutation gene"), rtol=1e-5)
    assert "file_2:0" not in index.by_id and index.by_id["file_3:0"] == 14
    loaded = LexicalIndex.from_bytes(index.to_bytes())
    assert loaded.chunk_ids == index.chunk_ids and loaded.file_ids == index.file_ids
    assert loaded.search("receptor signal", 10) == index.search("receptor signal", 10)


def test_search_filters_by_file_and_skips_zero_scores() -> None:
    index = LexicalIndex()
    index.add(["file_a", "file_a", "file_b"], ["a:0", "a:1", "b:0"],
              ["vaccine trial results", "nothing relevant here", "vaccine dose"])
    assert [c for c, _ in index.search("vaccine", 10)] in (["a:0", "b:0"], ["b:0", "a:0"])
    assert [c for c, _ in index.search("vaccine", 10, {"file_b"})] == ["b:0"]
    assert index.search("vaccine", 10, {"file_missing"}) == []
    assert index.search("zebra", 10) == []


@pytest.mark.parametrize("ligature,plain", [("\ufb00", "ff"), ("\ufb01", "fi"), ("\ufb02", "fl"),
                                            ("\ufb03", "ffi"), ("\ufb04", "ffl")])
def test_ligatures_match_their_letters(ligature: str, plain: str) -> None:
    word = {"ff": "effect", "fi": "field", "fl": "inflow", "ffi": "office", "ffl": "baffled"}[plain]
    index = LexicalIndex()
    index.add(["file_a", "file_a"], ["a:0", "a:1"], [word.replace(plain, ligature, 1) + " noted", "other text"])
    assert [c for c, _ in index.search(word, 5)] == ["a:0"]
