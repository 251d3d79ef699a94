"""Attached MCP servers (the real FastMCP fixture server over stdio and streamable HTTP): their tools
join the registry with their schemas, calls go through the tool error path, a down server only
removes its own tools and comes back."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from backend.agents.tools import relevant_tools, select_tools
from backend.mcp.client import McpManager
from backend.tools.base import ToolContext
from tests.mcp.conftest import stdio_config

TRANSPORTS = ["stdio", "http"]


def config_for(transport: str, request: pytest.FixtureRequest, **extra: Any) -> dict[str, Any]:
    if transport == "stdio":
        return stdio_config(**extra)
    return request.getfixturevalue("http_server").config(name="fx", **extra)


async def with_manager(settings, body):  # noqa: ANN001
    manager = McpManager(settings)
    await manager.start()
    try:
        return await body(manager)
    finally:
        await manager.aclose()


async def wait_for(predicate, timeout_s: float = 20.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_tools_are_listed_with_their_schemas(transport, request, mcp_settings):
    settings = mcp_settings(config_for(transport, request))

    async def body(manager):
        tools = manager.tools()
        assert set(tools) == {"mcp_fx_add", "mcp_fx_echo", "mcp_fx_explode", "mcp_fx_sleepy", "mcp_fx_big", "mcp_fx_crash",
                              "mcp_fx_grow"}
        add = tools["mcp_fx_add"]
        assert add.parameters["type"] == "object"
        assert set(add.parameters["required"]) == {"a", "b"}
        assert add.parameters["properties"]["a"]["type"] == "number"
        assert "Add two numbers" in add.description and "MCP server 'fx'" in add.description
        echo = tools["mcp_fx_echo"].openai_spec()["function"]
        assert echo["parameters"]["properties"]["times"]["default"] == 1 and echo["parameters"]["required"] == ["text"]
        assert manager.describe() == [{"name": "fx", "transport": transport, "status": "connected", "tools": list(tools)}]

    asyncio.run(with_manager(settings, body))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_calls_results_errors_and_timeouts(transport, request, mcp_settings):
    settings = mcp_settings(config_for(transport, request, call_timeout_s=1.0), mcp_max_result_chars=100)
    ctx = ToolContext(user_id="u1", settings=settings)

    async def body(manager):
        tools = manager.tools()
        ok = await tools["mcp_fx_add"].run(ctx, {"a": 2, "b": 3.5})
        assert ok.ok and ok.output == "5.5"
        echoed = await tools["mcp_fx_echo"].run(ctx, '{"text": "hi", "times": 3}')
        assert echoed.ok and echoed.output == "hi hi hi"
        # the server's tool raises: an error observation with its message
        failed = await tools["mcp_fx_explode"].run(ctx, {"reason": "boom"})
        assert not failed.ok and failed.output.startswith("Error:") and "fixture failure: boom" in failed.output
        # arguments are checked against the server's schema before anything is sent
        bad = await tools["mcp_fx_add"].run(ctx, {"a": 2})
        assert not bad.ok and "'b' is a required property" in bad.output
        wrong_type = await tools["mcp_fx_add"].run(ctx, {"a": "two", "b": 1})
        assert not wrong_type.ok and "'a'" in wrong_type.output
        # past the call timeout: a timeout observation, and the session still works afterwards
        slow = await tools["mcp_fx_sleepy"].run(ctx, {"seconds": 5})
        assert not slow.ok and "timed out after 1s" in slow.output
        # a long result is cut to mcp_max_result_chars
        big = await tools["mcp_fx_big"].run(ctx, {"chars": 5000})
        assert big.ok and big.output.startswith("x" * 100) and "4900 more characters cut" in big.output
        again = await tools["mcp_fx_add"].run(ctx, {"a": 1, "b": 1})
        assert again.ok and again.output == "2"
        assert manager.connections[0].status == "connected"

    asyncio.run(with_manager(settings, body))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_allow_list_filters_tools(transport, request, mcp_settings):
    settings = mcp_settings(config_for(transport, request, tools=["add", "echo", "not_there"]))

    async def body(manager):
        assert set(manager.tools()) == {"mcp_fx_add", "mcp_fx_echo"}

    asyncio.run(with_manager(settings, body))


def test_loopback_url_is_refused_without_the_per_server_flag(http_server, mcp_settings):
    settings = mcp_settings(http_server.config(name="web", allow_private_network=False))

    async def body(manager):
        conn = manager.connections[0]
        assert manager.tools() == {} and conn.status == "down"
        assert "loopback" in (conn.last_error or "")

    asyncio.run(with_manager(settings, body))


def test_a_down_server_removes_only_its_tools_and_comes_back(http_server, mcp_settings, caplog):
    settings = mcp_settings(stdio_config(name="local"), http_server.config(name="web"))
    ctx = ToolContext(user_id="u1", settings=settings)

    async def body(manager):
        tools = manager.tools()
        assert {"mcp_local_add", "mcp_web_add"} <= set(tools)
        assert (await tools["mcp_web_add"].run(ctx, {"a": 1, "b": 2})).output == "3"

        await asyncio.to_thread(http_server.stop)
        # a call on the dead connection is an error observation, not an exception
        dead = await tools["mcp_web_add"].run(ctx, {"a": 1, "b": 2})
        assert not dead.ok and dead.output.startswith("Error:")
        await wait_for(lambda: not any(n.startswith("mcp_web_") for n in manager.tools()))
        remaining = manager.tools()
        assert {n for n in remaining if n.startswith("mcp_local_")} == {
            "mcp_local_add", "mcp_local_echo", "mcp_local_explode", "mcp_local_sleepy", "mcp_local_big",
            "mcp_local_crash", "mcp_local_grow"}
        assert (await remaining["mcp_local_add"].run(ctx, {"a": 2, "b": 2})).output == "4"
        assert any("'web'" in r.getMessage() and "tools are removed" in r.getMessage() for r in caplog.records)

        await asyncio.to_thread(http_server.start)  # same port: the supervisor reconnects on its own
        await wait_for(lambda: "mcp_web_add" in manager.tools())
        back = await manager.tools()["mcp_web_add"].run(ctx, {"a": 20, "b": 22})
        assert back.ok and back.output == "42"

    caplog.set_level("INFO", logger="backend.mcp.client")
    asyncio.run(with_manager(settings, body))


def test_a_server_down_at_start_up_has_no_tools_and_the_others_work(mcp_settings):
    from tests.conftest import free_port

    down = {"name": "gone", "transport": "http", "url": f"http://127.0.0.1:{free_port()}/mcp",
            "allow_private_network": True, "connect_timeout_s": 3}
    broken = {"name": "broken", "transport": "stdio", "command": "/nonexistent/mcp-server"}
    settings = mcp_settings(down, broken, stdio_config(name="ok"))

    async def body(manager):
        names = set(manager.tools())
        assert names and all(n.startswith("mcp_ok_") for n in names)
        status = {d["name"]: d["status"] for d in manager.describe()}
        assert status == {"gone": "down", "broken": "down", "ok": "connected"}

    asyncio.run(with_manager(settings, body))


def test_agents_are_offered_mcp_tools_beside_the_builtins(mcp_settings):
    settings = mcp_settings(stdio_config(tools=["add"]))

    async def body(manager):
        tools = select_tools(None, settings, manager)  # the app's MCP manager (Services.mcp)
        assert "math_calc" in tools and "mcp_fx_add" in tools
        # a question the router files under "math" still gets the MCP tool
        narrowed = relevant_tools("what is the integral of x**2", tools)
        assert "math_calc" in narrowed and "mcp_fx_add" in narrowed and "weather" not in narrowed
        assert "mcp_fx_add" not in select_tools(None, settings)  # without the MCP manager: built-ins only

    asyncio.run(with_manager(settings, body))


def test_a_stdio_server_that_dies_is_respawned(mcp_settings):
    settings = mcp_settings(stdio_config(name="local"), stdio_config(name="other", tools=["add"]))
    ctx = ToolContext(user_id="u1", settings=settings)

    async def body(manager):
        tools = manager.tools()
        crashed = await tools["mcp_local_crash"].run(ctx, {})
        assert not crashed.ok and crashed.output.startswith("Error:")  # an observation, not an exception
        await wait_for(lambda: "mcp_local_add" not in manager.tools())
        assert "mcp_other_add" in manager.tools()  # the other server is untouched
        await wait_for(lambda: "mcp_local_add" in manager.tools())  # a new process was spawned
        again = await manager.tools()["mcp_local_add"].run(ctx, {"a": 1, "b": 41})
        assert again.ok and again.output == "42"
        assert manager.connections[0].attempts >= 2

    asyncio.run(with_manager(settings, body))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_tool_list_change_is_picked_up(transport, request, mcp_settings):
    settings = mcp_settings(config_for(transport, request, tools=["grow", "late"]), mcp_ping_interval_s=30)
    ctx = ToolContext(user_id="u1", settings=settings)

    async def body(manager):
        assert set(manager.tools()) == {"mcp_fx_grow"}
        assert (await manager.tools()["mcp_fx_grow"].run(ctx, {})).output == "grew"
        await wait_for(lambda: "mcp_fx_late" in manager.tools(), timeout_s=10)  # long before the next ping
        late = await manager.tools()["mcp_fx_late"].run(ctx, {"word": "hello"})
        assert late.ok and late.output == "HELLO"

    asyncio.run(with_manager(settings, body))
