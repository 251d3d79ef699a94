"""End to end on the real server and models: /v1/embeddings through the official SDK and
LangChain's OpenAIEmbeddings, /v1/completions and fill-in-the-middle through the official SDK."""

from __future__ import annotations

import ast
import json

import httpx
import numpy as np
import pytest

from backend.rag.embeddings import build_embedder
from backend.settings import Settings
from tests.openai_schema import validate, validate_completion_chunk

pytestmark = pytest.mark.model

EMBEDDING_MODEL = "all-MiniLM-L6-v2"
DOCS = [
    "The mitochondria is the powerhouse of the cell.",
    "Invoices are due within thirty days of receipt.",
    "Photosynthesis turns light into chemical energy.",
]
PREFIX = 'def is_even(n: int) -> bool:\n    """Return True when n is even."""\n'
SUFFIX = "\n\nprint(is_even(4))\n"
MEAN_PREFIX = "def mean(xs):\n    total = 0\n    for x in xs:\n"
MEAN_SUFFIX = "\n    return total / len(xs)\n"


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def rag_embedder():
    return build_embedder(Settings(_env_file=None))  # the embedder RAG uses, in this process


def test_langchain_openai_embeddings_reproduce_the_rag_embedder(live_server):
    from langchain_openai import OpenAIEmbeddings

    lc = OpenAIEmbeddings(model=EMBEDDING_MODEL, base_url=live_server.v1, api_key=live_server.tokens["bob"],
                          check_embedding_ctx_length=False, max_retries=0)
    docs = np.array(lc.embed_documents(DOCS), dtype=np.float32)
    query = np.array([lc.embed_query("What produces energy in a cell?")], dtype=np.float32)
    direct = rag_embedder().embed(DOCS + ["What produces energy in a cell?"])
    assert docs.shape == (3, 384)
    assert cosines(docs, direct[:3]).min() > 0.999
    assert cosines(query, direct[3:]).min() > 0.999


def test_sdk_embeddings_validate(live_server):
    resp = live_server.openai("bob").embeddings.create(model=EMBEDDING_MODEL, input=DOCS)
    assert [len(d.embedding) for d in resp.data] == [384, 384, 384] and resp.usage.prompt_tokens > 10
    raw = httpx.post(live_server.v1 + "/embeddings", json={"model": EMBEDDING_MODEL, "input": DOCS[0]},
                     headers={"Authorization": f"Bearer {live_server.tokens['bob']}"}, timeout=120)
    validate(raw.json(), "CreateEmbeddingResponse")


@pytest.mark.parametrize(("prefix", "suffix"), [(PREFIX, SUFFIX), (MEAN_PREFIX, MEAN_SUFFIX)])
def test_fim_with_check_syntax_always_parses(live_server, prefix, suffix):
    client = live_server.openai("bob")
    raw = client.completions.with_raw_response.create(
        model=live_server.model(), prompt=prefix, suffix=suffix, max_tokens=64, temperature=0,
        extra_body={"check_syntax": "python"})
    body = json.loads(raw.text)
    validate(body, "CreateCompletionResponse")
    middle = body["choices"][0]["text"]
    ast.parse(prefix + middle + suffix)  # the guarantee check_syntax gives
    assert "<|fim" not in middle
    assert body["syntax_check"][0]["attempts"] >= 1


def test_fim_stream_with_check_syntax_parses(live_server):
    stream = live_server.openai("bob").completions.create(
        model=live_server.model(), prompt=MEAN_PREFIX, suffix=MEAN_SUFFIX, max_tokens=64, temperature=0, stream=True,
        extra_body={"check_syntax": "python"})
    middle = "".join(c.choices[0].text for c in stream if c.choices)
    ast.parse(MEAN_PREFIX + middle + MEAN_SUFFIX)


def test_plain_completion_stream_validates_and_ends_with_done(live_server):
    body = {"model": live_server.model(), "prompt": "def add(a, b):\n", "max_tokens": 16, "temperature": 0,
            "stream": True, "stream_options": {"include_usage": True}, "stop": ["\n\n"]}
    with httpx.stream("POST", live_server.v1 + "/completions", json=body, timeout=300,
                      headers={"Authorization": f"Bearer {live_server.tokens['bob']}"}) as r:
        assert r.status_code == 200
        lines = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    for chunk in chunks:
        validate_completion_chunk(chunk)
    text = "".join(c["choices"][0]["text"] for c in chunks if c["choices"])
    assert "\n\n" not in text
    assert chunks[-1]["usage"]["completion_tokens"] >= 1
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert finishes in (["stop"], ["length"])
