#!/usr/bin/env python3
"""Time to first token of agent turns vs plain chat, with and without the embedded prefix cache.

The embedded provider keeps one KV cache; a plain chat request in between replaces it, so the
next agent turn would evaluate its whole system prompt (instructions + tool schemas) again. The
prefix cache (``EMBEDDED_PREFIX_CACHE_MB``) keeps that prefix's KV state and restores it.

Each round sends, in one process on the real model: a plain chat question, then a ReAct turn
(its system prompt and every tool schema) and a code-agent turn, each with a new question, so
only the system part can be reused. Round 1 is cold (nothing stored yet); rounds 2.. are "later"
turns. Both settings (cache on / off) run in the same invocation, same questions.

    .venv/bin/python bench/ttft_prefix_cache.py [--rounds 3] [--model qwen2.5-coder-0.5b]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import gguf_path, table, write_results  # noqa: E402

QUESTIONS = [
    "What is 123 times 456?",
    "How many vowels are in the word encyclopedia?",
    "What is the weather in Oslo?",
    "What is 15% of 880?",
    "How many days are in 3 weeks?",
    "What is the square root of 1764?",
]
KINDS: tuple[str, ...] = ("react", "code")
CHAT = ["Say hello in French.", "Name a colour.", "Say goodbye politely.", "Name a fruit.", "Say thanks.", "Name a tree."]


def agent_messages(kind: str, question: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    from backend.agents.code import CODE_SYSTEM, TASK_PROMPT
    from backend.agents.react import prompts
    from backend.agents.tools import hints, specs
    from backend.tools.registry import all_tools

    if kind == "code":
        return [{"role": "system", "content": CODE_SYSTEM}, {"role": "user", "content": TASK_PROMPT.format(question=question)}], None
    tools = all_tools()
    system = prompts.REACT_NATIVE_SYSTEM + hints(tools)
    return [{"role": "system", "content": system}, {"role": "user", "content": question}], specs(tools)


async def ttft(provider: Any, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> tuple[float, int]:
    from backend.llm.types import GenerationParams

    params = GenerationParams(temperature=0.0, seed=1, max_tokens=4, tools=tools, tool_choice="auto" if tools else None)
    t0 = time.perf_counter()
    first = None
    async for ev in provider.stream(messages, params):
        if first is None and (ev.content or ev.tool_calls):
            first = time.perf_counter() - t0
    return (first if first is not None else time.perf_counter() - t0), provider.last_cached_tokens


async def run(cache_mb: int, rounds: int, model_path: Path, threads: int | None) -> dict[str, Any]:
    from backend.llm.embedded import EmbeddedProvider
    from backend.settings import Settings

    settings = Settings(
        _env_file=None,
        embedded_model_path=model_path,
        embedded_prefix_cache_mb=cache_mb,
        embedded_n_threads=threads,
    )
    provider = EmbeddedProvider(settings)
    await provider.start()
    rows: dict[str, list[float]] = {"chat": [], "react_first": [], "react_later": [], "code_first": [], "code_later": []}
    cached: dict[str, list[int]] = {"react_later": [], "code_later": []}
    try:
        await ttft(provider, [{"role": "user", "content": "Warm up."}], None)
        for r in range(rounds):
            t, _ = await ttft(provider, [{"role": "user", "content": CHAT[r % len(CHAT)]}], None)
            rows["chat"].append(t)
            for kind in KINDS:
                q = QUESTIONS[(2 * r + (kind == "code")) % len(QUESTIONS)]
                messages, tools = agent_messages(kind, q)
                t, reused = await ttft(provider, messages, tools)
                key = f"{kind}_first" if r == 0 else f"{kind}_later"
                rows[key].append(t)
                print(f"  cache {cache_mb} MB round {r + 1}: {kind} TTFT {t:.2f}s (reused {reused} tokens)", flush=True)
                if r:
                    cached[key].append(reused)
                # a chat request in between replaces the KV cache before the next agent turn
                t, _ = await ttft(provider, [{"role": "user", "content": CHAT[(r + 3) % len(CHAT)]}], None)
                rows["chat"].append(t)
        prompt_tokens = {kind: len(provider.render_prompt(*agent_messages(kind, QUESTIONS[0]))[0]) for kind in KINDS}
    finally:
        await provider.aclose()
    return {"ttft_s": rows, "reused_tokens_later": cached, "prompt_tokens": prompt_tokens,
            "prefix_hits": provider.prefix_cache.hits, "prefix_stores": provider.prefix_cache.stores}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--kinds", default="react,code", help="agent prompts to measure (react, code)")
    args = ap.parse_args()
    global KINDS
    KINDS = tuple(k for k in args.kinds.split(",") if k in ("react", "code"))
    path = gguf_path(args.model)
    results = {}
    for label, mb in (("cache on", 128), ("cache off", 0)):
        results[label] = asyncio.run(run(mb, args.rounds, path, args.threads))
    med = lambda xs: statistics.median(xs) if xs else None  # noqa: E731
    rows = []
    for label, res in results.items():
        t = res["ttft_s"]
        chat = med(t["chat"])
        for kind in KINDS:
            first, later = med(t[f"{kind}_first"]), med(t[f"{kind}_later"])
            rows.append([label, kind, res["prompt_tokens"][kind], chat, first, later,
                         later / chat if later and chat else None, first / chat if first and chat else None,
                         med(res["reused_tokens_later"][f"{kind}_later"])])
    n_chat = len(results["cache on"]["ttft_s"]["chat"])
    print(f"TTFT, median seconds; N={args.rounds} rounds per setting (chat N={n_chat}); (loaded machine)")
    print(table(["setting", "agent", "prompt tok", "chat", "agent 1st", "agent later", "later/chat", "1st/chat",
                 "reused tok"], rows))
    on, off = results["cache on"]["ttft_s"], results["cache off"]["ttft_s"]
    for kind in KINDS:
        a, b = med(on[f"{kind}_later"]), med(off[f"{kind}_later"])
        if a and b:
            print(f"{kind}: later-turn TTFT with the prefix cache is {a / b:.2f}x of without (N={args.rounds - 1})")
    write_results("ttft_prefix_cache", {"rounds": args.rounds, "model": args.model, "results": results})


if __name__ == "__main__":
    main()
