"""Liveness (issue 12, item 1): hostile-but-valid requests never stall the event loop.

The real server (``run_backend.py``, a subprocess on 127.0.0.1) on the real embedded model, so
tokenising is the real llama.cpp tokenizer. While one user sends long repetitive prompts of
several shapes (in parallel, as fast as they are answered), big bodies of many messages,
conversation appends and big uploads, a prober asks ``/health`` and — as another user —
``/v1/models``. Every probe must answer within a second.

The router shapes (auto mode: the routing heuristics scan the prompt) are a separate test: it
needs the linear-time heuristics on a bounded prefix (``backend/agents/router.py``); with the old
backtracking patterns ``"solve " * 3000`` alone held the loop for 12 s.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer, start_server, stop_server

pytestmark = pytest.mark.model

PROBE_LIMIT_S = 1.0
DURATION_S = 12.0
# long repetitive prompts: each is tokenised in full (under 200k characters), most are then too
# long for the context (a fast 400) — the cost is the work before the answer
PROMPT_SHAPES = {
    "one letter": "a" * 190_000,
    "one word": "solve " * 31_000,
    "a sentence": "What is the integral of x squared? " * 5_400,
    "lines": "x = 1\n" * 31_000,
    "cjk": "数学问题" * 47_000,
    "digits and operators": "1+2*3-4/5^6 " * 15_800,
}
ROUTER_SHAPES = {
    "solve x 3000": "solve " * 3000,
    "run ... code": "run " * 4000 + "code",
    "numbers and operators": "1 + " * 4000,
    "search for": "search for " * 1500,
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = start_server(tmp_path_factory.mktemp("liveness") / "data", RATE_LIMIT_RPM="1000000", RATE_LIMIT_TPM="0",
                       QUEUE_MAX_PER_USER="64")
    # the model is loaded before the clock starts: a first tiny request waits for it
    r = httpx.post(srv.v1 + "/chat/completions", headers=_auth(srv, "alice"), timeout=600,
                   json={"model": srv.model() + ":chat", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200, r.text
    yield srv
    stop_server(srv)


def _auth(srv: LiveServer, who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {srv.tokens[who]}"}


class Prober(threading.Thread):
    """Alternates GET /health and alice's GET /v1/models; records each answer's latency."""

    def __init__(self, srv: LiveServer) -> None:
        super().__init__(daemon=True)
        self.srv = srv
        self.stop = threading.Event()
        self.samples: list[tuple[str, float, int]] = []

    def run(self) -> None:
        with httpx.Client(timeout=10) as c:
            while not self.stop.is_set():
                for path, headers in (("/health", {}), ("/v1/models", _auth(self.srv, "alice"))):
                    started = time.monotonic()
                    try:
                        status = c.get(self.srv.base_url + path, headers=headers).status_code
                    except httpx.HTTPError:
                        status = 0
                    self.samples.append((path, time.monotonic() - started, status))
                time.sleep(0.05)

    def report(self) -> str:
        lat = sorted(s[1] for s in self.samples)
        return (f"{len(lat)} probes, median {statistics.median(lat) * 1000:.0f} ms, "
                f"p99 {lat[int(len(lat) * 0.99) - 1] * 1000:.0f} ms, max {lat[-1] * 1000:.0f} ms")


def _hammer(srv: LiveServer, stop: threading.Event, bodies: list[dict[str, Any]], statuses: list[int]) -> None:
    with httpx.Client(timeout=120) as c:
        i = 0
        while not stop.is_set():
            body = bodies[i % len(bodies)]
            i += 1
            try:
                statuses.append(c.post(srv.v1 + "/chat/completions", json=body, headers=_auth(srv, "bob")).status_code)
            except httpx.HTTPError:
                statuses.append(0)


def _uploads(srv: LiveServer, stop: threading.Event, statuses: list[int]) -> None:
    big = b"Z" * (20 * 1024 * 1024)  # 20 MB without whitespace, in a type nobody parses: multipart work only
    with httpx.Client(timeout=120) as c:
        while not stop.is_set():
            files = [("files", ("blob.bin", big, "application/octet-stream"))]
            try:
                statuses.append(c.post(srv.base_url + "/api/files/upload", files=files, headers=_auth(srv, "bob")).status_code)
            except httpx.HTTPError:
                statuses.append(0)


def _run_load(srv: LiveServer, bodies: list[dict[str, Any]], senders: int, uploads: bool) -> tuple[Prober, list[int]]:
    stop = threading.Event()
    statuses: list[int] = []
    threads = [threading.Thread(target=_hammer, args=(srv, stop, bodies, statuses), daemon=True) for _ in range(senders)]
    if uploads:
        threads.append(threading.Thread(target=_uploads, args=(srv, stop, statuses), daemon=True))
    prober = Prober(srv)
    for t in threads:
        t.start()
    time.sleep(0.5)  # the load is running before the first probe
    prober.start()
    time.sleep(DURATION_S)
    prober.stop.set()
    prober.join(timeout=30)
    stop.set()
    for t in threads:
        t.join(timeout=150)
    return prober, statuses


def _check(prober: Prober, statuses: list[int]) -> None:
    assert prober.samples, "no probe answered"
    assert all(status == 200 for _, _, status in prober.samples), prober.samples[:20]
    slow = [(p, round(t, 2)) for p, t, _ in prober.samples if t >= PROBE_LIMIT_S]
    assert not slow, f"probes slower than {PROBE_LIMIT_S}s: {slow[:10]} ({prober.report()})"
    assert statuses, "the hostile requests never got an answer"
    assert all(s < 500 or s == 503 for s in statuses), sorted(set(statuses))


def test_health_and_other_users_answer_fast_under_hostile_prompts_and_uploads(server: LiveServer) -> None:
    model = server.model() + ":chat"  # the routing heuristics are tested below
    conv = httpx.post(server.base_url + "/api/conversations", json={}, headers=_auth(server, "bob")).json()["id"]
    bodies: list[dict[str, Any]] = [
        {"model": model, "max_tokens": 1, "messages": [{"role": "user", "content": text}]}
        for text in PROMPT_SHAPES.values()
    ]
    # a body near the 2 MB limit made of hundreds of messages; a long turn appended to a conversation
    bodies.append({"model": model, "max_tokens": 1,
                   "messages": [{"role": "user" if i % 2 else "assistant", "content": "ok " * 1200} for i in range(500)]})
    bodies.append({"model": model, "max_tokens": 1, "conversation_id": conv,
                   "messages": [{"role": "user", "content": "remember this: " + "lorem ipsum " * 1500}]})
    prober, statuses = _run_load(server, bodies, senders=4, uploads=True)
    print("hostile prompts and uploads:", prober.report(), f"{len(statuses)} hostile answers")
    _check(prober, statuses)
    assert 400 in statuses  # the over-long prompts were tokenised and refused, not skipped


def test_health_and_other_users_answer_fast_under_router_shapes(server: LiveServer) -> None:
    """Auto mode: the routing heuristics see every prompt (needs the linear-time router)."""
    model = server.model()
    bodies = [{"model": model, "max_tokens": 1, "messages": [{"role": "user", "content": text}]}
              for text in ROUTER_SHAPES.values()]
    prober, statuses = _run_load(server, bodies, senders=4, uploads=False)
    print("router shapes:", prober.report(), f"{len(statuses)} hostile answers")
    _check(prober, statuses)
