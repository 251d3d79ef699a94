#!/usr/bin/env python3
"""API overhead: a tiny completion through our server vs straight to a fast OpenAI-compatible upstream.

The upstream is ``tests/fixtures/fake_openai_server.py`` (answers at once, no model), in its own
process on 127.0.0.1. Our server runs with ``LLM_PROVIDER=openai`` pointed at it, rate limits and
queue limits raised out of the way. Measured from the same async httpx client:

* sequential latency p50/p95 (one request at a time) — direct vs through the server; the difference
  is what the server adds (auth, validation, routing, scheduling, the upstream client, rendering);
* throughput (requests/s) at 1, 8 and 32 concurrent clients, bounded by count and time.

    .venv/bin/python bench/api_latency.py [--quick] [--requests N]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO, fake_upstream, machine_info, pct, running_server, table, write_results  # noqa: E402

UPSTREAM_MODEL = "fake-model"
BODY = {"messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 8, "temperature": 0}


async def one(client: httpx.AsyncClient, url: str, headers: dict[str, str], model: str) -> tuple[float, int]:
    t0 = time.perf_counter()
    r = await client.post(url, headers=headers, json={"model": model, **BODY})
    dt = time.perf_counter() - t0
    if r.status_code == 200:
        r.json()
    return dt, r.status_code


async def sequential(url: str, headers: dict[str, str], model: str, n: int, warmup: int) -> list[float]:
    async with httpx.AsyncClient(timeout=30) as client:
        for _ in range(warmup):
            await one(client, url, headers, model)
        out: list[float] = []
        for _ in range(n):
            dt, status = await one(client, url, headers, model)
            if status != 200:
                raise RuntimeError(f"{url} answered {status}")
            out.append(dt)
        return out


async def throughput(
    url: str, headers: dict[str, str], model: str, concurrency: int, total: int, max_s: float
) -> dict[str, Any]:
    """``concurrency`` workers send requests back to back until ``total`` are done or ``max_s`` passes."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    lat: list[float] = []
    errors: dict[str, int] = {}
    sent = 0
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        for _ in range(min(concurrency, 8)):
            await one(client, url, headers, model)
        t_start = time.perf_counter()
        deadline = t_start + max_s

        async def worker() -> None:
            nonlocal sent
            while sent < total and time.perf_counter() < deadline:
                sent += 1
                try:
                    dt, status = await one(client, url, headers, model)
                except httpx.HTTPError as exc:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                    continue
                if status == 200:
                    lat.append(dt)
                else:
                    errors[str(status)] = errors.get(str(status), 0) + 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t_start
    return {
        "concurrency": concurrency,
        "completed": len(lat),
        "elapsed_s": round(elapsed, 3),
        "rps": round(len(lat) / elapsed, 1) if elapsed else None,
        "p50_ms": round(pct(lat, 50) * 1000, 2) if lat else None,
        "p95_ms": round(pct(lat, 95) * 1000, 2) if lat else None,
        "errors": errors,
    }


def ms(values: list[float], q: float) -> float:
    return round(pct(values, q) * 1000, 3)  # type: ignore[operator]


async def measure(server_v1: str, token: str, upstream_v1: str, base_model: str, args: argparse.Namespace) -> dict[str, Any]:
    direct_url, ours_url = upstream_v1 + "/chat/completions", server_v1 + "/chat/completions"
    direct_h = {"Authorization": "Bearer x"}
    ours_h = {"Authorization": f"Bearer {token}"}
    res: dict[str, Any] = {"sequential": {}, "throughput": []}
    # interleave the two paths in rounds so drift in machine load hits both alike
    direct: list[float] = []
    ours: list[float] = []
    rounds = 5
    for _ in range(rounds):
        direct += await sequential(direct_url, direct_h, UPSTREAM_MODEL, args.requests // rounds, warmup=5)
        ours += await sequential(ours_url, ours_h, base_model, args.requests // rounds, warmup=5)
    for name, xs in (("direct", direct), ("server", ours)):
        res["sequential"][name] = {"n": len(xs), "p50_ms": ms(xs, 50), "p95_ms": ms(xs, 95), "mean_ms": round(sum(xs) / len(xs) * 1000, 3)}
    res["sequential"]["added_p50_ms"] = round(res["sequential"]["server"]["p50_ms"] - res["sequential"]["direct"]["p50_ms"], 3)
    res["sequential"]["added_p95_ms"] = round(res["sequential"]["server"]["p95_ms"] - res["sequential"]["direct"]["p95_ms"], 3)
    for conc in args.concurrency:
        for name, url, h, model in (("direct", direct_url, direct_h, UPSTREAM_MODEL), ("server", ours_url, ours_h, base_model)):
            row = await throughput(url, h, model, conc, args.total, args.max_seconds)
            row["path"] = name
            res["throughput"].append(row)
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a few seconds: few requests, for CI smoke runs")
    p.add_argument("--requests", type=int, default=500, help="sequential requests per path")
    p.add_argument("--total", type=int, default=1000, help="requests per throughput run")
    p.add_argument("--max-seconds", type=float, default=20.0, help="time bound per throughput run")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.requests, args.total, args.max_seconds = 25, 40, 3.0
    machine = machine_info()
    with fake_upstream() as upstream_v1, running_server(
            users=("alice", "bob"), admin=("alice",), wait_model=False,
            LLM_PROVIDER="openai", OPENAI_BASE_URL=upstream_v1, OPENAI_API_KEY="x", OPENAI_MODEL=UPSTREAM_MODEL,
        RATE_LIMIT_RPM="10000000", RATE_LIMIT_TPM="1000000000", OPENAI_PARALLEL="64", QUEUE_MAX_SIZE="100000",
        SSRF_ALLOW_HOSTS="127.0.0.1",
    ) as server:
        base_model = server.base_model()
        res = asyncio.run(measure(server.v1, server.tokens["bob"], upstream_v1, base_model, args))
        res["model_id"] = base_model
    seq = res["sequential"]
    print("\nSequential latency (tiny completion, max_tokens=8; user 'bob', non-admin: rate limiter on the path)")
    print(table(
        ["path", "n", "p50 ms", "p95 ms", "mean ms"],
        [[k, seq[k]["n"], seq[k]["p50_ms"], seq[k]["p95_ms"], seq[k]["mean_ms"]] for k in ("direct", "server")],
    ))
    print(f"added by the server: p50 {seq['added_p50_ms']:.2f} ms, p95 {seq['added_p95_ms']:.2f} ms (goal <= 5 ms at p50)")
    print("\nThroughput")
    print(table(
        ["clients", "path", "completed", "req/s", "p50 ms", "p95 ms", "errors"],
        [[r["concurrency"], r["path"], r["completed"], r["rps"], r["p50_ms"], r["p95_ms"], r["errors"] or "-"] for r in res["throughput"]],
    ))
    payload = {
        "benchmark": "api_latency",
        "description": "tiny completion through the server (LLM_PROVIDER=openai) vs straight to the fake upstream",
        "quick": args.quick,
        "params": {"requests": args.requests, "total": args.total, "max_seconds": args.max_seconds, "concurrency": args.concurrency},
        "goal": {"added_p50_ms_max": 5.0, "reference": "LiteLLM proxy publishes 3.25 ms added latency"},
        "results": res,
        "machine": machine,
    }
    path = write_results("api_latency", payload, args.out)
    print(f"\nwrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
