#!/usr/bin/env python3
"""Grammar-constrained calls: the grammar checked after sampling (ours) vs over the whole vocabulary first.

The server's own path (``EmbeddedProvider.complete`` with a forced ``tool_choice``, the registry's
tools, greedy), one model loaded once; for every (question, round) both orders run back to back,
alternating which goes first, so load affects both alike; neither reuses the other's prompt from the
KV cache (both evaluate the prompt after the system turn, which an untimed warm-up call per question
put in the prefix cache for both alike). ``lazy_grammar = False`` on the loaded
model gives llama-cpp-python's grammar-first order (the previous code's behaviour).

Printed: seconds per call in each order, their ratio, completion tokens, and whether the two
outputs were identical (greedy decoding: they must be). Results in ``bench/results/grammar_sampling.json``.

    .venv/bin/python bench/grammar_sampling.py [--model qwen2.5-coder-1.5b] [--rounds 2] [--quick]
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

from bench.common import BENCH_DATA, RESULTS, load_avg, machine_info, table, write_results  # noqa: E402

#: (tool, question): argument calls of the kinds the agents make
CALLS = [
    ("weather", "What is the chance of rain in the weather forecast for Paris on 2024-08-20?"),
    ("weather", "Will it be windy in Berlin, Germany tomorrow?"),
    ("wikipedia", "Look up Celtuce on Wikipedia and tell me another name for it."),
    ("wikipedia", "Who designed the Eiffel Tower, according to Wikipedia?"),
    ("sql_query", "How many customers are in the database?"),
    ("sql_query", "Which product in the database has the highest price?"),
    ("math_calc", "What is the derivative of x**3 * sin(x)?"),
    ("math_calc", "Solve x**2 - 5*x + 6 = 0."),
]


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    import os

    os.environ.setdefault("SQL_DATABASE_PATH", str(BENCH_DATA / "shop.sqlite"))
    from backend.agents.tools import select_tools
    from backend.llm.embedded import EmbeddedProvider
    from backend.llm.types import GenerationParams
    from backend.settings import Settings

    settings = Settings(embedded_model=args.model, embedded_n_threads=args.threads) if args.threads else Settings(
        embedded_model=args.model
    )
    provider = EmbeddedProvider(settings)
    await provider.start()
    llama: Any = provider._llama
    tools = select_tools(None, settings, None)
    rows: list[dict[str, Any]] = []

    def request(name: str, question: str) -> tuple[list[Any], Any]:
        t = tools[name]
        params = GenerationParams(
            temperature=0.0, max_tokens=200, tools=[t.openai_spec()],
            tool_choice={"type": "function", "function": {"name": name}},
        )
        return [
            {"role": "system", "content": f"Call the tool {name} with arguments for this task."},
            {"role": "user", "content": question},
        ], params

    for name, question in CALLS[: args.calls]:  # warm-up, untimed: each tool's system turn is then in the prefix cache
        messages, params = request(name, question)
        llama.n_tokens = 0
        await provider.complete(messages, params)
    for r in range(args.rounds):
        for i, (name, question) in enumerate(CALLS[: args.calls]):
            messages, params = request(name, question)
            out: dict[bool, Any] = {}
            order = [True, False] if (i + r) % 2 == 0 else [False, True]
            for lazy in order:
                llama.lazy_grammar = lazy
                llama.n_tokens = 0  # the same prompt work for both: nothing reused from the other order's call
                t0 = time.perf_counter()
                done = await provider.complete(messages, params)
                seconds = time.perf_counter() - t0
                calls = [(c.name, c.arguments) for c in done.tool_calls or []]
                tokens = done.usage.completion_tokens if done.usage else 0
                out[lazy] = (seconds, calls, tokens)
            row = {
                "round": r, "tool": name, "question": question,
                "lazy_s": round(out[True][0], 3), "grammar_first_s": round(out[False][0], 3),
                "completion_tokens": out[True][2], "same_output": out[True][1] == out[False][1],
                "call": out[True][1], "load_avg": load_avg(),
            }
            rows.append(row)
            print(f"  {name:10s} lazy {row['lazy_s']:6.2f}s  grammar-first {row['grammar_first_s']:6.2f}s  "
                  f"tokens {row['completion_tokens']:3d}  same={row['same_output']}", flush=True)
    llama.lazy_grammar = True
    await provider.aclose()
    lazy_s = [x["lazy_s"] for x in rows]
    first_s = [x["grammar_first_s"] for x in rows]
    summary = {
        "model": args.model, "n": len(rows),
        "median_lazy_s": round(statistics.median(lazy_s), 3),
        "median_grammar_first_s": round(statistics.median(first_s), 3),
        "total_ratio": round(sum(first_s) / sum(lazy_s), 2),
        "median_per_call_ratio": round(statistics.median(f / s for f, s in zip(first_s, lazy_s, strict=True)), 2),
        "identical_outputs": sum(x["same_output"] for x in rows),
    }
    return {"summary": summary, "rows": rows, "machine": machine_info()}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="qwen2.5-coder-1.5b")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--quick", action="store_true", help="smoke run: smollm2-135m, 2 calls, one round")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.model, args.rounds, args.calls = "smollm2-135m", 1, 2
    else:
        args.calls = len(CALLS)
    payload = asyncio.run(_main(args))
    s = payload["summary"]
    print(table(
        ["model", "N calls", "median s, grammar checked after", "median s, grammar first", "ratio (total)",
         "ratio (median per call)", "identical outputs"],
        [[s["model"], s["n"], s["median_lazy_s"], s["median_grammar_first_s"], s["total_ratio"],
          s["median_per_call_ratio"], f"{s['identical_outputs']}/{s['n']}"]],
    ))
    out = args.out or (RESULTS / "grammar_sampling_quick.json" if args.quick else None)
    print("wrote", write_results("grammar_sampling", payload, out))


if __name__ == "__main__":
    main()
