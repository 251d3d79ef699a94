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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N=32, batch sizes 1 and 16")
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32, 128])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
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
