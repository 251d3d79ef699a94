"""Ingestion bounds against the real server: quotas and rate limits answer in OpenAI's error shape, and
hostile uploads (a PDF whose pages share one big stream, 25 MB without whitespace) are refused
without the server's memory growing or /health stalling."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import start_server, stop_server
from tests.rag.test_ingest_bounds import _shared_stream_pdf


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    live = start_server(
        tmp_path_factory.mktemp("bounds") / "data",
        wait_model=False,
        RAG_MAX_DOCUMENTS_PER_USER="1",
        RAG_UPLOAD_RPM="6",
        RAG_MAX_CHARS_PER_DOCUMENT="1000000",
    )
    yield live
    stop_server(live)


def _post(server, who: str, name: str, data: bytes, kind: str = "text/plain") -> httpx.Response:
    return httpx.post(
        server.base_url + "/api/files/upload",
        files=[("files", (name, data, kind))],
        headers={"Authorization": f"Bearer {server.tokens[who]}"},
        timeout=300,
    )


def test_quota_rate_limit_and_hostile_uploads_on_the_real_server(server):
    assert _post(server, "bob", "note.txt", b"bob keeps one note about tides").status_code == 200
    quota = _post(server, "bob", "second.txt", b"a second note")
    assert quota.status_code == 403
    assert quota.json()["error"]["code"] == "document_quota_exceeded"
    assert set(quota.json()["error"]) == {"message", "type", "param", "code"}

    baseline = _rss_mb(server.process.pid)
    health: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        while not stop.is_set():
            start = time.monotonic()
            httpx.get(server.base_url + "/health", timeout=10)
            health.append(time.monotonic() - start)
            time.sleep(0.1)

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    try:
        bomb = _post(server, "alice", "bomb.pdf", _shared_stream_pdf(pages=400, text_chars=20_000), "application/pdf")
        blob = _post(server, "alice", "blob.txt", b"x" * (24 * 1024 * 1024))
    finally:
        stop.set()
        prober.join(timeout=15)
    assert bomb.status_code == 413 and bomb.json()["error"]["code"] == "too_much_text"
    assert blob.status_code == 413 and blob.json()["error"]["code"] == "too_much_text"
    grown = _rss_mb(server.process.pid) - baseline
    print(f"server RSS {baseline:.0f} MB -> {baseline + grown:.0f} MB; /health max {max(health or [0]):.3f}s over {len(health)}")
    assert grown < 150, f"server RSS grew by {grown:.0f} MB"  # the upload body itself is spooled to disk
    assert health and max(health) < 1.0, f"/health took up to {max(health):.2f}s"

    statuses = [_post(server, "bob", f"n{i}.txt", b"over quota anyway").status_code for i in range(8)]
    assert 429 in statuses  # six uploads a minute, then the rate limit (before the quota is even read)
