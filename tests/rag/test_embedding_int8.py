"""The MiniLM graph rewritten to int8 matmuls + fused attention (issue 15, item 2).

What a user would notice: ingestion runs the int8 kernels (not fp32 after constant folding), the
vectors and the rankings stay those of the packaged graph, a text's vector does not depend on what
it was embedded with, and the rewrite happens once (cached, verified) or not at all (fallback).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import onnx
import pytest

from backend.rag import embeddings
from backend.rag.embeddings import OnnxMiniLM

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "retrieval"  # written for this repo: SOURCES.md


def read_jsonl(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def fixture_texts() -> tuple[list[str], list[str], dict[str, set[int]]]:
    docs = read_jsonl(FIXTURE / "corpus.jsonl")
    queries = read_jsonl(FIXTURE / "queries.jsonl")
    index = {d["_id"]: n for n, d in enumerate(docs)}
    qrels: dict[str, set[int]] = {}
    for line in (FIXTURE / "qrels.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        qid, did, _ = line.split("\t")
        qrels.setdefault(qid, set()).add(index[did])
    qtexts = [q["text"] for q in queries if q["_id"] in qrels]
    relevant = {q["text"]: qrels[q["_id"]] for q in queries if q["_id"] in qrels}
    return [f"{d['title']}. {d['text']}" for d in docs], qtexts, {t: relevant[t] for t in qtexts}


def ndcg10(doc_vectors: np.ndarray, query_vectors: np.ndarray, relevant: list[set[int]]) -> float:
    scores = []
    for q, rel in zip(query_vectors, relevant, strict=True):
        ranked = np.argsort(-(doc_vectors @ q))[:10]
        dcg = sum(1 / math.log2(r + 2) for r, d in enumerate(ranked) if int(d) in rel)
        ideal = sum(1 / math.log2(r + 2) for r in range(min(10, len(rel))))
        scores.append(dcg / ideal)
    return float(np.mean(scores))


def test_the_default_graph_runs_int8_matmuls_and_fused_attention(tmp_path: Path) -> None:
    embedder = OnnxMiniLM(cache_dir=tmp_path)
    embedder.embed(["warm up"])
    assert embedder.graph == "int8"
    (cached,) = tmp_path.glob("minilm-l6-int8-*.onnx")
    ops = {n.op_type for n in onnx.load(str(cached)).graph.node}
    assert {"MatMulInteger", "DynamicQuantizeLinear", "MultiHeadAttention"} <= ops
    matmuls = [n for n in onnx.load(str(cached)).graph.node if n.op_type in {"MatMul", "MatMulInteger"}]
    assert sum(n.op_type == "MatMulInteger" for n in matmuls) == 33  # 36 projections, 3 FFN outputs kept fp32
    assert not ops & {"Where", "IsNaN", "Softmax"}  # the exported score masking is gone


def test_int8_vectors_and_rankings_stay_those_of_the_packaged_graph(tmp_path: Path) -> None:
    docs, queries, relevant = fixture_texts()
    int8, fp32 = OnnxMiniLM(cache_dir=tmp_path), OnnxMiniLM(precision="fp32")
    d8, dfp = int8.embed(docs), fp32.embed(docs)
    q8, qfp = int8.embed(queries), fp32.embed(queries)
    assert int8.graph == "int8" and fp32.graph == "packaged"
    cos = np.concatenate([(d8 * dfp).sum(axis=1), (q8 * qfp).sum(axis=1)])
    assert float(cos.min()) >= 0.98 and float(cos.mean()) >= 0.99, (cos.min(), cos.mean())
    rel = [relevant[q] for q in queries]
    assert ndcg10(d8, q8, rel) >= ndcg10(dfp, qfp, rel) - 0.01
    # the two models' top passage agrees for nearly every question
    agree = sum(int(np.argmax(d8 @ a) == np.argmax(dfp @ b)) for a, b in zip(q8, qfp, strict=True))
    assert agree >= len(queries) - 1


def test_a_texts_int8_vector_does_not_depend_on_its_batch(tmp_path: Path) -> None:
    docs, queries, _ = fixture_texts()
    texts = [queries[0], docs[0], "", docs[1][:40], queries[1]]
    embedder = OnnxMiniLM(cache_dir=tmp_path, token_budget=4096)
    together = embedder.embed(texts)
    alone = np.vstack([embedder.embed([t]) for t in texts])
    assert np.array_equal(together, alone)
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)


def test_the_rewrite_is_cached_verified_and_written_again_when_damaged(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    stale = tmp_path / "minilm-l6-int8-r0-ort0.0-0000000000000000.onnx"
    stale.write_bytes(b"old recipe")
    first = OnnxMiniLM(cache_dir=tmp_path)
    reference = first.embed(["a sentence"])
    (cached,) = tmp_path.glob("minilm-l6-int8-*.onnx")
    assert not stale.exists()  # other recipes' graphs are removed
    good = cached.read_bytes()

    def no_build(*_: object) -> None:
        raise AssertionError("rebuilt although a verified graph was cached")

    monkeypatch.setattr(embeddings, "_int8_built", {})
    monkeypatch.setattr("backend.rag.onnx_int8.build_in_subprocess", no_build)
    second = OnnxMiniLM(cache_dir=tmp_path)
    assert np.array_equal(second.embed(["a sentence"]), reference) and second.graph == "int8"

    damaged = bytearray(good)
    damaged[len(damaged) // 2] ^= 0x01
    cached.write_bytes(bytes(damaged))
    monkeypatch.undo()  # a real rebuild this time
    monkeypatch.setattr(embeddings, "_int8_built", {})
    third = OnnxMiniLM(cache_dir=tmp_path)
    assert np.array_equal(third.embed(["a sentence"]), reference) and third.graph == "int8"
    assert cached.read_bytes() == good


def test_if_the_rewrite_fails_the_packaged_graph_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    def broken(*_: object) -> None:
        raise ImportError("No module named 'onnx'")

    monkeypatch.setattr(embeddings, "_int8_built", {})
    monkeypatch.setattr("backend.rag.onnx_int8.build_in_subprocess", broken)
    with caplog.at_level(logging.WARNING, logger="backend.rag.embeddings"):
        embedder = OnnxMiniLM(cache_dir=tmp_path)
        vectors = embedder.embed(["a sentence", "another one"])
    assert embedder.graph == "packaged"
    assert "not rewritten to int8" in caplog.text and "onnx" in caplog.text
    assert np.allclose(vectors, OnnxMiniLM(precision="fp32").embed(["a sentence", "another one"]), atol=1e-6)
    assert not list(tmp_path.glob("minilm-l6-int8-*"))
