#!/usr/bin/env python3
"""Mixed load: 20 users for 60 s of valid chats, uploads and searches mixed with hostile requests.

The real server (``run_backend.py``, a subprocess on 127.0.0.1) with default limits. Each user
loops, choosing at random: a chat in a conversation of its own (remembering what it said), a chat
without one, an upload of a small document (remembering its id), a search, a listing — or a
hostile request: a long repetitive prompt (several shapes; some in auto mode, where the routing
heuristics read it), a body of 500 messages, a big upload that does not parse, a 1 MB text
without whitespace. A prober asks ``/health`` every 100 ms. Afterwards, with the server stopped:

* no 5xx except 503 with ``Retry-After``;
* ``/health`` p99 < 1 s;
* every ``*.json`` file under the data directory parses;
* nothing stored is lost: every acknowledged chat turn is in its conversation, every
  acknowledged upload is listed.

    .venv/bin/python bench/mixed_load.py [--seconds 60] [--users 20] [--provider fake|embedded] [--quick]

``--provider fake`` (default): chats go to the fake OpenAI-compatible upstream (scripted answers,
tests/fixtures/fake_openai_server.py) — the server, auth, storage, RAG (real embedder) are all real.
``--provider embedded``: the real 0.5B model (chats queue behind one generation at a time).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO, fake_upstream, machine_info, pct, running_server, table, write_results  # noqa: E402

HOSTILE_PROMPTS = {
    "one letter x190k": "a" * 190_000,
    "solve x3000 (auto)": "solve " * 3000,
    "sentence x5400": "What is the integral of x squared? " * 5_400,
    "cjk x47k": "数学问题" * 47_000,
    "operators (auto)": "1 + " * 4000,
}
# (kind, weight)
ACTIONS = [
    ("chat_conversation", 26), ("chat_plain", 10), ("upload", 8), ("search", 14), ("list", 6),
    ("hostile_prompt", 20), ("hostile_messages", 6), ("hostile_upload", 6), ("hostile_text", 4),
]


class Stats:
    def __init__(self) -> None:
        self.status: dict[str, Counter[int]] = {}
        self.bad: list[str] = []  # 5xx other than 503 + Retry-After
        self.stored_turns: list[tuple[str, str, str]] = []  # (user, conversation id, marker)
        self.stored_files: list[tuple[str, str]] = []  # (user, file id)
        self.health: list[float] = []
        self.health_failures = 0

    def record(self, kind: str, r: httpx.Response | None) -> None:
        code = r.status_code if r is not None else 0
        self.status.setdefault(kind, Counter())[code] += 1
        if r is not None and code >= 500 and not (code == 503 and r.headers.get("retry-after")):
            self.bad.append(f"{kind}: {code} {r.text[:200]}")


async def _post(client: httpx.AsyncClient, url: str, **kw: Any) -> httpx.Response | None:
    try:
        return await client.post(url, **kw)
    except httpx.HTTPError:
        return None


async def user_loop(name: str, server: Any, model: str, deadline: float, stats: Stats, seed: int) -> None:
    rng = random.Random(seed)
    headers = server.headers(name)
    kinds, weights = zip(*ACTIONS, strict=True)
    async with httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=180) as c:
        conv = (await c.post("/api/conversations", json={})).json()["id"]
        n = 0
        while time.monotonic() < deadline:
            kind = rng.choices(kinds, weights)[0]
            n += 1
            marker = f"{name}-m{n}-{rng.randrange(10**9)}"
            if kind == "chat_conversation":
                r = await _post(c, "/v1/chat/completions", json={
                    "model": model + ":chat", "max_tokens": 16, "conversation_id": conv,
                    "messages": [{"role": "user", "content": f"Please remember the code word {marker}."}]})
                if r is not None and r.status_code == 200:
                    stats.stored_turns.append((name, conv, marker))
            elif kind == "chat_plain":
                r = await _post(c, "/v1/chat/completions", json={
                    "model": model, "max_tokens": 16, "messages": [{"role": "user", "content": "What is 17 * 23?"}]})
            elif kind == "upload":
                text = f"Notes of {name}. The secret project name is {marker}. " + "Filler sentence here. " * 80
                r = await _post(c, "/api/files/upload", files=[("files", (f"{marker}.txt", text.encode(), "text/plain"))])
                if r is not None and r.status_code == 200:
                    for entry in r.json().get("data", []):
                        if entry.get("file_id"):
                            stats.stored_files.append((name, entry["file_id"]))
            elif kind == "search":
                r = await _post(c, "/api/files/search", json={"query": "secret project name", "top_k": 3})
            elif kind == "list":
                try:
                    r = await c.get(rng.choice(["/api/files/documents", "/api/conversations", "/v1/models"]))
                except httpx.HTTPError:
                    r = None
            elif kind == "hostile_prompt":
                label = rng.choice(list(HOSTILE_PROMPTS))
                target = model if "(auto)" in label else model + ":chat"
                r = await _post(c, "/v1/chat/completions", json={
                    "model": target, "max_tokens": 1, "messages": [{"role": "user", "content": HOSTILE_PROMPTS[label]}]})
            elif kind == "hostile_messages":
                r = await _post(c, "/v1/chat/completions", json={"model": model + ":chat", "max_tokens": 1, "messages": [
                    {"role": "user" if i % 2 == 0 else "assistant", "content": "ok " * 1200} for i in range(500)]})
            elif kind == "hostile_upload":
                junk = b"%PDF-1.7\n" + bytes(rng.randrange(256) for _ in range(4096)) * 2048  # 8 MB that is no PDF
                r = await _post(c, "/api/files/upload", files=[("files", ("scan.pdf", junk, "application/pdf"))])
            else:  # hostile_text: 1 MB without whitespace
                r = await _post(c, "/api/files/upload",
                                files=[("files", ("blob.txt", b"Z" * (1024 * 1024), "text/plain"))])
                if r is not None and r.status_code == 200:
                    for entry in r.json().get("data", []):
                        if entry.get("file_id"):
                            stats.stored_files.append((name, entry["file_id"]))
            stats.record(kind, r)
            if r is not None and r.status_code in (429, 503):
                with contextlib.suppress(ValueError):
                    await asyncio.sleep(min(5.0, float(r.headers.get("retry-after", "1"))))


def prober(server: Any, deadline: float, stats: Stats) -> None:
    """In a thread of its own (not the users' event loop): the client's own work never delays a probe."""
    with httpx.Client(base_url=server.base_url, timeout=30) as c:
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            try:
                ok = c.get("/health").status_code == 200
            except httpx.HTTPError:
                ok = False
            stats.health.append(time.monotonic() - t0)
            stats.health_failures += not ok
            time.sleep(0.1)


async def verify_stored(server: Any, stats: Stats) -> dict[str, int]:
    lost_turns = lost_files = 0
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as c:
        convs: dict[tuple[str, str], str] = {}
        for name, conv, _ in stats.stored_turns:
            if (name, conv) not in convs:
                r = await c.get(f"/api/conversations/{conv}", headers=server.headers(name))
                convs[(name, conv)] = r.text if r.status_code == 200 else ""
        lost_turns = sum(marker not in convs[(name, conv)] for name, conv, marker in stats.stored_turns)
        listed: dict[str, set[str]] = {}
        for name, file_id in stats.stored_files:
            if name not in listed:
                r = await c.get("/api/files/documents", params={"limit": 100}, headers=server.headers(name))
                listed[name] = {d.get("file_id") for d in r.json().get("data", [])} if r.status_code == 200 else set()
            lost_files += file_id not in listed[name]
    return {"turns_acknowledged": len(stats.stored_turns), "turns_lost": lost_turns,
            "files_acknowledged": len(stats.stored_files), "files_lost": lost_files}


def json_files_ok(data_dir: Path) -> tuple[int, list[str]]:
    broken, count = [], 0
    for path in data_dir.rglob("*.json"):
        count += 1
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            broken.append(f"{path.relative_to(data_dir)}: {exc}")
    return count, broken


async def run(server: Any, users: list[str], model: str, seconds: float) -> Stats:
    stats = Stats()
    deadline = time.monotonic() + seconds
    probe = threading.Thread(target=prober, args=(server, deadline, stats), daemon=True)
    probe.start()
    await asyncio.gather(*(user_loop(u, server, model, deadline, stats, seed=i) for i, u in enumerate(users)))
    probe.join(timeout=60)
    return stats


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--users", type=int, default=20)
    p.add_argument("--provider", choices=["fake", "embedded"], default="fake")
    p.add_argument("--quick", action="store_true", help="10 s, 5 users (smoke run)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.seconds, args.users = 10.0, 5
    users = [f"user{i:02d}" for i in range(args.users)]
    machine = machine_info()
    with contextlib.ExitStack() as stack:
        env: dict[str, str] = {"SSRF_ALLOW_HOSTS": "127.0.0.1"}
        if args.provider == "fake":
            upstream = stack.enter_context(fake_upstream())
            env |= {"LLM_PROVIDER": "openai", "OPENAI_BASE_URL": upstream, "OPENAI_API_KEY": "x", "OPENAI_MODEL": "fake-model"}
        server = stack.enter_context(running_server(users=users, admin=(), wait_model=args.provider == "fake", **env))
        model = server.base_model()
        started = time.monotonic()
        stats = asyncio.run(run(server, users, model, args.seconds))
        elapsed = time.monotonic() - started
        stored = asyncio.run(verify_stored(server, stats))
        server.stop()
        if os.environ.get("PYTHONASYNCIODEBUG"):  # diagnosis: the server's slow event-loop callbacks
            for line in server.log_path.read_text(errors="replace").splitlines():
                if "Executing" in line and "took" in line:
                    print("slow callback:", line[:400])
        n_json, broken = json_files_ok(server.data_dir)
    statuses = {k: dict(sorted(v.items())) for k, v in sorted(stats.status.items())}
    total = sum(sum(v.values()) for v in stats.status.values())
    health_p99 = pct(stats.health, 99)
    checks = {
        "no 5xx except 503+Retry-After": not stats.bad,
        "/health p99 < 1 s": health_p99 is not None and health_p99 < 1.0 and stats.health_failures == 0,
        "every JSON file parses": not broken,
        "nothing stored is lost": stored["turns_lost"] == 0 and stored["files_lost"] == 0,
    }
    print(f"\nMixed load: {args.users} users, {elapsed:.0f} s, provider {args.provider}, {total} requests")
    print(table(["request kind", "answers by status"],
                [[k, ", ".join(f"{c}: {n}" for c, n in v.items())] for k, v in statuses.items()]))
    print(f"\n/health: {len(stats.health)} probes, p50 {pct(stats.health, 50) * 1000:.0f} ms, "
          f"p99 {health_p99 * 1000:.0f} ms, max {max(stats.health) * 1000:.0f} ms, failures {stats.health_failures}")
    print(f"stored: {stored}; JSON files checked: {n_json}, broken: {len(broken)}")
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    for line in (stats.bad + broken)[:20]:
        print("  ", line)
    payload = {
        "benchmark": "mixed_load",
        "description": "N users of valid chats/uploads/searches mixed with hostile requests against the real server",
        "params": {"seconds": args.seconds, "users": args.users, "provider": args.provider, "actions": dict(ACTIONS)},
        "results": {
            "requests": total, "elapsed_s": round(elapsed, 1), "statuses": statuses, "bad_5xx": stats.bad[:50],
            "health": {"probes": len(stats.health), "p50_ms": round(pct(stats.health, 50) * 1000, 1),
                       "p99_ms": round(health_p99 * 1000, 1), "max_ms": round(max(stats.health) * 1000, 1),
                       "failures": stats.health_failures},
            "stored": stored, "json_files": n_json, "json_broken": broken[:50], "checks": checks,
        },
        "machine": machine,
    }
    path = write_results("mixed_load" + ("_quick" if args.quick else ""), payload, args.out)
    print(f"\nwrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
