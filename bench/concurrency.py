#!/usr/bin/env python3
"""Many users at once against the embedded model: throughput, waits, fairness, errors.

Scenario ``uniform``: 20 distinct accounts each send ``--per-user`` short streamed completions at
the same moment (the model runs one generation at a time; the fair scheduler queues the rest).
Scenario ``greedy``: one user bursts 10 requests, then 10 other users send 1 each 50 ms later;
with per-user round-robin the light users must not wait behind the whole burst.

Wait = time to the first content token (queueing + prompt evaluation); latency = full response.
Errors are counted by HTTP status (429 rate limit, 503 queue full / timeout).

    .venv/bin/python bench/concurrency.py [--quick] [--model qwen2.5-coder-0.5b] [--users 20] [--per-user 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import fake_upstream, machine_info, model_env, pct, running_server, table, warm_model, write_results  # noqa: E402

QUESTIONS = [
    "Name a primary colour.", "What is 2 plus 2?", "Say hello in French.", "Name a planet.",
    "What colour is grass?", "Name a fruit.", "What is the opposite of hot?", "Name a month.",
]


async def one(client: httpx.AsyncClient, url: str, token: str, model: str, user: str, i: int, max_tokens: int) -> dict[str, Any]:
    body = {
        "model": model, "messages": [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}],
        "max_tokens": max_tokens, "temperature": 0, "stream": True, "stream_options": {"include_usage": True},
    }
    t0 = time.perf_counter()
    first = None
    tokens = 0
    try:
        async with client.stream("POST", url, headers={"Authorization": f"Bearer {token}"}, json=body) as r:
            if r.status_code != 200:
                await r.aread()
                return {"user": user, "status": r.status_code, "t0": t0, "error": r.text[:200]}
            async for line in r.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if chunk.get("error"):
                    return {"user": user, "status": "stream_error", "t0": t0, "error": str(chunk["error"])[:200]}
                if chunk.get("usage"):
                    tokens = chunk["usage"].get("completion_tokens", 0)
                for c in chunk.get("choices") or []:
                    if (c.get("delta") or {}).get("content") and first is None:
                        first = time.perf_counter()
    except httpx.HTTPError as exc:
        return {"user": user, "status": type(exc).__name__, "t0": t0}
    end = time.perf_counter()
    return {"user": user, "status": 200, "t0": t0, "wait_s": (first or end) - t0, "latency_s": end - t0,
            "end": end, "completion_tokens": tokens}


def stats(results: list[dict[str, Any]], t_start: float) -> dict[str, Any]:
    ok = [r for r in results if r["status"] == 200]
    errors: dict[str, int] = {}
    for r in results:
        if r["status"] != 200:
            errors[str(r["status"])] = errors.get(str(r["status"]), 0) + 1
    wall = max((r["end"] for r in ok), default=t_start) - t_start
    waits = [r["wait_s"] for r in ok]
    per_user: dict[str, float] = {}
    for r in ok:
        per_user[r["user"]] = max(per_user.get(r["user"], 0.0), r["latency_s"])
    return {
        "requests": len(results), "ok": len(ok), "errors_by_status": errors,
        "wall_s": round(wall, 2), "completions_per_s": round(len(ok) / wall, 3) if wall else None,
        "completion_tokens_per_s": round(sum(r["completion_tokens"] for r in ok) / wall, 2) if wall else None,
        "wait_p50_s": round(pct(waits, 50) or 0, 2), "wait_p95_s": round(pct(waits, 95) or 0, 2),
        "latency_p50_s": round(pct([r["latency_s"] for r in ok], 50) or 0, 2),
        "latency_p95_s": round(pct([r["latency_s"] for r in ok], 95) or 0, 2),
        "worst_user_latency_s": round(max(per_user.values()), 2) if per_user else None,
        "best_user_latency_s": round(min(per_user.values()), 2) if per_user else None,
    }


async def uniform(server: Any, model: str, users: list[str], per_user: int, max_tokens: int) -> dict[str, Any]:
    url = server.v1 + "/chat/completions"
    limits = httpx.Limits(max_connections=len(users) * per_user + 4)
    async with httpx.AsyncClient(timeout=900, limits=limits) as client:
        t_start = time.perf_counter()
        tasks = [one(client, url, server.tokens[u], model, u, k * len(users) + j, max_tokens)
                 for k in range(per_user) for j, u in enumerate(users)]
        results = await asyncio.gather(*tasks)
    out = stats(list(results), t_start)
    out["users"], out["per_user"] = len(users), per_user
    return out


async def greedy(server: Any, model: str, greedy_user: str, others: list[str], burst: int, max_tokens: int) -> dict[str, Any]:
    url = server.v1 + "/chat/completions"
    async with httpx.AsyncClient(timeout=900, limits=httpx.Limits(max_connections=burst + len(others) + 4)) as client:
        t_start = time.perf_counter()
        g = [asyncio.create_task(one(client, url, server.tokens[greedy_user], model, greedy_user, i, max_tokens)) for i in range(burst)]
        await asyncio.sleep(0.05)
        o = [asyncio.create_task(one(client, url, server.tokens[u], model, u, i, max_tokens)) for i, u in enumerate(others)]
        g_res, o_res = await asyncio.gather(asyncio.gather(*g), asyncio.gather(*o))
    all_res = list(g_res) + list(o_res)
    out = stats(all_res, t_start)
    ok_g = [r for r in g_res if r["status"] == 200]
    ok_o = [r for r in o_res if r["status"] == 200]
    order = "".join("G" if r["user"] == greedy_user else "L" for r in sorted(ok_g + ok_o, key=lambda r: r["end"]))
    out.update({
        "burst": burst, "light_users": len(others),
        "greedy_last_done_s": round(max((r["end"] for r in ok_g), default=t_start) - t_start, 2),
        "light_wait_p50_s": round(pct([r["wait_s"] for r in ok_o], 50) or 0, 2),
        "light_latency_max_s": round(max((r["latency_s"] for r in ok_o), default=0), 2),
        "light_all_done_s": round(max((r["end"] for r in ok_o), default=t_start) - t_start, 2),
        "greedy_latency_max_s": round(max((r["latency_s"] for r in ok_g), default=0), 2),
        # with a plain FIFO queue the light users would queue behind the whole burst and finish last,
        # at about the time everything is done; round-robin interleaves them (G = greedy, L = light)
        "all_done_s": round(max((r["end"] for r in ok_g + ok_o), default=t_start) - t_start, 2),
        "completion_order": order,
    })
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: smollm2-135m, 4 users, 4-request burst")
    p.add_argument("--model", default="qwen2.5-coder-0.5b")
    p.add_argument("--users", type=int, default=20)
    p.add_argument("--per-user", type=int, default=2)
    p.add_argument("--burst", type=int, default=10)
    p.add_argument("--light", type=int, default=10)
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--fake-upstream", action="store_true", help="no model: the fake OpenAI upstream (CI smoke)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.model, args.users, args.per_user, args.burst, args.light, args.max_tokens = "smollm2-135m", 4, 1, 3, 3, 4
    machine = machine_info()
    names = [f"user{i:02d}" for i in range(1, max(args.users, args.light + 1) + 1)]
    with contextlib.ExitStack() as stack:
        upstream = stack.enter_context(fake_upstream()) if args.fake_upstream else None
        server = stack.enter_context(running_server(
            users=("alice", *names), admin=("alice",), wait_model=False, EMBEDDED_N_CTX="2048", OPENAI_PARALLEL="1",
            **model_env(args.model, upstream),
        ))
        model = server.base_model() + ":chat"
        warm_model(server, model, "alice")
        uni = asyncio.run(uniform(server, model, names[: args.users], args.per_user, args.max_tokens))
        gre = asyncio.run(greedy(server, model, names[0], names[1 : args.light + 1], args.burst, args.max_tokens))
    label = "fake upstream" if args.fake_upstream else args.model
    print(f"\nUniform: {args.users} users x {args.per_user} streamed completions (max_tokens={args.max_tokens}, {label})")
    print(table(
        ["requests", "ok", "errors", "completions/s", "tokens/s", "wait p50 s", "wait p95 s", "latency p95 s", "worst user s", "best user s"],
        [[uni["requests"], uni["ok"], uni["errors_by_status"] or "-", uni["completions_per_s"], uni["completion_tokens_per_s"],
          uni["wait_p50_s"], uni["wait_p95_s"], uni["latency_p95_s"], uni["worst_user_latency_s"], uni["best_user_latency_s"]]],
    ))
    print(f"\nGreedy: 1 user bursts {args.burst}, {args.light} users send 1 each 50 ms later")
    print(table(
        ["light wait p50 s", "light worst latency s", "light all done s", "greedy last done s", "all done s", "completion order", "errors"],
        [[gre["light_wait_p50_s"], gre["light_latency_max_s"], gre["light_all_done_s"], gre["greedy_last_done_s"],
          gre["all_done_s"], gre["completion_order"], gre["errors_by_status"] or "-"]],
    ))
    payload = {"benchmark": "concurrency", "quick": args.quick, "model": "fake-upstream" if args.fake_upstream else args.model, "max_tokens": args.max_tokens,
               "uniform": uni, "greedy": gre, "machine": machine}
    path = write_results("concurrency", payload, args.out)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
