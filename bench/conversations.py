"""The conversation list and search at size, through the real server.

One user (bob) owns ``--conversations`` conversations of ``--messages`` messages each, written to
the server's DATA_DIR by the store's own code (as another worker process would). Measured in one run:

* listing (``GET /api/conversations?limit=20``) with the index warm, versus cold: the index is
  deleted before each request, so the server reads every conversation file, as listing did before
  the index existed;
* search (``GET /api/conversations?q=``) for a word in one conversation and for one in all;
* fairness: another user's ``GET /api/conversations`` and ``/health`` latency while bob runs
  searches back to back from ``--searchers`` clients, versus idle.

    .venv/bin/python bench/conversations.py [--conversations 1000] [--messages 20] [--reps 20] [--quick]

Results: bench/results/conversations.json. The model is the fake upstream (no weights loaded).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.storage.conversations import ConversationStore  # noqa: E402
from bench.common import fake_upstream, machine_info, model_env, pct, running_server, table, write_results  # noqa: E402

WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo", "lima", "mike", "november", "oscar"]


def populate(root: Path, user_id: str, conversations: int, messages: int) -> int:
    store = ConversationStore(root)
    for n in range(conversations):
        conv = store.create(user_id, f"Conversation {n}")
        history: list[dict[str, str]] = []
        for m in range(max(1, messages // 2)):
            text = " ".join(WORDS[(n + m + k) % len(WORDS)] for k in range(60))
            if n == conversations // 2 and m == 0:
                text += " the rare word is zanzibar"
            history += [{"role": "user", "content": f"question {m}: {text}"}, {"role": "assistant", "content": f"answer {m}: {text}"}]
        store.append_exchange(user_id, conv["id"], history[:-1], history[-1])  # one write per conversation
    return sum(p.stat().st_size for p in (root / user_id).glob("conv_*.json"))


def timed(client: httpx.Client, path: str, headers: dict[str, str], **params: Any) -> float:
    start = time.perf_counter()
    r = client.get(path, params=params, headers=headers)
    r.raise_for_status()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--conversations", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--searchers", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.conversations, args.messages, args.reps = 50, 6, 5

    with fake_upstream() as upstream, running_server(users=("alice", "bob"), admin=("alice",),
                                                     **model_env("qwen2.5-coder-0.5b", upstream)) as server:
        client = httpx.Client(base_url=server.base_url, timeout=300)
        bob, alice = server.headers("bob"), server.headers("alice")
        bob_id = client.get("/api/auth/me", headers=bob).json()["id"]
        conv_root = server.data_dir / "conversations"
        stored_bytes = populate(conv_root, bob_id, args.conversations, args.messages)
        index = conv_root / bob_id / "index.json"

        assert client.get("/api/conversations", headers=bob).json()["total"] == args.conversations
        warm = [timed(client, "/api/conversations", bob, limit=20) for _ in range(args.reps)]
        cold = []
        for _ in range(args.reps):
            index.unlink(missing_ok=True)
            cold.append(timed(client, "/api/conversations", bob, limit=20))
        rare = client.get("/api/conversations", params={"q": "zanzibar"}, headers=bob).json()
        assert rare["total"] == 1, rare
        search_one = [timed(client, "/api/conversations", bob, q="zanzibar") for _ in range(args.reps)]
        search_all = [timed(client, "/api/conversations", bob, q="foxtrot", limit=20) for _ in range(args.reps)]

        idle_list = [timed(client, "/api/conversations", alice, limit=20) for _ in range(args.reps)]
        idle_health = [timed(client, "/health", {}) for _ in range(args.reps)]
        stop = threading.Event()
        statuses: list[int] = []

        def searcher() -> None:
            with httpx.Client(base_url=server.base_url, timeout=300) as c:
                while not stop.is_set():
                    statuses.append(c.get("/api/conversations", params={"q": "foxtrot"}, headers=bob).status_code)

        threads = [threading.Thread(target=searcher) for _ in range(args.searchers)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        busy_list = [timed(client, "/api/conversations", alice, limit=20) for _ in range(args.reps)]
        busy_health = [timed(client, "/health", {}) for _ in range(args.reps)]
        stop.set()
        for t in threads:
            t.join()

    def ms(values: list[float], q: float) -> float:
        return round(1000 * (pct(values, q) or 0.0), 2)

    rows = [
        ["list, index warm", ms(warm, 50), ms(warm, 95)],
        ["list, index cold (reads every file)", ms(cold, 50), ms(cold, 95)],
        ["search, 1 match", ms(search_one, 50), ms(search_one, 95)],
        [f"search, {args.conversations} matches", ms(search_all, 50), ms(search_all, 95)],
        ["other user's list, idle", ms(idle_list, 50), ms(idle_list, 95)],
        [f"other user's list, {args.searchers} searchers busy", ms(busy_list, 50), ms(busy_list, 95)],
        ["/health, idle", ms(idle_health, 50), ms(idle_health, 95)],
        [f"/health, {args.searchers} searchers busy", ms(busy_health, 50), ms(busy_health, 95)],
    ]
    ratio = (pct(cold, 50) or 0) / max(pct(warm, 50) or 1e-9, 1e-9)
    print(f"{args.conversations} conversations x {args.messages} messages ({stored_bytes / 1e6:.1f} MB), "
          f"N={args.reps} requests each")
    print(table(["request", "p50 ms", "p95 ms"], rows))
    print(f"cold/warm listing p50 ratio: {ratio:.1f}x; searchers' statuses: "
          f"{ {s: statuses.count(s) for s in set(statuses)} }")
    write_results("conversations", {
        "conversations": args.conversations, "messages": args.messages, "stored_bytes": stored_bytes,
        "reps": args.reps, "searchers": args.searchers, "rows": rows, "cold_warm_ratio": round(ratio, 2),
        "searcher_statuses": {str(s): statuses.count(s) for s in set(statuses)}, "machine": machine_info(),
    }, args.out)


if __name__ == "__main__":
    main()
