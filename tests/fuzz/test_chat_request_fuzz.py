"""Property-based fuzz of the chat request schema (issue 12, item 7), with OpenAI's own schema as
the oracle.

Hypothesis builds chat requests whose content parts, tool definitions, ``tool_choice`` and
``response_format`` are drawn from well-formed shapes, near misses (a right key with a wrong
value) and arbitrary JSON. Properties, for every request:

* never a 5xx, and every error is OpenAI's error body (no trace);
* a request that OpenAI's published schema (tests/fixtures/openai) rejects is a 4xx here too;
* ``max_tokens`` above the server's ceiling is a 400.

In-process (TestClient) on the scripted model; bounded and derandomised so a run is repeatable.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.openai_schema import document_for

MODEL = "scripted-model:chat"
LIMIT = 4096
SCALARS = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False, allow_infinity=False) \
    | st.text(max_size=12)
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                    max_leaves=8)
PART_TYPES = ["text", "refusal", "image_url", "input_audio", "file", "bogus", ""]


def _maybe(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly the right shape, sometimes any JSON value in its place."""
    return st.one_of(good, good, JSON)


GOOD_PART = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": st.text(max_size=20)}),
    st.fixed_dictionaries({"type": st.just("refusal"), "refusal": st.text(max_size=20)}),
    st.fixed_dictionaries({"type": st.just("image_url"), "image_url": st.fixed_dictionaries(
        {"url": st.just("https://example.org/a.png")}, optional={"detail": st.sampled_from(["auto", "low", "high", "max"])})}),
    st.fixed_dictionaries({"type": st.just("input_audio"), "input_audio": st.fixed_dictionaries(
        {"data": st.just("UklGRg=="), "format": st.sampled_from(["wav", "mp3", "ogg"])})}),
    st.fixed_dictionaries({"type": st.just("file"), "file": st.fixed_dictionaries(
        {}, optional={"file_id": st.text(max_size=10), "filename": st.text(max_size=10)})}),
)
NEAR_PART = st.fixed_dictionaries(
    {"type": _maybe(st.sampled_from(PART_TYPES))},
    optional={k: JSON for k in ("text", "refusal", "image_url", "input_audio", "file")},
)
PART = st.one_of(GOOD_PART, NEAR_PART, JSON)
CONTENT = st.one_of(st.text(max_size=30), st.lists(PART, min_size=0, max_size=3), JSON)
MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "user", "assistant", "system", "developer", "tool"]), "content": CONTENT},
    optional={"tool_call_id": _maybe(st.just("call_1")), "name": _maybe(st.just("bob"))},
)
SCHEMA = st.one_of(st.just({"type": "object", "properties": {"x": {"type": "integer"}}}), JSON)
FUNCTION = st.fixed_dictionaries(
    {"name": _maybe(st.sampled_from(["lookup", "get_weather", "bad name!", "", "x" * 65]))},
    optional={"description": _maybe(st.text(max_size=20)), "parameters": SCHEMA, "strict": _maybe(st.booleans())},
)
TOOL = st.one_of(st.fixed_dictionaries({"type": _maybe(st.just("function")), "function": _maybe(FUNCTION)}), JSON)
TOOL_CHOICE = st.one_of(
    st.sampled_from(["auto", "none", "required", "sometimes"]),
    st.fixed_dictionaries({"type": _maybe(st.just("function")), "function": _maybe(st.fixed_dictionaries(
        {"name": _maybe(st.sampled_from(["lookup", "missing"]))}))}),
    JSON,
)
RESPONSE_FORMAT = st.one_of(
    st.fixed_dictionaries({"type": st.sampled_from(["text", "json_object", "json_schema", "yaml"])}),
    st.fixed_dictionaries({"type": st.just("json_schema"), "json_schema": _maybe(st.fixed_dictionaries(
        {"name": _maybe(st.sampled_from(["answer", "bad name"]))}, optional={"schema": SCHEMA, "strict": _maybe(st.booleans())}))}),
    JSON,
)
REQUEST = st.fixed_dictionaries(
    {"model": st.just(MODEL), "messages": st.lists(MESSAGE, min_size=1, max_size=3)},
    optional={"tools": _maybe(st.lists(TOOL, max_size=2)), "tool_choice": TOOL_CHOICE, "response_format": RESPONSE_FORMAT,
              "max_tokens": st.integers(-5, 10**12), "stream": st.booleans()},
)


@lru_cache(maxsize=1)
def _openai_validator() -> jsonschema.protocols.Validator:
    doc = document_for("CreateChatCompletionRequest")
    schema = {"$ref": "#/components/schemas/CreateChatCompletionRequest", "components": doc["components"]}
    return jsonschema.Draft202012Validator(schema)


def openai_accepts(body: dict[str, Any]) -> bool:
    # our one deliberate leniency: an optional top-level field sent as null means "not set"
    # (client libraries serialise unset options that way)
    return _openai_validator().is_valid({k: v for k, v in body.items() if v is not None})


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, dict[str, str]]]:
    from fastapi.testclient import TestClient

    from backend.app import create_app
    from backend.settings import Settings
    from tests.conftest import PASSWORD, TEST_SECRET
    from tests.fakes import ScriptedProvider

    settings = Settings(_env_file=None, data_dir=tmp_path_factory.mktemp("fuzz") / "data", jwt_secret=TEST_SECRET,
                        bcrypt_rounds=4, serve_frontend=False, log_json=False, router_use_llm=False,
                        rate_limit_rpm=1_000_000, allowed_hosts=["testserver"], max_tokens_limit=LIMIT)
    app = create_app(settings, provider=ScriptedProvider())
    with TestClient(app, raise_server_exceptions=False) as c:
        app.state.services.users.create("bob", PASSWORD)
        token = c.post("/api/auth/login", json={"username": "bob", "password": PASSWORD}).json()["access_token"]
        yield c, {"Authorization": f"Bearer {token}"}


def _check(client: Any, headers: dict[str, str], body: dict[str, Any]) -> int:
    r = client.post("/v1/chat/completions", content=json.dumps(body), headers=headers | {"Content-Type": "application/json"})
    assert r.status_code < 500, (r.status_code, r.text[:300], body)
    if r.status_code >= 400:
        err = r.json()
        assert set(err) == {"error"} and set(err["error"]) == {"message", "type", "param", "code"}, r.text
        assert "Traceback" not in r.text
    return r.status_code


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
@given(body=REQUEST)
def test_any_request_is_answered_without_a_server_error(client, body):
    c, headers = client
    status = _check(c, headers, body)
    if not openai_accepts(body):
        assert 400 <= status < 500, ("OpenAI's schema rejects this request; we answered", status, body)
    mt = body.get("max_tokens")
    if isinstance(mt, int) and mt > LIMIT:
        assert status == 400


@pytest.mark.parametrize("part", [
    {"type": "refusal", "refusal": 5},  # answered 500 before
    {"type": "text", "text": None},
    {"type": "text"},
    {"type": "image_url", "image_url": "https://example.org/a.png"},
    {"type": "input_audio", "input_audio": {"data": "x", "format": "flac"}},
    {"type": 7},
    {"text": "no type"},
    "just a string",
])
def test_known_bad_user_parts_are_400(client, part):
    c, headers = client
    body = {"model": MODEL, "messages": [{"role": "user", "content": [part]}]}
    assert _check(c, headers, body) == 400


@pytest.mark.parametrize("extra", [
    {"tool_choice": {"type": "function", "function": 5}, "tools": [{"type": "function", "function": {"name": "f"}}]},
    {"response_format": {"type": "json_schema", "json_schema": "x"}},
    {"response_format": {"type": "json_schema", "json_schema": {"name": "a b"}}},
    {"tools": [{"type": "function", "function": {"name": "f", "parameters": []}}]},
    {"tools": [{"type": "function", "function": {"name": "f", "description": 5}}]},
    {"max_tokens": LIMIT + 1},
    {"max_completion_tokens": 10**15},
])
def test_known_bad_tools_formats_and_limits_are_400(client, extra):
    c, headers = client
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], **extra}
    assert _check(c, headers, body) == 400


def test_the_responses_api_has_the_same_ceiling(client):
    c, headers = client
    r = c.post("/v1/responses", json={"model": MODEL, "input": "hi", "max_output_tokens": LIMIT + 1}, headers=headers)
    assert r.status_code == 400, r.text
    ok = c.post("/v1/responses", json={"model": MODEL, "input": "hi", "max_output_tokens": 16}, headers=headers)
    assert ok.status_code == 200, ok.text
