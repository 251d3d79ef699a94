"""Our tools served at /mcp, tested with the SDK's own streamable-HTTP client against the real server
(a subprocess on loopback): the same bearer tokens and API keys as /v1, per-user documents, rate limits."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from backend.tools.sandbox import sandbox_available
from tests.conftest import LiveServer, start_server, stop_server

RPM = 8  # the per-user rate limit of this server (alice is an admin: exempt)
ALICE_DOC = "Project Heron launch notes. The launch code for project Heron is AZURE-7731, kept by Alice."
BOB_DOC = "Project Heron budget memo. Bob writes that project Heron costs 12 million kroner in total."


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    # no model is needed for tools: point the provider at nothing instead of loading the GGUF
    live = start_server(tmp_path_factory.mktemp("mcp") / "data", wait_model=False,
                        LLM_PROVIDER="ollama", OLLAMA_HOST="http://127.0.0.1:9", RATE_LIMIT_RPM=str(RPM))
    try:
        for who, name, text in (("alice", "alice_notes.txt", ALICE_DOC), ("bob", "bob_notes.txt", BOB_DOC)):
            r = httpx.post(live.base_url + "/api/files/upload", headers=auth(live, who), timeout=300,
                           files=[("files", (name, text.encode(), "text/plain"))])
            assert r.status_code == 200, r.text
        yield live
    finally:
        stop_server(live)


def auth(live: LiveServer, who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {live.tokens[who]}"}


async def with_session(url: str, headers: dict[str, str], body: Any) -> Any:  # noqa: ANN401
    async with (
        httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(120)) as http,
        streamable_http_client(url, http_client=http) as (read, write, _),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        return await body(session)


def mcp_run(live: LiveServer, who_or_headers: str | dict[str, str], body: Any) -> Any:  # noqa: ANN401
    headers = auth(live, who_or_headers) if isinstance(who_or_headers, str) else who_or_headers
    return asyncio.run(with_session(live.base_url + "/mcp", headers, body))


def text_of(result: Any) -> str:  # noqa: ANN401
    return "\n".join(block.text for block in result.content if block.type == "text")


def test_lists_our_tools_with_their_schemas(server):
    async def body(session):
        return {t.name: t for t in (await session.list_tools()).tools}

    tools = mcp_run(server, "bob", body)
    assert {"rag_retrieval", "math_calc", "python_code"} <= set(tools)
    assert not any(name.startswith("mcp_") for name in tools)  # attached servers' tools are not re-exported
    assert "web_search" not in tools  # not runnable here (no search key): not offered
    assert tools["math_calc"].inputSchema["required"] == ["expression"]
    assert tools["rag_retrieval"].inputSchema["properties"]["top_k"]["type"] == "integer"


def test_math_and_bad_arguments(server):
    async def body(session):
        good = await session.call_tool("math_calc", {"expression": "diff(x**3, x)"})
        bad = await session.call_tool("math_calc", {})
        unknown = await session.call_tool("no_such_tool", {"x": 1})
        return good, bad, unknown

    good, bad, unknown = mcp_run(server, "alice", body)
    assert not good.isError and "3*x**2" in text_of(good)
    assert bad.isError and "expression" in text_of(bad)
    assert unknown.isError and "unknown tool" in text_of(unknown)


def test_document_search_sees_only_the_callers_documents(server):
    async def search(session):
        return await session.call_tool("rag_retrieval", {"query": "project Heron", "top_k": 5})

    alice = text_of(mcp_run(server, "alice", search))
    bob = text_of(mcp_run(server, "bob", search))
    assert "AZURE-7731" in alice and "alice_notes.txt" in alice
    assert "12 million kroner" not in alice and "bob_notes.txt" not in alice
    assert "12 million kroner" in bob and "bob_notes.txt" in bob
    assert "AZURE-7731" not in bob and "alice_notes.txt" not in bob


def test_an_api_key_works_like_a_token(server):
    r = httpx.post(server.base_url + "/api/keys", headers=auth(server, "alice"), json={"name": "ide"})
    assert r.status_code == 201, r.text
    key = r.json()["key"]

    async def body(session):
        return await session.call_tool("rag_retrieval", {"query": "launch code"})

    result = mcp_run(server, {"Authorization": f"Bearer {key}"}, body)
    assert "AZURE-7731" in text_of(result)


def test_a_key_without_the_inference_scope_is_refused(server):
    r = httpx.post(server.base_url + "/api/keys", headers=auth(server, "alice"), json={"scopes": ["conversations"]})
    assert r.status_code == 201, r.text
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
    r = httpx.post(server.base_url + "/mcp", json=init, headers={"Accept": "application/json, text/event-stream",
                                                                "Authorization": f"Bearer {r.json()['key']}"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "insufficient_scope", r.text


@pytest.mark.skipif(not sandbox_available()[0], reason="bubblewrap sandbox unavailable")
def test_python_runs_in_the_sandbox(server):
    async def body(session):
        return await session.call_tool("python_code", {"code": "import os\nprint(6 * 7, os.getuid())"})

    result = mcp_run(server, "bob", body)
    assert not result.isError and "42" in text_of(result)


def test_without_a_valid_key_401_in_openai_shape(server):
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "t", "version": "1"}}}
    headers = {"Accept": "application/json, text/event-stream"}
    for extra in ({}, {"Authorization": "Bearer sk-not-a-real-key"}, {"Authorization": "Bearer not.a.jwt"}):
        r = httpx.post(server.base_url + "/mcp", json=init, headers=headers | extra)
        assert r.status_code == 401, r.text
        error = r.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["type"] == "authentication_error"
        assert r.headers["www-authenticate"] == "Bearer"

    async def body(session):
        return await session.list_tools()

    with pytest.raises(BaseException) as info:  # noqa: PT011 - the SDK raises an exception group
        mcp_run(server, {}, body)
    assert "401" in _flatten(info.value)


def test_tool_calls_count_against_the_callers_rate_limit(server):
    async def body(session):
        results = [await session.call_tool("math_calc", {"expression": f"{i} + 1"}) for i in range(RPM + 1)]
        return [text_of(r) for r in results if r.isError]

    errors = mcp_run(server, "bob", body)
    assert errors and all("Rate limit reached" in e for e in errors)
    admin_errors = mcp_run(server, "alice", body)  # the admin is exempt, and bob's limit is bob's only
    assert admin_errors == []


def _flatten(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return " | ".join(_flatten(e) for e in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"
