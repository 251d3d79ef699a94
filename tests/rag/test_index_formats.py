"""On-disk formats of a user's index (issue 15, item 3: the first query after a restart).

Format 2 keeps the FAISS row map in ``faiss.<g>.rows.npz`` and BM25 as raw arrays; an index
written by the previous code (format 1: the row map as JSON inside ``faiss.json``, BM25 through
``np.savez``; ``tests/fixtures/rag_index_v1``, see SOURCES.md there) still loads, answers exactly
as a freshly built one, and is rewritten in format 2 by the next commit. A restart changes no result.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from backend.rag import service as service_module
from backend.rag.lexical import LexicalIndex
from backend.rag.service import RagService
from backend.rag.store import FaissStore
from tests.rag.conftest import make_rag_settings, run

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "rag_index_v1"
USER = "u_gen"  # the fixture's user
QUERIES = ["vaccine dose antibody", "protein microscopy", "receptor pathway tumour", "mice report results"]
MODES = ("hybrid", "dense", "bm25")


# the fixture's vectors came from the packaged (fp32) graph; comparing with a fresh ingest needs that embedder
FIXTURE_EMBEDDER = {"embedding_precision": "fp32"}


def service_on_fixture(tmp_path: Path) -> RagService:
    settings = make_rag_settings(tmp_path, **FIXTURE_EMBEDDER)
    shutil.copytree(FIXTURE / "indexes", settings.indexes_path)
    shutil.copytree(FIXTURE / "uploads", settings.uploads_path)
    return RagService(settings, None)


def answers(rag: RagService, file_ids: list[str] | None = None) -> dict[tuple[str, str], list[tuple[str, str, float]]]:
    return {(q, m): [(h.filename, h.text, round(h.score, 5)) for h in run(rag.search(USER, q, 3, file_ids, mode=m))]
            for q in QUERIES for m in MODES}


def uploads() -> list[Path]:
    """The fixture's uploads in the order they were ingested (the catalog's order)."""
    docs = json.loads((FIXTURE / "indexes" / USER / "documents.json").read_text())["documents"]
    return [FIXTURE / "uploads" / USER / d["stored_name"] for d in docs.values()]


def test_an_index_in_the_previous_format_answers_as_a_fresh_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    meta = json.loads((FIXTURE / "indexes" / USER / "faiss.json").read_text())
    assert isinstance(meta["rows"], dict) and "format" not in meta  # really the previous format
    old = service_on_fixture(tmp_path / "old")
    monkeypatch.setattr(service_module.RagService, "_rebuild_lexical",
                        lambda self, user_id: pytest.fail("BM25 was rebuilt instead of loaded"))
    loaded = answers(old)
    monkeypatch.undo()
    fresh = RagService(make_rag_settings(tmp_path / "fresh", **FIXTURE_EMBEDDER), None)
    for path in uploads():
        run(fresh.ingest(USER, path.name.split("_", 2)[2], path.read_bytes()))
    assert loaded == answers(fresh)
    assert loaded[("vaccine dose antibody", "bm25")][0][0] == "vaccine.txt"
    vaccine = next(f for f, d in json.loads((FIXTURE / "indexes" / USER / "documents.json").read_text())[
        "documents"].items() if d["filename"] == "vaccine.txt")
    assert {h.filename for h in run(old.search(USER, "protein microscopy", 5, [vaccine]))} == {"vaccine.txt"}


def test_the_next_commit_rewrites_the_previous_format(tmp_path: Path) -> None:
    rag = service_on_fixture(tmp_path)
    before = answers(rag)
    directory = rag.settings.indexes_path / USER
    added = run(rag.ingest(USER, "heart.txt", b"Cardiac arrhythmia was treated with a new beta blocker."))
    meta = json.loads((directory / "faiss.json").read_text())
    assert meta["format"] == 2 and "rows" not in meta and meta["generation"] == 4
    assert meta["files"] == ["faiss.4.index", "faiss.4.rows.npz", "bm25.4.bin"]  # the commit point names them all
    on_disk = sorted(p.name for p in directory.iterdir() if p.is_file() and not p.name.endswith(".lock"))
    assert on_disk == sorted([*meta["files"], "documents.json", "faiss.json"])  # format-1 files removed
    assert (directory / "bm25.4.bin").read_bytes()[:4] != b"PK\x03\x04"  # no longer np.savez

    restarted = RagService(rag.settings, None)
    assert restarted.store.count(USER) == 4
    hits = run(restarted.search(USER, "beta blocker arrhythmia", 1))
    assert hits and hits[0].filename == "heart.txt"
    run(restarted.delete_document(USER, added["file_id"]))
    assert answers(RagService(rag.settings, None)) == before


def test_a_restart_changes_no_result(tmp_path: Path) -> None:
    """Hybrid, dense and BM25 answers (scores included), with and without file filters."""
    rag = RagService(make_rag_settings(tmp_path), None)
    texts = [b"Protein folding is studied with cryo-electron microscopy.",
             b"Vaccine trial results: the dose effect on antibody titres.\n\nA second paragraph on dose and mice.",
             b"Tumour growth slowed when the receptor signal pathway was blocked.",
             b"Office field trials of the vaccine showed a dose effect in older patients."]
    ids = [run(rag.ingest(USER, f"d{n}.txt", t))["file_id"] for n, t in enumerate(texts)]
    run(rag.delete_document(USER, ids[0]))
    running = answers(rag), answers(rag, ids[1:3])
    restarted = RagService(rag.settings, None)
    assert (answers(restarted), answers(restarted, ids[1:3])) == running


def test_faiss_rows_survive_restart_with_ivf_deletes_and_filters(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(2500, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    chunk_ids = [f"file_{i // 50}:{i % 50}" for i in range(2500)]
    file_ids = [c.split(":")[0] for c in chunk_ids]
    store = FaissStore(tmp_path, 16, ann_min_vectors=2000)
    for begin in range(0, 2500, 500):
        store.add(USER, chunk_ids[begin : begin + 500], file_ids[begin : begin + 500], vectors[begin : begin + 500])
    assert store.delete_file(USER, "file_7") == 50
    queries = vectors[rng.integers(0, 2500, 20)]
    wanted = {"file_3", "file_7", "file_40"}
    running = [(store.search(USER, q, 10), store.search(USER, q, 10, wanted)) for q in queries]
    reopened = FaissStore(tmp_path, 16, ann_min_vectors=2000)
    assert reopened._load(USER).meta["kind"] == "ivf"
    assert [(reopened.search(USER, q, 10), reopened.search(USER, q, 10, wanted)) for q in queries] == running
    assert all(c.startswith(("file_3:", "file_40:")) for _, filtered in running for c, _ in filtered)
    assert np.allclose(reopened.vectors(USER, ["file_8:3"])["file_8:3"], vectors[403], atol=1e-6)
    assert reopened.vectors(USER, ["file_7:0"]) == {}


def test_bm25_bytes_of_either_format_load_and_damaged_ones_are_refused() -> None:
    old_blob = (FIXTURE / "indexes" / USER / "bm25.3.bin").read_bytes()
    assert old_blob[:4] == b"PK\x03\x04"  # np.savez, format 1
    old = LexicalIndex.from_bytes(old_blob)
    rebuilt = LexicalIndex()
    for path in sorted((FIXTURE / "indexes" / USER / "chunks").glob("*.json"),
                       key=lambda p: old.file_ids.index(p.stem)):
        chunks = json.loads(path.read_text())
        rebuilt.add([path.stem] * len(chunks), [c["chunk_id"] for c in chunks], [c["text"] for c in chunks])
    current = LexicalIndex.from_bytes(rebuilt.to_bytes())
    for index in (old, current):
        assert index.chunk_ids == rebuilt.chunk_ids and index.text_digests == rebuilt.text_digests
        for query in QUERIES:
            assert index.search(query, 5) == rebuilt.search(query, 5)
    current.add(["file_new"], ["file_new:0"], ["vaccine booster dose"])  # loaded arrays are replaced, not written
    assert current.search("booster", 5)[0][0] == "file_new:0"
    assert current.remove_files({"file_new"}) == 1 and current.search("booster", 5) == []
    blob = rebuilt.to_bytes()
    for damaged in (blob[: len(blob) // 2], b"junk" + blob, blob[:20], b""):
        with pytest.raises(ValueError):
            LexicalIndex.from_bytes(damaged)
