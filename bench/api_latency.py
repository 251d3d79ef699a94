#!/usr/bin/env python3
"""API overhead: a tiny completion through our server vs straight to a fast OpenAI-compatible upstream.

The upstream is ``tests/fixtures/fake_openai_server.py`` (answers at once, no model), in its own
process on 127.0.0.1. Our server runs with ``LLM_PROVIDER=openai`` pointed at it, rate limits and
queue limits raised out of the way. Measured from the same async httpx client:

* sequential latency p50/p95 (one request at a time) — direct vs through the server; the difference
  is what the server adds (auth, validation, routing, scheduling, the upstream client, rendering);
* throughput (requests/s) at 1, 8 and 32 concurrent clients, bounded by count and time.

    .venv/bin/python bench/api_latency.py [--quick] [--requests N] [--baseline GIT_REF]

``--baseline REF`` runs a second server from commit REF's files (``git archive``) beside this one,
measured in the same interleaved rounds, and prints the ratios (added latency, req/s) against it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    REPO,
    fake_upstream,
    machine_info,
    pct,
    running_server,
    source_tree,
    table,
    write_results,
)

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


def cpu_seconds(pid: int | None) -> float:
    """User+system CPU time of process ``pid`` so far (Linux ``/proc``; 0 where unavailable)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


Target = tuple[str, str, dict[str, str], str, "int | None"]  # name, URL, headers, model, server pid


async def measure(targets: list[Target], args: argparse.Namespace) -> dict[str, Any]:
    """``targets``: (name, chat-completions URL, headers, model, pid); the first is the upstream direct."""
    res: dict[str, Any] = {"sequential": {}, "throughput": []}
    # interleave the paths in rounds so drift in machine load hits all alike
    samples: dict[str, list[float]] = {name: [] for name, *_ in targets}
    cpu: dict[str, float] = {name: 0.0 for name, *_ in targets}
    rounds = 5
    for _ in range(rounds):
        for name, url, headers, model, pid in targets:
            await sequential(url, headers, model, 0, warmup=5)
            before = cpu_seconds(pid)
            samples[name] += await sequential(url, headers, model, max(1, args.requests // rounds), warmup=0)
            cpu[name] += cpu_seconds(pid) - before
    seq = res["sequential"]
    for name, xs in samples.items():
        seq[name] = {"n": len(xs), "p50_ms": ms(xs, 50), "p95_ms": ms(xs, 95), "mean_ms": round(sum(xs) / len(xs) * 1000, 3)}
        if name != targets[0][0]:  # the server's own CPU per request: what load on the machine cannot inflate
            seq[name]["server_cpu_ms_per_request"] = round(cpu[name] / len(xs) * 1000, 3)
    direct = seq[targets[0][0]]
    for name, *_ in targets[1:]:
        seq[name]["added_p50_ms"] = round(seq[name]["p50_ms"] - direct["p50_ms"], 3)
        seq[name]["added_p95_ms"] = round(seq[name]["p95_ms"] - direct["p95_ms"], 3)
    seq["added_p50_ms"], seq["added_p95_ms"] = seq["server"]["added_p50_ms"], seq["server"]["added_p95_ms"]
    for conc in args.concurrency:
        for name, url, headers, model, _pid in targets:
            row = await throughput(url, headers, model, conc, args.total, args.max_seconds)
            row["path"] = name
            res["throughput"].append(row)
    return res


SERVER_ENV = dict(
    LLM_PROVIDER="openai", OPENAI_API_KEY="x", OPENAI_MODEL=UPSTREAM_MODEL,
    RATE_LIMIT_RPM="10000000", RATE_LIMIT_TPM="1000000000", OPENAI_PARALLEL="64", QUEUE_MAX_SIZE="100000",
    SSRF_ALLOW_HOSTS="127.0.0.1",
)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a few seconds: few requests, for CI smoke runs")
    p.add_argument("--requests", type=int, default=500, help="sequential requests per path")
    p.add_argument("--total", type=int, default=1000, help="requests per throughput run")
    p.add_argument("--max-seconds", type=float, default=20.0, help="time bound per throughput run")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--baseline", default=None, metavar="REF",
                   help="also run the server of git commit REF (exported to a temp dir) in the same run, for ratios")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.requests, args.total, args.max_seconds = 25, 40, 3.0
    machine = machine_info()
    with contextlib.ExitStack() as stack:
        upstream_v1 = stack.enter_context(fake_upstream())
        env = dict(SERVER_ENV, OPENAI_BASE_URL=upstream_v1)
        server = stack.enter_context(running_server(users=("alice", "bob"), admin=("alice",), wait_model=False, **env))
        base_model = server.base_model()
        targets = [
            ("direct", upstream_v1 + "/chat/completions", {"Authorization": "Bearer x"}, UPSTREAM_MODEL, None),
            ("server", server.v1 + "/chat/completions", server.headers("bob"), base_model, server.process.pid),
        ]
        if args.baseline:
            tree = stack.enter_context(source_tree(args.baseline))
            old = stack.enter_context(running_server(users=("alice", "bob"), admin=("alice",), wait_model=False,
                                                     repo=tree, **env))
            targets.insert(1, ("baseline", old.v1 + "/chat/completions", old.headers("bob"), old.base_model(),
                               old.process.pid))
        res = asyncio.run(measure(targets, args))
        res["model_id"] = base_model
    seq = res["sequential"]
    names = [t[0] for t in targets]
    print(f"\nSequential latency (tiny completion, max_tokens=8; user 'bob' with a JWT, non-admin: rate limiter on"
          f" the path){' baseline = ' + args.baseline if args.baseline else ''}")
    print(table(
        ["path", "n", "p50 ms", "p95 ms", "mean ms", "added p50 ms", "added p95 ms", "server CPU ms/req"],
        [[k, seq[k]["n"], seq[k]["p50_ms"], seq[k]["p95_ms"], seq[k]["mean_ms"], seq[k].get("added_p50_ms", "-"),
          seq[k].get("added_p95_ms", "-"), seq[k].get("server_cpu_ms_per_request", "-")] for k in names],
    ))
    print(f"added by the server: p50 {seq['added_p50_ms']:.2f} ms, p95 {seq['added_p95_ms']:.2f} ms (goal <= 3 ms at p50)")
    if args.baseline:
        ratio = seq["server"]["added_p50_ms"] / seq["baseline"]["added_p50_ms"] if seq["baseline"]["added_p50_ms"] > 0 else None
        res["added_p50_ratio_vs_baseline"] = round(ratio, 3) if ratio is not None else None
        print(f"added p50 now / baseline {args.baseline}: {ratio:.2f}" if ratio is not None else "baseline added nothing?")
        old_cpu = seq["baseline"]["server_cpu_ms_per_request"]
        if old_cpu:
            res["server_cpu_ratio_vs_baseline"] = round(seq["server"]["server_cpu_ms_per_request"] / old_cpu, 3)
            print(f"server CPU per request now / baseline: {res['server_cpu_ratio_vs_baseline']:.2f}")
    print("\nThroughput")
    print(table(
        ["clients", "path", "completed", "req/s", "p50 ms", "p95 ms", "errors"],
        [[r["concurrency"], r["path"], r["completed"], r["rps"], r["p50_ms"], r["p95_ms"], r["errors"] or "-"] for r in res["throughput"]],
    ))
    if args.baseline:
        rps = {(r["concurrency"], r["path"]): r["rps"] for r in res["throughput"]}
        res["rps_ratio_vs_baseline"] = {
            str(c): round(rps[(c, "server")] / rps[(c, "baseline")], 2) if rps[(c, "baseline")] else None for c in args.concurrency
        }
        print("req/s now / baseline: " + ", ".join(f"{c} clients {v}x" for c, v in res["rps_ratio_vs_baseline"].items()))
    payload = {
        "benchmark": "api_latency",
        "description": "tiny completion through the server (LLM_PROVIDER=openai) vs straight to the fake upstream",
        "quick": args.quick,
        "params": {"requests": args.requests, "total": args.total, "max_seconds": args.max_seconds,
                   "concurrency": args.concurrency, "baseline": args.baseline},
        "goal": {"added_p50_ms_max": 3.0, "reference": "LiteLLM proxy publishes 3.25 ms added latency"},
        "results": res,
        "machine": machine,
    }
    path = write_results("api_latency", payload, args.out)
    print(f"\nwrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
