"""Through the whole app: an attached MCP server (FastMCP over stdio), started in the lifespan, gives
a ReAct run (driven by the scripted model) a tool whose result comes back as the observation."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.conftest import login
from tests.fakes import ScriptedProvider
from tests.mcp.conftest import stdio_config


def tool_call(name: str, **arguments) -> str:  # noqa: ANN003
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}) + "\n</tool_call>"


@pytest.fixture
def app_client(mcp_settings) -> Iterator[tuple]:
    from fastapi.testclient import TestClient

    from backend.app import create_app

    provider = ScriptedProvider()
    settings = mcp_settings(stdio_config(tools=["add", "explode"]))
    app = create_app(settings, provider=provider)
    with TestClient(app, raise_server_exceptions=False) as client:
        app.state.services.users.create("carol", "correct horse battery", "user")
        token = login(client, "carol")
        yield client, provider, {"Authorization": f"Bearer {token}"}


def ask(client, headers, text: str) -> dict:  # noqa: ANN001
    r = client.post("/v1/chat/completions", headers=headers,
                    json={"model": "scripted-model:react", "messages": [{"role": "user", "content": text}]})
    assert r.status_code == 200, r.text
    return r.json()


def test_react_run_calls_the_mcp_tool_and_reads_its_result(app_client):
    client, provider, headers = app_client
    provider.outputs = [tool_call("mcp_fx_add", a=19, b=23), "The fixture adder says 42."]
    body = ask(client, headers, "Use the fixture adder on 19 and 23.")
    steps = body["agent"]["steps"]
    assert [(s["tool"], s["ok"], s["observation"]) for s in steps] == [("mcp_fx_add", True, "42")]
    assert body["choices"][0]["message"]["content"] == "The fixture adder says 42."
    # the model was offered the MCP tool with its schema, and read the result as the tool message
    offered = {t["function"]["name"]: t["function"] for t in provider.calls[0]["params"].tools}
    assert set(offered["mcp_fx_add"]["parameters"]["required"]) == {"a", "b"}
    assert "mcp_fx_explode" in offered and "mcp_fx_echo" not in offered  # the allow-list
    tool_message = provider.calls[1]["messages"][-1]
    assert tool_message["role"] == "tool" and tool_message["content"].startswith("42")


def test_a_failing_mcp_tool_is_an_error_observation_and_the_run_goes_on(app_client):
    client, provider, headers = app_client
    provider.outputs = [tool_call("mcp_fx_explode", reason="disk on fire"), tool_call("mcp_fx_add", a=1, b=2),
                        "After one failure the adder gave 3."]
    body = ask(client, headers, "Try the exploding fixture tool, then add 1 and 2.")
    steps = body["agent"]["steps"]
    assert [(s["tool"], s["ok"]) for s in steps] == [("mcp_fx_explode", False), ("mcp_fx_add", True)]
    assert "fixture failure: disk on fire" in steps[0]["observation"]
    tool_messages = [m["content"] for m in provider.calls[-1]["messages"] if m["role"] == "tool"]
    assert "fixture failure: disk on fire" in tool_messages[0] and tool_messages[1].startswith("3")
    assert body["choices"][0]["message"]["content"] == "After one failure the adder gave 3."


def test_health_lists_the_attached_server(app_client):
    client, _, _ = app_client
    tools = client.get("/health/detailed").json()["tools"]
    assert "mcp_fx_add" in tools["available"]
    assert tools["mcp_servers"] == [{"name": "fx", "transport": "stdio", "status": "connected",
                                     "tools": ["mcp_fx_add", "mcp_fx_explode"]}]


def test_plan_and_execute_plans_with_the_mcp_tool(app_client):
    client, provider, headers = app_client
    plan = {"steps": [{"task": "add the numbers with the fixture adder", "tool": "mcp_fx_add",
                       "arguments": {"a": 19, "b": 23}}]}
    provider.outputs = [json.dumps(plan), "The fixture adder gives 42.", json.dumps({"correct": True, "problem": ""})]
    r = client.post("/v1/chat/completions", headers=headers,
                    json={"model": "scripted-model:plan-execute",
                          "messages": [{"role": "user", "content": "Add 19 and 23 with the fixture adder."}]})
    assert r.status_code == 200, r.text
    body = r.json()
    tool_steps = [s for s in body["agent"]["steps"] if s.get("tool")]
    assert [(s["tool"], s["ok"], s["observation"]) for s in tool_steps] == [("mcp_fx_add", True, "42")]
    # the planner's JSON schema names the MCP tool among the tools it may choose
    variants = provider.calls[0]["constraint"].schema["properties"]["steps"]["items"]["anyOf"]
    assert "mcp_fx_add" in {v["properties"]["tool"]["const"] for v in variants}
    assert body["choices"][0]["message"]["content"] == "The fixture adder gives 42."
