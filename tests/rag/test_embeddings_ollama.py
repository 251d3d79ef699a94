"""The Ollama embedding backend against a local HTTP server on 127.0.0.1.

The server answers ``POST /api/embed`` in the response shape of Ollama's API documentation
(model, embeddings, total_duration, load_duration, prompt_eval_count); the production client
code path is unchanged, only the host differs.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import numpy as np
import pytest

from backend.errors import ServiceUnavailableError, UpstreamError
from backend.rag.embeddings import OllamaEmbedder, build_embedder
from tests.rag.conftest import make_rag_settings


class _Handler(BaseHTTPRequestHandler):
    requests: list[dict] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        _Handler.requests.append({"path": self.path, **body})
        if body["model"] == "missing-model":
            payload, status = {"error": 'model "missing-model" not found, try pulling it first'}, 404
        else:
            inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
            vectors = [[float(len(t)), 1.0, 0.0, 2.0] for t in inputs]
            payload = {"model": body["model"], "embeddings": vectors, "total_duration": 14143917,
                       "load_duration": 1019500, "prompt_eval_count": 8}
            status = 200
        raw = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json; charset=utf-8")
        self.send_header("content-length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


@pytest.fixture
def ollama_url() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Handler.requests.clear()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_ollama_embed_batches_and_normalises(ollama_url: str, tmp_path: Path) -> None:
    settings = make_rag_settings(tmp_path, embedding_backend="ollama", ollama_host=ollama_url,
                                 embedding_model="all-minilm", embedding_batch_size=2)
    embedder = build_embedder(settings)
    assert isinstance(embedder, OllamaEmbedder)
    vectors = embedder.embed(["a", "bb", "ccc"])
    assert vectors.shape == (3, 4) and embedder.dim == 4
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
    assert [r["input"] for r in _Handler.requests] == [["a", "bb"], ["ccc"]]  # batched
    assert {r["path"] for r in _Handler.requests} == {"/api/embed"} and _Handler.requests[0]["model"] == "all-minilm"


def test_ollama_errors_are_clean(ollama_url: str) -> None:
    with pytest.raises(UpstreamError):
        OllamaEmbedder(ollama_url, "missing-model").embed(["x"])
    with pytest.raises(ServiceUnavailableError):
        OllamaEmbedder("http://127.0.0.1:9", "all-minilm", timeout_s=2).embed(["x"])
