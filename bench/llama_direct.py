#!/usr/bin/env python3
"""The baseline for bench/overhead.py: llama-cpp-python called directly, in its own process.

Loads the GGUF once, then answers JSON commands on stdin, one per line, with one JSON line on stdout:

    {"prompt": "...", "max_tokens": 128, "stream": true}
    -> {"ttft_s", "decode_tps", "total_s", "completion_tokens", "prompt_tokens", "text"}

Same template as the server (the GGUF's own chat template, which ``create_chat_completion`` uses
when no chat format is given), temperature 0, same n_ctx / threads / n_batch as passed in.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any


def run_one(llama: Any, prompt: str, max_tokens: int, stream: bool) -> dict[str, Any]:
    messages = [{"role": "user", "content": prompt}]
    t0 = time.perf_counter()
    if not stream:
        out = llama.create_chat_completion(messages=messages, max_tokens=max_tokens, temperature=0.0)
        total = time.perf_counter() - t0
        usage = out["usage"]
        return {
            "ttft_s": None, "decode_tps": None, "total_s": total,
            "completion_tokens": usage["completion_tokens"], "prompt_tokens": usage["prompt_tokens"],
            "text": out["choices"][0]["message"]["content"],
        }
    first = last = None
    pieces: list[str] = []
    n_chunks = 0
    for chunk in llama.create_chat_completion(messages=messages, max_tokens=max_tokens, temperature=0.0, stream=True):
        delta = chunk["choices"][0]["delta"].get("content") if chunk["choices"] else None
        if delta:
            now = time.perf_counter()
            first = first or now
            last = now
            n_chunks += 1
            pieces.append(delta)
    total = time.perf_counter() - t0
    text = "".join(pieces)
    # llama-cpp-python yields one chunk per sampled token (its stream has no usage)
    decode = (n_chunks - 1) / (last - first) if first and last and last > first and n_chunks > 1 else None
    return {
        "ttft_s": (first - t0) if first else None, "decode_tps": decode, "total_s": total,
        "completion_tokens": n_chunks, "content_chunks": n_chunks, "prompt_tokens": None, "text": text,
    }


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--gguf", required=True)
    p.add_argument("--n-ctx", type=int, required=True)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--n-batch", type=int, required=True)
    args = p.parse_args()
    from llama_cpp import Llama

    llama = Llama(
        model_path=args.gguf, n_ctx=args.n_ctx, n_threads=args.threads, n_threads_batch=args.threads,
        n_batch=args.n_batch, verbose=False,
    )
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        cmd = json.loads(line)
        if cmd.get("quit"):
            break
        try:
            res = run_one(llama, cmd["prompt"], int(cmd["max_tokens"]), bool(cmd.get("stream")))
        except Exception as exc:  # noqa: BLE001 - reported to the driver, which fails loudly
            res = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
