#!/usr/bin/env python3
"""What sharing the per-request state through Redis costs: each shared operation, in-process vs Redis.

One run, same process, a real ``redis-server`` on a loopback port (started here, in a temp dir):
for each operation a request performs, N calls on the in-process backend and N on the Redis backend
(interleaved in blocks, so machine load hits both alike); p50/p95 in microseconds and the ratio.

* ``rate limit``: ``check`` + ``record_tokens`` (every chat request; RPM and TPM on);
* ``revocation``: ``is_revoked`` (every JWT-authenticated request);
* ``login throttle``: ``check`` (every login);
* ``queue place``: ``join`` + ``leave`` (a request that has to wait for the model).

    .venv/bin/python bench/shared_state.py [--quick] [--n 2000] [--out bench/results/shared_state.json]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.auth.throttle import LoginThrottle  # noqa: E402
from backend.shared_state import RedisConnection, SharedState  # noqa: E402
from bench.common import free_port, machine_info, pct, table, write_results  # noqa: E402


def start_redis(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder), "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("redis-server did not start")


def operations(state: SharedState, tmp: Path) -> dict[str, Callable[[int], Any]]:
    limiter = state.rate_limiter(rpm=10**9, tpm=10**12)
    revocations = state.revocations(tmp / f"revoked-{state.backend}.json")
    revocations.revoke("some-other-jti", int(time.time()) + 3600)
    throttle = LoginThrottle(5, 300, counter=state.counter("login", 5, 300, 10_000))
    queue = state.queue_accounting("model")

    def rate(i: int) -> None:
        limiter.check(f"u{i % 50}", 100)
        limiter.record_tokens(f"u{i % 50}", 150)

    def place(i: int) -> None:
        queue.join(f"u{i % 50}", f"p{i}", 10**6, 300)
        queue.leave(f"u{i % 50}", f"p{i}")

    return {
        "rate limit (check + record)": rate,
        "revocation (is_revoked)": lambda i: revocations.is_revoked(f"jti-{i}"),
        "login throttle (check)": lambda i: throttle.check(f"user{i % 50}", "198.51.100.7"),
        "queue place (join + leave)": place,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="calls per operation and backend")
    parser.add_argument("--quick", action="store_true", help="N=200")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    n = 200 if args.quick else args.n
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        proc, url = start_redis(tmp)
        try:
            backends = {"memory": SharedState(None), "redis": SharedState(RedisConnection(url, prefix="bench"))}
            ops = {name: operations(state, tmp) for name, state in backends.items()}
            times: dict[tuple[str, str], list[float]] = {(b, o): [] for b in backends for o in ops["memory"]}
            block = max(1, n // 10)
            for start in range(0, n, block):  # interleaved blocks
                for op in ops["memory"]:
                    for backend in backends:
                        fn = ops[backend][op]
                        for i in range(start, min(n, start + block)):
                            t0 = time.perf_counter()
                            fn(i)
                            times[(backend, op)].append((time.perf_counter() - t0) * 1e6)
            backends["redis"].close()
        finally:
            proc.terminate()
            proc.wait(10)
    rows, results = [], []
    for op in ops["memory"]:
        mem, red = times[("memory", op)], times[("redis", op)]
        m50, r50 = pct(mem, 50) or 0.0, pct(red, 50) or 0.0
        rows.append([op, m50, pct(mem, 95), r50, pct(red, 95), r50 / m50 if m50 else None, r50 - m50])
        results.append({"operation": op, "n": n, "memory_p50_us": m50, "memory_p95_us": pct(mem, 95),
                        "redis_p50_us": r50, "redis_p95_us": pct(red, 95)})
    print(f"Shared state per operation, N={n} each (redis-server on loopback, same run)")
    print(table(["operation", "memory p50 µs", "memory p95 µs", "redis p50 µs", "redis p95 µs", "ratio p50",
                 "added p50 µs"], rows, digits=1))
    path = write_results("shared_state", {"n": n, "results": results, "machine": machine_info()}, args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
