#!/usr/bin/env python3
"""Serving overhead: decode tokens/s and time-to-first-token, server vs llama-cpp-python called directly.

Same GGUF, same n_ctx / threads / n_batch, same prompt, temperature 0, same max_tokens (the prompt
asks for a long count, so every run generates the full length — checked and reported):

* ``direct``: ``bench/llama_direct.py`` in a separate process (``Llama.create_chat_completion``);
* ``server``: ``POST /v1/chat/completions`` on the real server subprocess, model ``<base>:chat``,
  stream (SSE, TTFT = first content delta) and non-stream (end-to-end tokens/s).

Both processes hold the model, but only one generates at a time: each repetition runs direct
stream, direct non-stream, server stream, server non-stream in turn (interleaved so that load
from other processes affects both alike). Each repetition uses a different prompt prefix (the same
sequence for both), so prompt caching behaves identically. Medians over the repetitions.

    .venv/bin/python bench/overhead.py [--quick] [--model qwen2.5-coder-0.5b] [--reps 5] [--max-tokens 128]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO, gguf_path, load_avg, machine_info, median, running_server, table, write_results  # noqa: E402

PROMPT = "Request {i}. Count from 1 to 1000, one number per line, with no other text."


class Direct:
    def __init__(self, gguf: Path, n_ctx: int, threads: int, n_batch: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(REPO / "bench" / "llama_direct.py"), "--gguf", str(gguf), "--n-ctx", str(n_ctx),
             "--threads", str(threads), "--n-batch", str(n_batch)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO,
        )
        ready = self._read()
        if not ready.get("ready"):
            raise RuntimeError(f"direct llama process failed: {ready}")

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the direct llama process exited")
        return json.loads(line)

    def run(self, prompt: str, max_tokens: int, stream: bool) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"prompt": prompt, "max_tokens": max_tokens, "stream": stream}) + "\n")
        self.proc.stdin.flush()
        res = self._read()
        if "error" in res:
            raise RuntimeError(res["error"])
        return res

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps({"quit": True}) + "\n")
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def server_run(url: str, headers: dict[str, str], model: str, prompt: str, max_tokens: int, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens, "temperature": 0,
    }
    t0 = time.perf_counter()
    if not stream:
        r = httpx.post(url, headers=headers, json=body, timeout=600)
        total = time.perf_counter() - t0
        r.raise_for_status()
        data = r.json()
        return {"ttft_s": None, "decode_tps": None, "total_s": total, "completion_tokens": data["usage"]["completion_tokens"],
                "prompt_tokens": data["usage"]["prompt_tokens"], "text": data["choices"][0]["message"]["content"]}
    body.update(stream=True, stream_options={"include_usage": True})
    first = last = None
    n_chunks = 0
    pieces: list[str] = []
    usage: dict[str, Any] = {}
    with httpx.stream("POST", url, headers=headers, json=body, timeout=600) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                usage = chunk["usage"]
            for choice in chunk.get("choices") or []:
                delta = (choice.get("delta") or {}).get("content")
                if delta:
                    now = time.perf_counter()
                    first = first or now
                    last = now
                    n_chunks += 1
                    pieces.append(delta)
    total = time.perf_counter() - t0
    decode = (n_chunks - 1) / (last - first) if first and last and last > first and n_chunks > 1 else None
    return {"ttft_s": (first - t0) if first else None, "decode_tps": decode, "total_s": total,
            "completion_tokens": usage.get("completion_tokens", n_chunks), "content_chunks": n_chunks,
            "prompt_tokens": usage.get("prompt_tokens"), "text": "".join(pieces)}


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    tps_e2e = [r["rate_tokens"] / r["total_s"] for r in runs]
    out: dict[str, Any] = {
        "n": len(runs),
        "median_total_s": round(median([r["total_s"] for r in runs]) or 0, 4),
        "median_e2e_tps": round(median(tps_e2e) or 0, 3),
        "completion_tokens": sorted({r["completion_tokens"] for r in runs}),
    }
    ttft = [r["ttft_s"] for r in runs if r["ttft_s"] is not None]
    dec = [r["decode_tps"] for r in runs if r["decode_tps"] is not None]
    if ttft:
        out["median_ttft_ms"] = round(median(ttft) * 1000, 2)  # type: ignore[operator]
    if dec:
        out["median_decode_tps"] = round(median(dec) or 0, 3)
    return out


def measure(model_key: str, reps: int, max_tokens: int, n_ctx: int, n_batch: int, threads: int | None = None) -> dict[str, Any]:
    from backend.llm.embedded import physical_cores

    gguf = gguf_path(model_key)
    threads = threads or physical_cores()
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in ("direct_stream", "direct_nonstream", "server_stream", "server_nonstream")}
    loads: list[list[float]] = []
    with running_server(
        users=("alice",), admin=("alice",), wait_model=False,
        EMBEDDED_MODEL=model_key, EMBEDDED_N_CTX=str(n_ctx), EMBEDDED_N_THREADS=str(threads), EMBEDDED_N_BATCH=str(n_batch),
        RATE_LIMIT_RPM="100000",
    ) as server:
        model = server.base_model() + ":chat"
        url, headers = server.v1 + "/chat/completions", server.headers("alice")
        server_run(url, headers, model, "Hi", 4, False)  # loads the model (lazy) and warms it
        direct = Direct(gguf, n_ctx, threads, n_batch)
        try:
            direct.run("Hi", 4, False)
            for i in range(reps):
                prompt = PROMPT.format(i=i + 1)
                loads.append(load_avg())
                for key in ("direct_stream", "direct_nonstream", "server_stream", "server_nonstream"):
                    stream = key.endswith("_stream")
                    res = direct.run(prompt, max_tokens, stream) if key.startswith("direct") else server_run(url, headers, model, prompt, max_tokens, stream)
                    runs[key].append(res)
                    print(f"    {key}: {res['total_s']:.2f}s", flush=True)
                print(f"  rep {i + 1}/{reps}: decode tok/s direct {runs['direct_stream'][-1]['decode_tps']:.2f} "
                      f"server {runs['server_stream'][-1]['decode_tps']:.2f}; load {loads[-1]}", flush=True)
        finally:
            direct.close()
    # the greedy outputs are identical (checked below), so every path is rated on the token count
    # llama-cpp-python itself reports for that prompt (the server's usage may count differently)
    for k in runs:
        for i, r in enumerate(runs[k]):
            r["rate_tokens"] = runs["direct_nonstream"][i]["completion_tokens"]
    summary = {k: summarise(v) for k, v in runs.items()}
    same_text = all(
        runs["direct_stream"][i]["text"] == runs["server_stream"][i]["text"] for i in range(reps)
    )
    ds, ss = summary["direct_stream"], summary["server_stream"]
    dn, sn = summary["direct_nonstream"], summary["server_nonstream"]
    ratios = {
        "decode_tps_stream": round(ss["median_decode_tps"] / ds["median_decode_tps"], 4),
        "e2e_tps_stream": round(ss["median_e2e_tps"] / ds["median_e2e_tps"], 4),
        "e2e_tps_nonstream": round(sn["median_e2e_tps"] / dn["median_e2e_tps"], 4),
        "ttft_diff_ms": round(ss["median_ttft_ms"] - ds["median_ttft_ms"], 2),
    }
    for r in runs.values():
        for x in r:
            x["text"] = x["text"][:80]
    return {
        "model": model_key, "gguf": gguf.name, "n_ctx": n_ctx, "n_batch": n_batch, "threads": threads,
        "max_tokens": max_tokens, "reps": reps, "summary": summary, "ratios": ratios,
        "identical_greedy_output": same_text, "load_avg_per_rep": loads, "runs": runs,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: smollm2-135m, 1 rep, 16 tokens")
    p.add_argument("--model", nargs="+", default=["qwen2.5-coder-0.5b"], help="catalogue keys, run one after another")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--n-ctx", type=int, default=8192)
    p.add_argument("--n-batch", type=int, default=512)
    p.add_argument("--threads", type=int, default=None, help="llama.cpp threads for both paths (default: physical cores, like the server)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.model, args.reps, args.max_tokens, args.n_ctx = ["smollm2-135m"], 1, 16, 2048
    machine = machine_info()
    results = []
    for key in args.model:
        print(f"model {key}: {args.reps} reps x 4 runs, max_tokens={args.max_tokens}", flush=True)
        results.append(measure(key, args.reps, args.max_tokens, args.n_ctx, args.n_batch, args.threads))
    rows = []
    for res in results:
        s = res["summary"]
        for k in ("direct_stream", "server_stream", "direct_nonstream", "server_nonstream"):
            rows.append([res["model"], k.replace("_", " "), s[k].get("median_decode_tps"), s[k]["median_e2e_tps"],
                         s[k].get("median_ttft_ms"), ",".join(map(str, s[k]["completion_tokens"]))])
    print()
    print(table(["model", "path", "decode tok/s", "end-to-end tok/s", "TTFT ms", "tokens"], rows))
    print()
    print(table(
        ["model", "decode ratio (stream)", "e2e ratio (stream)", "e2e ratio (non-stream)", "TTFT diff ms", "same output"],
        [[r["model"], r["ratios"]["decode_tps_stream"], r["ratios"]["e2e_tps_stream"], r["ratios"]["e2e_tps_nonstream"],
          r["ratios"]["ttft_diff_ms"], r["identical_greedy_output"]] for r in results], 3,
    ))
    payload = {"benchmark": "overhead", "quick": args.quick, "goal": {"ratio_min": 0.97}, "results": results, "machine": machine}
    path = write_results("overhead", payload, args.out)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
