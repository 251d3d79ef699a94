"""SciFact retrieval benchmark through our own ingestion and retrieval code.

Ingests the BEIR SciFact corpus (title + abstract as one text file per document) with
``RagService.ingest_many`` into a temp data dir, then for the test queries reports nDCG@10 and
Recall@10 for dense, BM25 and hybrid search, ingestion throughput and query latency.

The fusion weights may be tuned on the *train* qrels (``--tune``); the chosen setting is then
evaluated once on test. Results go to bench/results/rag_scifact.json.

    .venv/bin/python bench/rag_scifact.py --data DIR          # full SciFact (minutes on a small CPU)
    .venv/bin/python bench/rag_scifact.py --data DIR --mini   # 50 test queries over a 500-document subset

SciFact is CC BY-NC 2.0 (non-commercial) and is not in the repository: ``--data DIR`` (or ``SCIFACT_DIR=DIR``)
names a BEIR-layout copy: ``corpus.jsonl`` or ``corpus.jsonl.gz``, ``queries.jsonl``, ``qrels/test.tsv``,
``qrels/train.tsv`` (BEIR's ``scifact.zip`` unpacked).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import math
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.rag.lexical import reciprocal_rank_fusion  # noqa: E402
from backend.rag.service import IngestItem, RagService  # noqa: E402
from backend.settings import Settings  # noqa: E402
from bench.common import scifact_dir  # noqa: E402

USER = "u_bench"
DEPTH = 100  # chunks fetched per query; ranked doc lists are deduplicated from these


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    for line in path.read_text().splitlines()[1:]:
        qid, did, score = line.split("\t")
        if int(score) > 0:
            qrels.setdefault(qid, {})[did] = int(score)
    return qrels


def ndcg_at_10(ranked: list[str], relevant: dict[str, int]) -> float:
    dcg = sum(relevant.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:10]))
    ideal = sum(g / math.log2(i + 2) for i, g in enumerate(sorted(relevant.values(), reverse=True)[:10]))
    return dcg / ideal if ideal else 0.0


def recall_at_10(ranked: list[str], relevant: dict[str, int]) -> float:
    return len(set(ranked[:10]) & set(relevant)) / len(relevant)


def dedupe(chunk_ids: list[str], chunk_to_doc: dict[str, str]) -> list[str]:
    return list(dict.fromkeys(chunk_to_doc[c] for c in chunk_ids))


def evaluate(runs: dict[str, list[str]], qrels: dict[str, dict[str, int]]) -> dict[str, float]:
    ndcg = [ndcg_at_10(runs[q], rel) for q, rel in qrels.items()]
    rec = [recall_at_10(runs[q], rel) for q, rel in qrels.items()]
    return {"ndcg@10": round(statistics.mean(ndcg), 4), "recall@10": round(statistics.mean(rec), 4)}


def bm25_compare(corpus: list[dict[str, Any]], query_text: dict[str, str], qrels: dict[str, dict[str, int]]) -> None:
    """BM25 nDCG@10 of the previous lexical path (bm25s over raw text) and ours (numpy index, ligatures
    spelled out, NFKC tokens) on the same 1000/200 chunks, in one run: no embedding needed."""
    import bm25s

    from backend.rag.chunking import make_splitter
    from backend.rag.lexical import LexicalIndex
    from backend.rag.loaders import normalise_text

    splitter = make_splitter(1000, 200)
    raw, docs_of = [], []
    for d in corpus:
        for piece in splitter.split_text(f"{d['title']}\n\n{d['text']}"):
            raw.append(piece)
            docs_of.append(d["_id"])
    t0 = time.perf_counter()
    previous = bm25s.BM25()
    previous.index([t or ["\x00"] for t in tokenize_previous(raw)], show_progress=False)
    previous_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ours = LexicalIndex()
    ours.add(docs_of, [str(i) for i in range(len(raw))], [normalise_text(t) for t in raw])
    ours_s = time.perf_counter() - t0
    runs: dict[str, dict[str, list[str]]] = {"previous": {}, "ours": {}}
    for qid in qrels:
        tokens = [t for t in tokenize_previous([query_text[qid]])[0] if t in previous.vocab_dict]
        rows = previous.retrieve([tokens], k=DEPTH, show_progress=False, n_threads=1)[0][0].tolist() if tokens else []
        runs["previous"][qid] = list(dict.fromkeys(docs_of[r] for r in rows))
        runs["ours"][qid] = list(dict.fromkeys(docs_of[int(c)] for c, _ in ours.search(query_text[qid], DEPTH)))
    print(f"BM25 on SciFact test, N={len(qrels)} queries, {len(raw)} chunks (loaded machine)")
    for name, run in runs.items():
        print(f"  {name:>8}: {evaluate(run, qrels)}  index built in {previous_s if name == 'previous' else ours_s:.1f} s")


def tokenize_previous(texts: list[str]) -> list[list[str]]:
    """The tokenizer before issue 15 (no NFKC)."""
    import bm25s
    import Stemmer

    return bm25s.tokenize(texts, stopwords="en", stemmer=Stemmer.Stemmer("english"), return_ids=False,
                          show_progress=False)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=None, help="BEIR SciFact folder (default: $SCIFACT_DIR)")
    parser.add_argument("--mini", action="store_true", help="smoke run: 50 test queries, 500 documents")
    parser.add_argument("--tune", action="store_true", help="tune fusion weights on the train qrels first")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "rag_scifact.json")
    parser.add_argument("--bm25-only", action="store_true", help="previous vs our BM25 on the same chunks (fast)")
    args = parser.parse_args()

    data = scifact_dir(args.data)
    corpus = read_jsonl(data / "corpus.jsonl.gz" if (data / "corpus.jsonl.gz").exists() else data / "corpus.jsonl")
    queries = read_jsonl(data / "queries.jsonl")
    test_qrels = read_qrels(data / "qrels" / "test.tsv")
    train_qrels = read_qrels(data / "qrels" / "train.tsv") if args.tune and not args.mini else {}
    if args.mini:  # the first 50 test queries, every document relevant to them, 449 others drawn with seed 0
        test_qrels = {q: test_qrels[q] for q in sorted(test_qrels, key=int)[:50]}
        relevant = {d for rel in test_qrels.values() for d in rel}
        others = [d for d in corpus if d["_id"] not in relevant]
        corpus = [d for d in corpus if d["_id"] in relevant] + random.Random(0).sample(others, min(449, len(others)))
        args.out = args.out.with_name("rag_scifact_mini.json")
    query_text = {q["_id"]: q["text"] for q in queries}
    if args.bm25_only:
        bm25_compare(corpus, query_text, test_qrels)
        return

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(_env_file=None, data_dir=Path(tmp))
        rag = RagService(settings, None)
        rag.warm_up()
        items = [IngestItem(f"{d['_id']}.txt", f"{d['title']}\n\n{d['text']}".encode(), "text/plain") for d in corpus]
        print(f"ingesting {len(items)} documents ...", flush=True)
        last = [0.0]

        def progress(stage: str, fraction: float) -> None:
            if fraction - last[0] >= 0.05:
                last[0] = fraction
                print(f"  {stage} {fraction:.0%}", flush=True)

        t0 = time.perf_counter()
        results = await rag.ingest_many(USER, items, progress)
        ingest_s = time.perf_counter() - t0
        failed = [r for r in results if not isinstance(r, dict)]
        n_chunks = sum(r["chunks"] for r in results if isinstance(r, dict))
        file_to_doc = {r["file_id"]: r["filename"].removesuffix(".txt") for r in results if isinstance(r, dict)}
        print(f"ingested {len(results) - len(failed)} docs, {n_chunks} chunks in {ingest_s:.1f}s "
              f"({n_chunks / ingest_s:.1f} chunks/s); {len(failed)} refused", flush=True)

        async def rankings(qrels: dict[str, dict[str, int]]) -> tuple[dict, dict, list[float]]:
            dense, lexical, latency = {}, {}, []
            for qid in qrels:
                t = time.perf_counter()
                d = await rag.search(USER, query_text[qid], DEPTH, mode="dense")
                latency.append(time.perf_counter() - t)
                b = await rag.search(USER, query_text[qid], DEPTH, mode="bm25")
                dense[qid] = [h.chunk_id for h in d]
                lexical[qid] = [h.chunk_id for h in b]
            return dense, lexical, latency

        chunk_to_doc = {}
        for file_id, doc in file_to_doc.items():
            for i in range(200):
                chunk_to_doc[f"{file_id}:{i}"] = doc

        def fused(dense: dict, lexical: dict, k: int, wd: float, wb: float) -> dict[str, list[str]]:
            return {
                q: dedupe([c for c, _ in reciprocal_rank_fusion([dense[q], lexical[q]], k, [wd, wb])], chunk_to_doc)
                for q in dense
            }

        tuned = {"rrf_k": settings.rag_rrf_k, "dense_weight": 1.0, "bm25_weight": 1.0, "tuned_on": None}
        grid_results = []
        if train_qrels:
            print(f"tuning fusion on {len(train_qrels)} train queries ...", flush=True)
            dense_tr, lex_tr, _ = await rankings(train_qrels)
            best = -1.0
            for k in (10, 20, 40, 60, 100):
                for wb in (0.5, 0.7, 0.85, 1.0, 1.2, 1.5):
                    score = evaluate(fused(dense_tr, lex_tr, k, 1.0, wb), train_qrels)["ndcg@10"]
                    grid_results.append({"rrf_k": k, "bm25_weight": wb, "train_ndcg@10": score})
                    if score > best:
                        best = score
                        tuned = {"rrf_k": k, "dense_weight": 1.0, "bm25_weight": wb, "tuned_on": "train",
                                 "train_ndcg@10": score}
            print(f"  best on train: {tuned}", flush=True)

        print(f"evaluating {len(test_qrels)} test queries ...", flush=True)
        dense_te, lex_te, dense_latency = await rankings(test_qrels)
        table = {
            "dense": evaluate({q: dedupe(v, chunk_to_doc) for q, v in dense_te.items()}, test_qrels),
            "bm25": evaluate({q: dedupe(v, chunk_to_doc) for q, v in lex_te.items()}, test_qrels),
            "hybrid_rrf60": evaluate(fused(dense_te, lex_te, 60, 1.0, 1.0), test_qrels),
        }
        # the shipped code path: RagService.search(mode="hybrid") with the (tuned) settings
        settings.rag_rrf_k, settings.rag_bm25_weight = tuned["rrf_k"], tuned["bm25_weight"]
        hybrid_runs, latency = {}, []
        for qid in test_qrels:
            t = time.perf_counter()
            hits = await rag.search(USER, query_text[qid], DEPTH, mode="hybrid")
            latency.append(time.perf_counter() - t)
            hybrid_runs[qid] = dedupe([h.chunk_id for h in hits], chunk_to_doc)
        table["hybrid"] = evaluate(hybrid_runs, test_qrels)

        def pct(values: list[float], p: float) -> float:
            values = sorted(values)
            return round(1000 * values[min(len(values) - 1, int(p * len(values)))], 1)

        out = {
            "dataset": "scifact mini subset" if args.mini else "scifact (BEIR test)",
            "documents": len(results) - len(failed),
            "chunks": n_chunks,
            "test_queries": len(test_qrels),
            "embedding_model": rag.embedder.name,
            "chunk_size": settings.chunk_size,
            "chunk_overlap": settings.chunk_overlap,
            "ingest_seconds": round(ingest_s, 1),
            "ingest_chunks_per_s": round(n_chunks / ingest_s, 1),
            "hybrid_query_ms": {"p50": pct(latency, 0.5), "p95": pct(latency, 0.95)},
            "dense_query_ms": {"p50": pct(dense_latency, 0.5), "p95": pct(dense_latency, 0.95)},
            "metrics": table,
            "fusion": tuned,
            "fusion_grid": grid_results,
        }
    print(f"\n{'method':<14}{'nDCG@10':>10}{'Recall@10':>11}")
    for name, m in table.items():
        print(f"{name:<14}{m['ndcg@10']:>10.4f}{m['recall@10']:>11.4f}")
    print(f"\ningestion {out['ingest_chunks_per_s']} chunks/s; hybrid query p50 {out['hybrid_query_ms']['p50']} ms, "
          f"p95 {out['hybrid_query_ms']['p95']} ms; fusion {tuned}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    asyncio.run(main())
