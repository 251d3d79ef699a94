#!/usr/bin/env python3
"""Where the API layer's time goes: ``py-spy`` samples the real server while a client sends tiny
completions one at a time (the same setup as ``bench/api_latency.py``: fake upstream, JWT user,
rate limiter, fair queue and metrics on).

Samples are attributed to the innermost frame that belongs to a known layer (auth, body decoding,
validation, the upstream client, metrics, logging, the framework, …) and printed as milliseconds of
server CPU per request. Needs ``py-spy`` (requirements-dev.txt) and permission to ptrace the server.

    .venv/bin/python bench/api_profile.py [--seconds 15] [--rate 500] [--raw out.txt]
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO, fake_upstream, running_server, source_tree, table  # noqa: E402

BODY = {"messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 8, "temperature": 0}

#: (layer, substrings of a frame's file or function): the innermost matching frame names the layer
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("auth (jwt, users, keys, revocations)", ("backend/api/deps.py", "backend/auth/", "backend/storage/users.py",
                                              "backend/storage/keys.py", "jwt/", "filelock/")),
    ("json stores (read/parse)", ("backend/storage/jsonstore.py",)),
    ("body decode", ("backend/api/body.py",)),
    ("request validation (pydantic)", ("pydantic", "backend/chat/schemas.py")),
    ("rate limit + fair queue", ("backend/ratelimit.py", "backend/llm/scheduler.py")),
    ("upstream client (openai sdk)", ("openai/",)),
    ("upstream http (aiohttp/httpx)", ("aiohttp/", "httpx/", "httpcore/", "anyio/", "h11/", "yarl/", "multidict/")),
    ("upstream provider glue", ("backend/llm/openai_provider.py", "backend/llm/base.py")),
    ("metrics (prometheus)", ("prometheus_client/",)),
    ("logging", ("logging/", "backend/observability/logging.py")),
    ("chat pipeline + render", ("backend/chat/", "backend/api/v1.py")),
    ("our middleware", ("backend/middleware.py",)),
    ("fastapi/starlette", ("fastapi/", "starlette/")),
    ("uvicorn + httptools", ("uvicorn/", "httptools")),
    ("threads + asyncio (hops, tasks, loop)", ("concurrent/futures", "threading.py", "asyncio/")),
]


#: leaf frames that are a transport write: the time is the kernel's loopback delivery, not Python
WRITE_SYSCALLS = ("http_writer.py:116", "httptools_impl.py:524", "httptools_impl.py:551", "SocketStream.send",
                  "AnyIOStream.write")


def layer_of(stack: list[str]) -> str:
    for frame in reversed(stack):
        for name, marks in LAYERS:
            if any(m in frame for m in marks):
                return name
    return "other"


def drive(url: str, headers: dict[str, str], model: str, stop: threading.Event, count: list[int]) -> None:
    with httpx.Client(timeout=30) as client:
        while not stop.is_set():
            r = client.post(url, headers=headers, json={"model": model, **BODY})
            r.raise_for_status()
            count[0] += 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--rate", type=int, default=500, help="py-spy samples per second")
    p.add_argument("--raw", type=Path, default=Path("/tmp/api_profile.txt"), help="where py-spy writes folded stacks")
    p.add_argument("--top", type=int, default=25, help="how many leaf functions to list")
    p.add_argument("--ref", default=None, help="profile the server of this git commit instead (exported to a temp dir)")
    args = p.parse_args(argv)
    pyspy = Path(sys.executable).with_name("py-spy")
    with contextlib.ExitStack() as stack:
        repo = stack.enter_context(source_tree(args.ref)) if args.ref else REPO
        return _profile(args, pyspy, repo)


def _profile(args: argparse.Namespace, pyspy: Path, repo: Path) -> int:
    with fake_upstream() as upstream_v1, running_server(repo=repo,
        users=("alice", "bob"), admin=("alice",), wait_model=False,
        LLM_PROVIDER="openai", OPENAI_BASE_URL=upstream_v1, OPENAI_API_KEY="x", OPENAI_MODEL="fake-model",
        RATE_LIMIT_RPM="10000000", RATE_LIMIT_TPM="1000000000", OPENAI_PARALLEL="64", QUEUE_MAX_SIZE="100000",
        SSRF_ALLOW_HOSTS="127.0.0.1",
    ) as server:
        model = server.base_model()
        url, headers = server.v1 + "/chat/completions", server.headers("bob")
        for _ in range(50):  # warm-up: imports, connections, caches
            httpx.post(url, headers=headers, json={"model": model, **BODY}, timeout=30).raise_for_status()
        stop, count = threading.Event(), [0]
        worker = threading.Thread(target=drive, args=(url, headers, model, stop, count))
        worker.start()
        time.sleep(0.5)
        start_count = count[0]
        spy = subprocess.run(
            [str(pyspy), "record", "--pid", str(server.process.pid), "-d", str(int(args.seconds)), "-r", str(args.rate),
             "-f", "raw", "-o", str(args.raw), "--nonblocking", "--gil"],
            capture_output=True, text=True,
        )
        n = count[0] - start_count
        stop.set()
        worker.join()
    if spy.returncode != 0:
        print(spy.stderr, file=sys.stderr)
        return 1
    layers: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = writes = 0
    for line in args.raw.read_text().splitlines():
        stack_text, _, num = line.rpartition(" ")
        samples = int(num)
        stack = stack_text.split(";")
        total += samples
        layers[layer_of(stack)] += samples
        leaves[stack[-1]] += samples
        if any(m in stack[-1] for m in WRITE_SYSCALLS):
            writes += samples
    ms_per_sample = 1000.0 / args.rate
    print(f"\n{n} requests in {args.seconds:.0f} s sampled at {args.rate}/s: {total} busy samples, "
          f"{total * ms_per_sample / max(n, 1):.2f} ms server CPU per request\n")
    print(f"of which socket writes (send syscalls: loopback TCP delivery, inflated by load): "
          f"{writes * ms_per_sample / max(n, 1):.2f} ms\n")
    print(table(["layer", "samples", "share %", "ms / request"],
                [[k, v, round(100 * v / total, 1), round(v * ms_per_sample / max(n, 1), 3)] for k, v in layers.most_common()]))
    print(f"\ntop {args.top} leaf frames")
    print(table(["frame", "samples", "share %"], [[k[:110], v, round(100 * v / total, 1)] for k, v in leaves.most_common(args.top)]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
