"""Queue and rate-limit behaviour under 20 concurrent streaming clients (one command, prints a table).

    .venv/bin/python bench/queue_measure.py [--requests 6] [--token-delay 0.01] [--words 25]

The real app (``create_app``) under a real uvicorn on 127.0.0.1, on a *scripted* model with a fixed
per-token delay and one generation slot (like the in-process llama.cpp), so the figures measure the
server's queueing, fairness and limits, not a model. 20 clients: one "heavy" user runs 8 of them,
four "light" users run 3 each. Each client sends ``--requests`` streamed completions one after the
other. Reported: completions, 429s (rate limit), 503s (queue full / queue wait), and per user the
wait until the first content byte (p50 and worst) — the fair scheduler keeps light users' waits
short while the heavy user's burst queues behind its own requests.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

from bench.common import machine_info, pct, table, write_results  # noqa: E402
from tests.fakes import ScriptedProvider  # noqa: E402
from tests.reliability.conftest import ThreadedApp, reliability_settings  # noqa: E402

CLIENTS = {"heavy": 8, "light1": 3, "light2": 3, "light3": 3, "light4": 3}


def client_loop(app: ThreadedApp, user: str, n: int, out: list[dict[str, Any]]) -> None:
    body = {"model": "scripted-model:chat", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    with httpx.Client(timeout=120) as http:
        for _ in range(n):
            started = time.monotonic()
            rec: dict[str, Any] = {"user": user, "status": None, "first_content_s": None, "total_s": None, "keepalives": 0}
            try:
                with http.stream("POST", app.base_url + "/v1/chat/completions", json=body, headers=app.auth(user)) as r:
                    rec["status"] = r.status_code
                    if r.status_code == 200:
                        for line in r.iter_lines():
                            if line == ": keep-alive":
                                rec["keepalives"] += 1
                            elif line.startswith("data: {") and rec["first_content_s"] is None and '"content":"' in line \
                                    and '"content":""' not in line:
                                rec["first_content_s"] = time.monotonic() - started
                    else:
                        r.read()
                        rec["retry_after"] = r.headers.get("retry-after")
                        rec["code"] = json.loads(r.text)["error"]["code"]
            except httpx.HTTPError as exc:
                rec["status"] = f"error:{type(exc).__name__}"
            rec["total_s"] = time.monotonic() - started
            out.append(rec)
            if rec["status"] in (429, 503):
                time.sleep(0.2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=6, help="requests per client")
    ap.add_argument("--token-delay", type=float, default=0.01, help="seconds per generated token")
    ap.add_argument("--words", type=int, default=25, help="tokens per answer")
    ap.add_argument("--rpm", type=int, default=20, help="RATE_LIMIT_RPM")
    ap.add_argument("--queue-max", type=int, default=10, help="QUEUE_MAX_SIZE")
    ap.add_argument("--queue-timeout", type=float, default=15.0, help="QUEUE_TIMEOUT_S")
    args = ap.parse_args()

    provider = ScriptedProvider(delay_s=args.token_delay)
    provider.default = " ".join(f"t{i}" for i in range(args.words))
    data = Path(tempfile.mkdtemp(prefix="queue-measure-")) / "data"
    settings = reliability_settings(data, rate_limit_rpm=args.rpm, queue_max_size=args.queue_max,
                                    queue_timeout_s=args.queue_timeout, keepalive_interval_s=1.0, rate_limit_tpm=10**9)
    records: list[dict[str, Any]] = []
    with ThreadedApp(settings, provider, users={u: "user" for u in CLIENTS}) as app:
        threads = [threading.Thread(target=client_loop, args=(app, user, args.requests, records))
                   for user, n in CLIENTS.items() for _ in range(n)]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - started

    per_user: dict[str, dict[str, Any]] = defaultdict(lambda: {"ok": 0, "429": 0, "503": 0, "other": 0, "waits": []})
    for rec in records:
        u = per_user[rec["user"]]
        key = {200: "ok", 429: "429", 503: "503"}.get(rec["status"], "other")
        u[key] += 1
        if rec["first_content_s"] is not None:
            u["waits"].append(rec["first_content_s"])
    rows = []
    for user in CLIENTS:
        u = per_user[user]
        rows.append([user, CLIENTS[user], u["ok"], u["429"], u["503"], u["other"], pct(u["waits"], 50), max(u["waits"], default=None)])
    print(table(["user", "clients", "completions", "429", "503", "other", "p50 wait s", "worst wait s"], rows))
    totals = {k: sum(per_user[u][k] for u in CLIENTS) for k in ("ok", "429", "503", "other")}
    print(f"\n20 clients x {args.requests} requests in {wall:.1f}s: {totals['ok']} completions, "
          f"{totals['429']} x 429, {totals['503']} x 503, {totals['other']} other; "
          f"generation ~{args.words * args.token_delay:.2f}s each, 1 slot; keep-alives seen: "
          f"{sum(r['keepalives'] for r in records)}")
    write_results("queue_measure", {
        "machine": machine_info(), "args": vars(args), "wall_s": wall, "totals": totals,
        "per_user": {u: {k: v for k, v in per_user[u].items() if k != "waits"} | {
            "p50_wait_s": pct(per_user[u]["waits"], 50), "worst_wait_s": max(per_user[u]["waits"], default=None)}
            for u in CLIENTS},
        "records": records,
    })


if __name__ == "__main__":
    main()
