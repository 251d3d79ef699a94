"""RagService end to end on the real embedding model: retrieval, isolation, deletion, quality."""

from __future__ import annotations

import gzip
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from backend.errors import NotFoundError, PayloadTooLargeError, UnprocessableError
from backend.rag.embeddings import build_embedder
from backend.rag.service import IngestItem, RagService
from tests.rag.conftest import PDF_DIR, make_rag_settings, run

RETRIEVAL_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "retrieval"

CANARY = "The vault access phrase is periwinkle-otter-5521."
FILLER = "Quarterly report on regional logistics, warehouse staffing and delivery routes. " * 40


def test_onnx_embeddings_are_semantic(rag: RagService) -> None:
    vectors = rag.embedder.embed(["A man is eating food.", "A man is eating a piece of bread.", "The stock market fell."])
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    sims = vectors @ vectors.T
    assert sims[0, 1] > 0.6 > sims[0, 2]
    # padding to the longest in a batch must not change a text's vector
    alone = rag.embedder.embed(["A man is eating food."])[0]
    assert float(alone @ vectors[0]) > 0.999


def test_sentence_transformers_backend_matches_onnx(tmp_path: Path) -> None:
    pytest.importorskip("sentence_transformers")
    st = build_embedder(make_rag_settings(tmp_path, embedding_backend="sentence-transformers"))
    onnx = build_embedder(make_rag_settings(tmp_path))
    texts = ["retrieval augmented generation", "a cat on a mat"]
    assert np.all(np.sum(st.embed(texts) * onnx.embed(texts), axis=1) > 0.97)  # int8 vs fp32


def test_ingest_and_hybrid_search_finds_canary(rag: RagService) -> None:
    doc = run(rag.ingest("u_alice", "notes.txt", (FILLER + CANARY + " " + FILLER).encode(), "text/plain"))
    assert doc["chunks"] > 3 and doc["pages"] is None and doc["file_id"].startswith("file_")
    run(rag.ingest("u_alice", "crazyones.pdf", PDF_DIR / "crazyones.pdf", "application/pdf"))
    hits = run(rag.search("u_alice", "what is the vault access phrase?", top_k=3))
    assert hits[0].file_id == doc["file_id"] and "periwinkle-otter-5521" in hits[0].text
    crazy = run(rag.search("u_alice", "here's to the crazy ones, the misfits", top_k=1))[0]
    assert crazy.filename == "crazyones.pdf" and crazy.page == 1
    # a file_ids filter keeps results inside those files
    only = run(rag.search("u_alice", "vault access phrase", top_k=5, file_ids=[crazy.file_id]))
    assert only and {h.file_id for h in only} == {crazy.file_id}


def test_chunk_metadata_points_into_the_page(rag: RagService) -> None:
    doc = run(rag.ingest("u_alice", "outline.pdf", PDF_DIR / "pdflatex-outline.pdf", "application/pdf"))
    assert doc["pages"] == 4
    hits = run(rag.search("u_alice", "Hello, here is some text without a meaning", top_k=10))
    assert {h.page for h in hits} <= {1, 2, 3, 4} and hits[0].page == 2
    for h in hits:
        assert h.chunk_id.startswith(doc["file_id"] + ":") and h.end - h.start == len(h.text)


def test_per_user_isolation(rag: RagService) -> None:
    doc = run(rag.ingest("u_alice", "secret.txt", CANARY.encode(), "text/plain"))
    run(rag.ingest("u_bob", "bob.txt", FILLER.encode(), "text/plain"))
    for query in ("vault access phrase", "periwinkle-otter-5521"):
        assert all("periwinkle" not in h.text for h in run(rag.search("u_bob", query, top_k=10)))
    assert [d["filename"] for d in run(rag.list_documents("u_bob"))["data"]] == ["bob.txt"]
    with pytest.raises(NotFoundError):
        run(rag.get_document("u_bob", doc["file_id"]))
    with pytest.raises(NotFoundError):
        run(rag.document_path("u_bob", doc["file_id"]))
    with pytest.raises(NotFoundError):
        run(rag.delete_document("u_bob", doc["file_id"]))
    assert run(rag.search("u_bob", "vault", top_k=5, file_ids=[doc["file_id"]])) == []
    assert run(rag.get_document("u_alice", doc["file_id"]))["filename"] == "secret.txt"  # still there


def test_delete_removes_file_chunks_and_vectors(rag: RagService) -> None:
    doc = run(rag.ingest("u_alice", "../../secret.txt", CANARY.encode(), "text/plain"))
    keep = run(rag.ingest("u_alice", "keep.txt", FILLER.encode(), "text/plain"))
    assert doc["filename"] == "secret.txt"
    path, _ = run(rag.document_path("u_alice", doc["file_id"]))
    assert path.parent == rag.settings.uploads_path / "u_alice" and path.name == f"{doc['file_id']}_secret.txt"
    assert run(rag.delete_document("u_alice", doc["file_id"]))["deleted"] is True
    assert not path.exists()
    assert not (rag.settings.indexes_path / "u_alice" / "chunks" / f"{doc['file_id']}.json").exists()
    assert rag.store.count("u_alice") == keep["chunks"]
    assert all("periwinkle" not in h.text for h in run(rag.search("u_alice", "periwinkle-otter-5521 vault", 10)))
    assert run(rag.has_documents("u_alice")) is True
    assert [d["file_id"] for d in run(rag.export_user("u_alice"))] == [keep["file_id"]]
    assert run(rag.delete_user("u_alice")) == 1
    assert run(rag.has_documents("u_alice")) is False
    assert not (rag.settings.uploads_path / "u_alice").exists()


def test_refused_files_leave_nothing_behind(rag: RagService, tmp_path: Path) -> None:
    with pytest.raises(UnprocessableError):
        run(rag.ingest("u_alice", "enc.pdf", PDF_DIR / "encrypted-file.pdf", "application/pdf"))
    small = RagService(make_rag_settings(tmp_path / "small", max_upload_bytes=100), None)
    with pytest.raises(PayloadTooLargeError):
        run(small.ingest("u_alice", "big.txt", b"x" * 101, "text/plain"))
    results = run(rag.ingest_many("u_alice", [IngestItem("ok.txt", CANARY.encode()),
                                             IngestItem("bad.pdf", PDF_DIR / "encrypted-file.pdf")]))
    assert results[0]["status"] == "processed" and isinstance(results[1], UnprocessableError)
    assert run(rag.list_documents("u_alice"))["total"] == 1
    assert not any((rag.settings.uploads_path / "u_alice").glob("*bad.pdf"))


def test_chroma_backed_service(tmp_path: Path) -> None:
    rag = RagService(make_rag_settings(tmp_path, vector_store="chroma"), None)
    doc = run(rag.ingest("u_alice", "secret.txt", (FILLER + CANARY).encode(), "text/plain"))
    assert "periwinkle" in run(rag.search("u_alice", "vault access phrase", 1, mode="dense"))[0].text
    run(rag.delete_document("u_alice", doc["file_id"]))
    assert rag.store.count("u_alice") == 0


def ndcg_at_10(ranked: list[str], relevant: dict[str, int]) -> float:
    dcg = sum(relevant.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:10]))
    ideal = sum(g / math.log2(i + 2) for i, g in enumerate(sorted(relevant.values(), reverse=True)[:10]))
    return dcg / ideal if ideal else 0.0


def read_collection(folder: Path, qrels_file: str) -> tuple[list[dict], dict[str, str], dict[str, dict[str, int]]]:
    """A BEIR-layout collection: corpus.jsonl[.gz], queries.jsonl and a qrels TSV with a header line."""
    gz = folder / "corpus.jsonl.gz"
    with gzip.open(gz, "rt") if gz.exists() else open(folder / "corpus.jsonl") as fh:
        corpus = [json.loads(line) for line in fh if line.strip()]
    queries = {json.loads(line)["_id"]: json.loads(line)["text"]
               for line in (folder / "queries.jsonl").read_text().splitlines() if line}
    qrels: dict[str, dict[str, int]] = {}
    for line in (folder / qrels_file).read_text().splitlines()[1:]:
        qid, did, score = line.split("\t")
        if int(score) > 0:
            qrels.setdefault(qid, {})[did] = int(score)
    return corpus, queries, qrels


def hybrid_ndcg(tmp_path: Path, corpus: list[dict], queries: dict[str, str], qrels: dict[str, dict[str, int]]) -> float:
    """Ingest the corpus (one text file per document) and score RagService.search's hybrid ranking."""
    rag = RagService(make_rag_settings(tmp_path), None)
    items = [IngestItem(f"{d['_id']}.txt", f"{d['title']}\n\n{d['text']}".encode(), "text/plain") for d in corpus]
    results = run(rag.ingest_many("u_bench", items))
    file_to_doc = {r["file_id"]: r["filename"].removesuffix(".txt") for r in results}
    scores = []
    for qid, rel in qrels.items():
        hits = run(rag.search("u_bench", queries[qid], top_k=30))
        ranked = list(dict.fromkeys(file_to_doc[h.file_id] for h in hits))
        scores.append(ndcg_at_10(ranked, rel))
    return sum(scores) / len(scores)


def test_hybrid_retrieval_quality_on_the_paraphrase_collection(tmp_path: Path) -> None:
    """Our own small collection (tests/fixtures/retrieval): questions that paraphrase their passage."""
    corpus, queries, qrels = read_collection(RETRIEVAL_DIR, "qrels.tsv")
    assert len(corpus) == 40 and len(qrels) == 22
    assert hybrid_ndcg(tmp_path, corpus, queries, qrels) > 0.9  # 0.98 when written (dense alone 0.996, BM25 0.915)


@pytest.mark.skipif(not os.environ.get("SCIFACT_DIR"), reason="opt-in: SCIFACT_DIR=<BEIR SciFact folder> (CC BY-NC, not shipped)")
def test_scifact_subset_hybrid_ndcg(tmp_path: Path) -> None:
    """SciFact's first 50 test queries over their relevant abstracts plus 150 others (SCIFACT_DIR, BEIR layout)."""
    corpus, queries, qrels = read_collection(Path(os.environ["SCIFACT_DIR"]), "qrels/test.tsv")
    qrels = {q: qrels[q] for q in sorted(qrels, key=int)[:50]}
    relevant = {d for rel in qrels.values() for d in rel}
    # every relevant document plus 150 distractors keeps this under a minute on a small CPU;
    # bench/rag_scifact.py --data DIR runs the whole corpus
    corpus = [d for d in corpus if d["_id"] in relevant] + [d for d in corpus if d["_id"] not in relevant][:150]
    assert hybrid_ndcg(tmp_path, corpus, queries, qrels) > 0.5


def test_concurrent_ingestion_from_two_service_instances_loses_nothing(tmp_path: Path) -> None:
    # two RagService objects on one data dir stand in for two worker processes
    settings = make_rag_settings(tmp_path)
    first, second = RagService(settings, None), RagService(settings, None)

    async def both() -> list:
        import asyncio

        return await asyncio.gather(*[
            svc.ingest("u_alice", f"doc{i}.txt", f"document number {i} about topic {i}".encode(), "text/plain")
            for i, svc in enumerate([first, second, first, second])
        ])

    docs = run(both())
    assert run(first.list_documents("u_alice"))["total"] == 4
    assert second.store.count("u_alice") == sum(d["chunks"] for d in docs) == FaissCount(settings).count()


class FaissCount:
    def __init__(self, settings) -> None:
        from backend.rag.store import FaissStore

        self.store = FaissStore(settings.indexes_path, 384)

    def count(self) -> int:
        return self.store.count("u_alice")
