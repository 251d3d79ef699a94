"""/v1/embeddings in-process with the real MiniLM embedder: the official SDK, both encodings,
vectors identical to RAG's embedder, OpenAI-shaped errors, the model listing, the rate limit."""

from __future__ import annotations

import base64

import numpy as np
import openai
import pytest

from backend.rag.embeddings import build_embedder
from tests.openai_schema import validate

MODEL = "all-MiniLM-L6-v2"
TEXTS = ["The cat sat on the mat.", "FAISS indexes dense vectors.", "Quarterly revenue grew by 12%."]


def sdk(api, who: str = "bob") -> openai.OpenAI:
    return openai.OpenAI(base_url="http://testserver/v1", api_key=api.tokens[who], http_client=api.client, max_retries=0)


def test_sdk_embeddings_match_the_rag_embedder(api):
    resp = sdk(api).embeddings.create(model=MODEL, input=TEXTS)  # the SDK asks for base64 by default
    direct = build_embedder(api.services.settings).embed(TEXTS)
    got = np.array([d.embedding for d in resp.data], dtype=np.float32)
    assert got.shape == (3, 384)
    assert [d.index for d in resp.data] == [0, 1, 2]
    cosines = (got * direct).sum(axis=1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(direct, axis=1))
    assert cosines.min() > 0.999
    assert resp.usage.prompt_tokens == resp.usage.total_tokens > len(TEXTS)
    assert resp.model == MODEL


def test_float_and_base64_are_the_same_vector(api):
    body = {"model": MODEL, "input": "hello world"}
    as_float = api.client.post("/v1/embeddings", json=body | {"encoding_format": "float"}, headers=api.auth("bob"))
    assert as_float.status_code == 200, as_float.text
    validate(as_float.json(), "CreateEmbeddingResponse")
    as_b64 = api.client.post("/v1/embeddings", json=body | {"encoding_format": "base64"}, headers=api.auth("bob")).json()
    decoded = np.frombuffer(base64.b64decode(as_b64["data"][0]["embedding"]), dtype="<f4")
    vector = np.array(as_float.json()["data"][0]["embedding"], dtype=np.float32)
    assert np.array_equal(decoded, vector)
    assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5
    # the same dimension count as the model has is accepted
    same = api.client.post("/v1/embeddings", json=body | {"dimensions": 384}, headers=api.auth("bob"))
    assert same.status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "param", "code"),
    [
        ({"model": MODEL, "input": [[101, 2023, 102]]}, 400, "input", "unsupported_value"),
        ({"model": MODEL, "input": [101, 2023, 102]}, 400, "input", "unsupported_value"),
        ({"model": MODEL, "input": ""}, 400, "input", "invalid_value"),
        ({"model": MODEL, "input": ["ok", "  "]}, 400, "input[1]", "invalid_value"),
        ({"model": MODEL, "input": ["ok", 3]}, 400, "input[1]", "invalid_value"),
        ({"model": MODEL, "input": []}, 400, "input", "invalid_value"),
        ({"model": MODEL, "input": "x", "dimensions": 128}, 400, "dimensions", "unsupported_value"),
        ({"model": MODEL, "input": "x", "encoding_format": "int8"}, 400, "encoding_format", "invalid_value"),
        ({"model": "text-embedding-3-small", "input": "x"}, 404, "model", "model_not_found"),
        ({"input": "x"}, 400, "model", "invalid_value"),
        ({"model": MODEL, "input": ["t"] * 257}, 400, "input", "too_many_inputs"),
    ],
)
def test_bad_requests_are_openai_shaped(api, body, status, param, code):
    r = api.client.post("/v1/embeddings", json=body, headers=api.auth("bob"))
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert (err["param"], err["code"]) == (param, code)
    assert err["type"] == "invalid_request_error"


def test_token_arrays_explain_what_to_send(api):
    with pytest.raises(openai.BadRequestError) as info:
        sdk(api).embeddings.create(model=MODEL, input=[[1, 2, 3]])
    assert "check_embedding_ctx_length=False" in info.value.message


def test_malformed_body_and_missing_auth(api):
    r = api.client.post("/v1/embeddings", content=b"{oops", headers=api.auth("bob") | {"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    assert api.client.post("/v1/embeddings", json={"model": MODEL, "input": "x"}).status_code == 401


def test_embedding_model_is_listed_after_the_chat_models(api):
    listing = api.client.get("/v1/models", headers=api.auth("bob")).json()
    validate(listing, "ListModelsResponse")
    assert listing["data"][0]["id"] == "scripted-model"  # clients take the first model for chat
    assert listing["data"][-1]["id"] == MODEL and listing["data"][-1]["type"] == "embedding"
    one = api.client.get(f"/v1/models/{MODEL}", headers=api.auth("bob"))
    assert one.status_code == 200
    validate(one.json(), "Model")
    with pytest.raises(openai.NotFoundError):  # and it is no chat model
        sdk(api).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])


def test_per_user_rate_limit_applies(api):
    api.services.rate_limiter.rpm = 2
    body = {"model": MODEL, "input": "x"}
    codes = [api.client.post("/v1/embeddings", json=body, headers=api.auth("bob")).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    limited = api.client.post("/v1/embeddings", json=body, headers=api.auth("bob"))
    assert limited.json()["error"]["type"] == "rate_limit_error" and int(limited.headers["retry-after"]) >= 1
    # bob's budget is his own: alice (admin, exempt by default) is not affected
    assert api.client.post("/v1/embeddings", json=body, headers=api.auth("alice")).status_code == 200


def test_large_request_is_embedded_in_batches_in_input_order(api):
    texts = [f"document number {i} about topic {i % 7}" for i in range(150)]  # > one batch of 64
    r = api.client.post("/v1/embeddings", json={"model": MODEL, "input": texts, "encoding_format": "float"},
                        headers=api.auth("bob"))
    assert r.status_code == 200
    got = np.array([d["embedding"] for d in r.json()["data"]], dtype=np.float32)
    direct = build_embedder(api.services.settings).embed(texts)
    assert ((got * direct).sum(axis=1)).min() > 0.999  # row i is text i
    assert api.services.embedding_scheduler.active == 0  # every batch gave its slot back
