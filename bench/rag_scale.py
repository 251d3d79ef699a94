"""RAG at scale: ingestion throughput and hybrid query latency at ~5k and ~100k chunks.

The corpus is synthesised from SciFact abstracts: each synthetic document is a run of abstracts
(~1000-char chunks after splitting), stored as text files of ``--docs-per-file`` abstracts each and
ingested with ``RagService.ingest_many`` (parse worker, splitter, embedder, FAISS, catalog).

Embedding dominates ingestion on a CPU. ``--precomputed-over N`` (default 20000) makes sizes above
N reuse real MiniLM vectors of the SciFact chunks with small noise instead of embedding every
synthetic chunk, so the store, BM25 and fusion are measured at full size in minutes; the JSON
records which mode each size used. Results: bench/results/rag_scale.json.

    .venv/bin/python bench/rag_scale.py --data DIR --sizes 5000
    .venv/bin/python bench/rag_scale.py --data DIR --sizes 5000,100000

``--data DIR`` (or ``SCIFACT_DIR``): a BEIR-layout SciFact copy, which is not in the repository (CC BY-NC).

``--index-scale N`` (issue 15) skips the upload path and commits N synthetic chunks (replayed vectors)
through ``RagService._commit`` in ``--commit-chunks`` batches, then measures in one run:
ours (persisted BM25 + FAISS, IVF at this size) vs the previous algorithm (bm25s rebuilt from the
chunks at restart, exact flat FAISS with default threads, catalog re-read per query) on the same
chunks and queries: hybrid p50/p95, first query after a restart, and IVF recall@10 against exact.

    .venv/bin/python bench/rag_scale.py --data DIR --index-scale 100000 --queries 100
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.rag.embeddings import build_embedder  # noqa: E402
from backend.rag.service import IngestItem, RagService  # noqa: E402
from backend.settings import Settings  # noqa: E402
from bench.common import scifact_dir  # noqa: E402

USER = "u_scale"


class NoisyReplayEmbedder:
    """Real vectors of real chunks, replayed with noise for synthetic ones (index-scale runs only)."""

    name = "replayed-minilm"

    def __init__(self, real: Any, bank_texts: list[str]) -> None:
        self.real = real
        self.bank = real.embed(bank_texts)
        self.rng = np.random.default_rng(0)

    @property
    def dim(self) -> int:
        return self.real.dim

    def embed(self, texts: list[str]) -> np.ndarray:
        if len(texts) <= 4:  # queries: embed for real
            return self.real.embed(texts)
        rows = self.bank[self.rng.integers(0, len(self.bank), len(texts))]
        rows = rows + self.rng.normal(0, 0.02, rows.shape).astype(np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def load_abstracts(scifact: Path) -> tuple[list[str], list[str]]:
    gz = scifact / "corpus.jsonl.gz"
    with gzip.open(gz, "rt") if gz.exists() else open(scifact / "corpus.jsonl") as fh:
        docs = [json.loads(line) for line in fh if line.strip()]
    queries = [json.loads(line)["text"] for line in (scifact / "queries.jsonl").read_text().splitlines() if line]
    return [f"{d['title']}. {d['text']}" for d in docs], queries


def synth_files(abstracts: list[str], target_chunks: int, per_file: int, seed: int) -> list[IngestItem]:
    rng = random.Random(seed)
    items, approx_chunks, n = [], 0, 0
    while approx_chunks < target_chunks:
        picked = [rng.choice(abstracts) for _ in range(per_file)]
        text = "\n\n".join(picked)
        approx_chunks += max(1, round(len(text) / 1000))  # ~1000-char chunks with 200 overlap
        items.append(IngestItem(f"synthetic-{n}.txt", text.encode(), "text/plain"))
        n += 1
    return items


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return round(1000 * values[min(len(values) - 1, int(p * len(values)))], 1)


async def run_size(size: int, abstracts: list[str], queries: list[str], args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(_env_file=None, data_dir=Path(tmp))
        rag = RagService(settings, None)
        mode = "real-embeddings"
        if size > args.precomputed_over:
            rag._embedder = NoisyReplayEmbedder(build_embedder(settings), abstracts[:300])
            mode = "replayed-embeddings"
        else:
            rag.warm_up()
        items = synth_files(abstracts, size, args.docs_per_file, seed=size)
        print(f"[{size}] {len(items)} files, {mode} ...", flush=True)
        t0 = time.perf_counter()
        chunks = 0
        for begin in range(0, len(items), args.files_per_batch):
            results = await rag.ingest_many(USER, items[begin : begin + args.files_per_batch])
            chunks += sum(r["chunks"] for r in results if isinstance(r, dict))
            print(f"  {chunks} chunks, {chunks / (time.perf_counter() - t0):.1f} chunks/s", flush=True)
        ingest_s = time.perf_counter() - t0
        await rag.search(USER, "warm up the BM25 index", 5)  # first search builds BM25 (reported apart)
        latency = []
        for q in queries[1 : 1 + args.queries]:
            t = time.perf_counter()
            await rag.search(USER, q, 5)
            latency.append(time.perf_counter() - t)
        cold_t = time.perf_counter()
        rag._lexical.clear()
        await rag.search(USER, queries[0], 5)
        cold_ms = round(1000 * (time.perf_counter() - cold_t), 1)
        return {
            "target_chunks": size,
            "chunks": chunks,
            "files": len(items),
            "embedding_mode": mode,
            "ingest_seconds": round(ingest_s, 1),
            "ingest_chunks_per_s": round(chunks / ingest_s, 1),
            "query_ms": {"p50": pct(latency, 0.5), "p95": pct(latency, 0.95), "n": len(latency)},
            "first_query_after_restart_ms": cold_ms,
        }


def index_scale(size: int, abstracts: list[str], queries: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """Ours vs the previous retrieval algorithm on one synthetic ``size``-chunk user (see the docstring)."""
    import bm25s
    import faiss

    from backend.rag.chunking import Chunk, make_splitter
    from backend.rag.lexical import reciprocal_rank_fusion, tokenize
    from backend.rag.service import _Prepared
    from backend.rag.store import all_vectors

    splitter = make_splitter(1000, 200)
    pieces = [c for a in abstracts for c in splitter.split_text(a)]
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(_env_file=None, data_dir=Path(tmp),
                            **({"rag_ann_min_vectors": args.ann_min} if args.ann_min is not None else {}))
        rag = RagService(settings, None)
        replay = NoisyReplayEmbedder(build_embedder(settings), abstracts[:300])
        rag._embedder = replay
        rng = random.Random(size)
        t0 = time.perf_counter()
        made, texts_all = 0, []
        while made < size:
            batch: list[_Prepared] = []
            in_commit = 0
            while in_commit < args.commit_chunks and made < size:
                file_id = f"file_{made:08d}"
                texts = [rng.choice(pieces) for _ in range(min(20, size - made))]
                chunks = [Chunk(f"{file_id}:{n}", file_id, t, None, 0, len(t)) for n, t in enumerate(texts)]
                batch.append(_Prepared(file_id, f"s{made}.txt", b"x", "text/plain", "txt", None, 0, chunks))
                texts_all.extend(texts)
                made += len(chunks)
                in_commit += len(chunks)
            rag._commit(USER, batch, replay.embed([c.text for p in batch for c in p.chunks]))
            print(f"  {made} chunks committed ({time.perf_counter() - t0:.0f} s)", flush=True)
        build_s = time.perf_counter() - t0
        qs = queries[1 : 1 + args.queries]
        query_vectors = {q: replay.real.embed([q])[0] for q in qs + queries[:1]}
        replay.real.embed = lambda texts: np.vstack([query_vectors[t] for t in texts])  # type: ignore[method-assign]

        # ours, after a restart: a new service reads the committed generation
        restarted = RagService(settings, None)
        restarted._embedder = replay
        t = time.perf_counter()
        restarted._search_sync(USER, queries[0], 5, None, "hybrid")
        ours_cold = time.perf_counter() - t
        ours = []
        for q in qs:
            t = time.perf_counter()
            restarted._search_sync(USER, q, 5, None, "hybrid")
            ours.append(time.perf_counter() - t)

        # the previous algorithm on the same chunks: bm25s rebuilt from the texts, exact flat FAISS
        state = restarted.store._load(USER)  # type: ignore[attr-defined]
        ids, vectors = all_vectors(state.index)
        flat = faiss.IndexIDMap2(faiss.IndexFlatIP(vectors.shape[1]))
        flat.add_with_ids(vectors, ids)
        t = time.perf_counter()
        retriever = bm25s.BM25()
        retriever.index([tk or ["\x00"] for tk in tokenize(texts_all)], show_progress=False)
        previous_rebuild = time.perf_counter() - t
        rows = {str(i): [c, f] for i, c, f in zip(state.rows.ids.tolist(), state.rows.chunk_ids.tolist(),
                                                   state.rows.file_ids.tolist(), strict=True)}  # the previous JSON map
        faiss.omp_set_num_threads(0 or len(__import__("os").sched_getaffinity(0)))
        previous, recall = [], []
        catalog = settings.indexes_path / USER / "documents.json"
        for q in qs:
            t = time.perf_counter()
            json.loads(catalog.read_text())  # the previous code re-read the catalog on every search
            _, exact_ids = flat.search(query_vectors[q].reshape(1, -1), 50)
            dense = [rows[str(i)][0] for i in exact_ids[0].tolist() if i >= 0]
            tokens = [tk for tk in tokenize([q])[0] if tk in retriever.vocab_dict]
            lexical = []
            if tokens:
                found, _ = retriever.retrieve([tokens], k=50, show_progress=False, n_threads=1)
                lexical = [str(r) for r in found[0].tolist()]
            reciprocal_rank_fusion([dense, lexical])
            previous.append(time.perf_counter() - t)
            approx = {c for c, _ in restarted.store.search(USER, query_vectors[q], 10)}
            recall.append(len(approx & set(dense[:10])) / 10)
        return {
            "target_chunks": size, "chunks": made, "embedding_mode": "replayed-embeddings",
            "index_kind": state.meta.get("kind"), "build_seconds": round(build_s, 1), "queries": len(qs),
            "ours": {"p50_ms": pct(ours, 0.5), "p95_ms": pct(ours, 0.95),
                     "first_query_after_restart_ms": round(1000 * ours_cold, 1)},
            "previous": {"p50_ms": pct(previous, 0.5), "p95_ms": pct(previous, 0.95),
                         "first_query_after_restart_ms": round(1000 * (previous_rebuild + previous[0]), 1)},
            "ivf_recall_at_10_vs_exact": round(float(np.mean(recall)), 4),
        }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="5000", help="comma-separated chunk counts, e.g. 5000,100000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--docs-per-file", type=int, default=10)
    parser.add_argument("--files-per-batch", type=int, default=100)
    parser.add_argument("--precomputed-over", type=int, default=20000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "rag_scale.json")
    parser.add_argument("--data", type=Path, default=None, help="BEIR SciFact folder (default: $SCIFACT_DIR)")
    parser.add_argument("--index-scale", type=int, default=0, help="ours vs previous retrieval at N chunks")
    parser.add_argument("--commit-chunks", type=int, default=10000)
    parser.add_argument("--ann-min", type=int, default=None, help="override rag_ann_min_vectors (IVF from N rows)")
    args = parser.parse_args()
    abstracts, queries = load_abstracts(scifact_dir(args.data))
    if args.index_scale:
        from bench.common import machine_info

        r = index_scale(args.index_scale, abstracts, queries, args)
        print(f"\nHybrid retrieval at {r['chunks']} chunks ({r['index_kind']}), N={r['queries']} queries (loaded machine)")
        print(f"{'':>10}{'p50 ms':>9}{'p95 ms':>9}{'first after restart ms':>24}")
        for name in ("previous", "ours"):
            m = r[name]
            print(f"{name:>10}{m['p50_ms']:>9}{m['p95_ms']:>9}{m['first_query_after_restart_ms']:>24}")
        print(f"{'ratio':>10}{r['previous']['p50_ms'] / max(r['ours']['p50_ms'], 1e-3):>9.1f}"
              f"{r['previous']['p95_ms'] / max(r['ours']['p95_ms'], 1e-3):>9.1f}"
              f"{r['previous']['first_query_after_restart_ms'] / max(r['ours']['first_query_after_restart_ms'], 1e-3):>24.1f}")
        print(f"IVF recall@10 vs exact: {r['ivf_recall_at_10_vs_exact']}")
        out = args.out.with_name("rag_scale_index.json")
        out.write_text(json.dumps({"machine": machine_info(), "run": r}, indent=1))
        print(f"wrote {out}")
        return
    runs = [await run_size(int(s), abstracts, queries, args) for s in args.sizes.split(",")]
    print(f"\n{'chunks':>8}{'mode':>22}{'ingest ch/s':>13}{'p50 ms':>9}{'p95 ms':>9}")
    for r in runs:
        print(f"{r['chunks']:>8}{r['embedding_mode']:>22}{r['ingest_chunks_per_s']:>13}"
              f"{r['query_ms']['p50']:>9}{r['query_ms']['p95']:>9}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    merged = {str(r["target_chunks"]): r for r in previous.get("runs", [])} | {str(r["target_chunks"]): r for r in runs}
    args.out.write_text(json.dumps({"runs": sorted(merged.values(), key=lambda r: r["target_chunks"]),
                                    "median_query_note": "hybrid search, top_k=5, FAISS flat + bm25s"}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    asyncio.run(main())
