"""BM25 persisted with the vectors in one generation; crashes; restarts; vector reuse; IVF (issue 15, item 3)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from backend.rag import service as service_module
from backend.rag import store as store_module
from backend.rag.lexical import LexicalIndex
from backend.rag.loaders import normalise_text
from backend.rag.service import RagService
from backend.rag.store import FaissStore
from tests.rag.conftest import make_rag_settings, run

USER = "u_gen"
DOC_A = b"Protein folding is studied with cryo-electron microscopy in this report."
DOC_B = b"Vaccine trial results: the dose effect on antibody titres is reported here."


def fresh_service(tmp_path: Path) -> RagService:
    return RagService(make_rag_settings(tmp_path), None)


def test_restart_loads_bm25_from_disk_without_tokenising(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rag = fresh_service(tmp_path)
    run(rag.ingest(USER, "a.txt", DOC_A))
    run(rag.ingest(USER, "b.txt", DOC_B))
    files = sorted(p.name for p in (rag.settings.indexes_path / USER).glob("*.bin"))
    assert files == ["bm25.2.bin"]  # one generation on disk, the same number as the FAISS index
    assert (rag.settings.indexes_path / USER / "faiss.2.index").exists()

    restarted = fresh_service(tmp_path)
    monkeypatch.setattr(service_module.RagService, "_rebuild_lexical",
                        lambda self, user_id: pytest.fail("BM25 was rebuilt instead of loaded"))
    hits = run(restarted.search(USER, "vaccine dose antibody", 2, mode="bm25"))
    assert hits and hits[0].filename == "b.txt" and "antibody titres" in hits[0].text


def test_a_crash_before_the_commit_point_leaves_the_old_generation_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rag = fresh_service(tmp_path)
    run(rag.ingest(USER, "a.txt", DOC_A))
    real_write = store_module.atomic_write_json

    def crash_on_commit(path: Path, value: object) -> None:
        if path.name == "faiss.json":
            raise OSError("simulated crash: power lost before the generation was committed")
        real_write(path, value)

    monkeypatch.setattr(store_module, "atomic_write_json", crash_on_commit)
    with pytest.raises(OSError, match="simulated crash"):
        run(rag.ingest(USER, "b.txt", DOC_B))
    monkeypatch.setattr(store_module, "atomic_write_json", real_write)

    restarted = fresh_service(tmp_path)  # a new process: reads only what is on disk
    stamp, blob = restarted.store.sidecar(USER, "bm25")
    assert blob is not None
    lexical = LexicalIndex.from_bytes(blob)
    assert restarted.store.count(USER) == len(lexical) == 1  # vectors and BM25: both the old generation
    assert run(restarted.search(USER, "vaccine antibody dose", 5, mode="bm25")) == []
    assert [h.filename for h in run(restarted.search(USER, "vaccine antibody dose", 5))] == ["a.txt"]  # dense
    # and the next ingestion commits both again, in step
    run(restarted.ingest(USER, "b.txt", DOC_B))
    _, blob = restarted.store.sidecar(USER, "bm25")
    assert blob is not None and restarted.store.count(USER) == len(LexicalIndex.from_bytes(blob)) == 2


def test_a_crash_after_the_commit_point_keeps_both_new(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Vectors+BM25 committed, catalog not yet: the orphan chunks are never returned, the rest still is."""
    rag = fresh_service(tmp_path)
    run(rag.ingest(USER, "a.txt", DOC_A))

    def crash(*args: object, **kwargs: object) -> None:
        raise OSError("simulated crash before the catalog commit")

    monkeypatch.setattr(service_module.JsonFile, "update", crash)
    with pytest.raises(OSError):
        run(rag.ingest(USER, "b.txt", DOC_B))
    monkeypatch.undo()
    restarted = fresh_service(tmp_path)
    assert restarted.store.count(USER) == 2
    assert run(restarted.search(USER, "vaccine antibody dose", 5, mode="bm25")) == []
    assert [h.filename for h in run(restarted.search(USER, "vaccine antibody dose", 5))] == ["a.txt"]


def test_delete_commits_bm25_with_the_vectors(tmp_path: Path) -> None:
    rag = fresh_service(tmp_path)
    a = run(rag.ingest(USER, "a.txt", DOC_A))
    run(rag.ingest(USER, "b.txt", DOC_B))
    run(rag.delete_document(USER, a["file_id"]))
    restarted = fresh_service(tmp_path)
    _, blob = restarted.store.sidecar(USER, "bm25")
    assert blob is not None
    assert LexicalIndex.from_bytes(blob).files() == {f for f in run(restarted.list_documents(USER))["data"]
                                                     for f in [f["file_id"]]}
    assert run(restarted.search(USER, "protein folding microscopy", 5, mode="bm25")) == []


def test_unchanged_chunks_are_not_embedded_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rag = fresh_service(tmp_path)
    first = run(rag.ingest(USER, "a.txt", DOC_A))
    embedded: list[str] = []
    real = rag.embedder.embed

    def counting(texts: list[str]) -> np.ndarray:
        embedded.extend(texts)
        return real(texts)

    monkeypatch.setattr(rag.embedder, "embed", counting)
    restarted_text = DOC_A + b"\n\n" + DOC_B
    second = run(rag.ingest(USER, "a-v2.txt", restarted_text))  # the same first paragraph, one new one
    assert second["chunks"] == 1  # short enough for one chunk: the whole text changed, so it is embedded
    run(rag.ingest(USER, "a-copy.txt", DOC_A))  # identical to a.txt: nothing embedded
    assert embedded == [restarted_text.decode()]
    stored = rag.store.vectors(USER, [f"{first['file_id']}:0"])[f"{first['file_id']}:0"]
    hits = run(rag.search(USER, "protein folding cryo-electron microscopy", 3, mode="dense"))
    assert {h.filename for h in hits} >= {"a.txt", "a-copy.txt"}
    assert np.isclose(float(stored @ rag.embedder.embed([DOC_A.decode()])[0]), 1.0, atol=1e-5)


def test_ivf_above_the_threshold_keeps_recall_deletes_and_filters(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(40, 32)).astype(np.float32)
    vectors = centres[rng.integers(0, 40, 3000)] + rng.normal(0, 0.3, (3000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    exact = FaissStore(tmp_path / "exact", 32)
    approx = FaissStore(tmp_path / "ivf", 32, ann_min_vectors=2000)
    ids = [f"c{i}" for i in range(3000)]
    files = [f"file_{i // 100}" for i in range(3000)]
    for store in (exact, approx):
        for begin in range(0, 3000, 1000):
            store.add(USER, ids[begin : begin + 1000], files[begin : begin + 1000], vectors[begin : begin + 1000])
    assert FaissStore(tmp_path / "ivf", 32)._load(USER).meta["kind"] == "ivf"
    queries = vectors[rng.integers(0, 3000, 50)] + rng.normal(0, 0.1, (50, 32)).astype(np.float32)
    recall = np.mean([len({c for c, _ in approx.search(USER, q, 10)} & {c for c, _ in exact.search(USER, q, 10)}) / 10
                      for q in queries])
    assert recall >= 0.9
    assert approx.delete_file(USER, "file_3") == 100 and approx.count(USER) == 2900
    assert all(c not in {f"c{i}" for i in range(300, 400)} for c, _ in approx.search(USER, vectors[350], 20))
    only = approx.search(USER, vectors[50], 5, {"file_0"})
    assert only and all(files[int(c[1:])] == "file_0" for c, _ in only)
    assert np.allclose(approx.vectors(USER, ["c7"])["c7"], vectors[7], atol=1e-6)


def test_ligatures_are_spelled_out_and_searchable(tmp_path: Path) -> None:
    assert normalise_text("e\ufb00ect o\ufb03ce \ufb01eld \ufb02ow ba\ufb04e co\u00adoperate\r\n") == (
        "effect office field flow baffle cooperate\n")
    rag = fresh_service(tmp_path)
    run(rag.ingest(USER, "lig.txt", "The dose e\ufb00ect was signi\ufb01cant in the o\ufb03ce trial.".encode()))
    hits = run(rag.search(USER, "significant effect", 1, mode="bm25"))
    assert hits and "effect was significant" in hits[0].text
