"""End to end: /v1/responses on the real server + the real embedded model, through the official clients
(the OpenAI SDK, LangChain's ``ChatOpenAI(use_responses_api=True)``, the OpenAI Agents SDK).

Asserts what the design guarantees (shapes, the grammar-forced call, stored state, isolation), not wording.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import jsonschema
import openai
import pytest

from tests.api.test_responses_scripted import sse, validate_events
from tests.openai_schema import validate

pytestmark = pytest.mark.model

TOOLS = [{"type": "function", "name": "get_weather", "description": "Current weather for a city", "strict": True,
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                         "additionalProperties": False}}]


@pytest.fixture(scope="module")
def chat_model(live_server) -> str:
    return live_server.model() + ":chat"


def _headers(live_server, who: str = "bob") -> dict[str, str]:
    return {"Authorization": f"Bearer {live_server.tokens[who]}"}


def test_create_and_stream_validate(live_server, chat_model):
    body = {"model": chat_model, "input": "What is the capital of France?", "instructions": "Answer in one word.",
            "max_output_tokens": 12, "temperature": 0}
    r = httpx.post(live_server.v1 + "/responses", json=body, headers=_headers(live_server), timeout=300)
    assert r.status_code == 200, r.text
    validate(r.json(), "Response")
    assert r.json()["status"] in ("completed", "incomplete") and r.json()["output_text"]
    assert r.json()["usage"]["input_tokens"] > 5 and r.json()["usage"]["output_tokens"] >= 1
    with httpx.stream("POST", live_server.v1 + "/responses", json=body | {"stream": True},
                      headers=_headers(live_server), timeout=300) as s:
        assert s.status_code == 200
        events = sse(s.read().decode())
    validate_events(events)
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert deltas and deltas == events[-1]["response"]["output_text"]
    # the SDK's stream helper assembles the same events
    texts, final = [], None
    with live_server.openai("bob").responses.stream(model=chat_model, input="Say hi.", max_output_tokens=8) as stream:
        for ev in stream:
            if ev.type == "response.output_text.delta":
                texts.append(ev.delta)
            elif ev.type in ("response.completed", "response.incomplete"):  # 8 tokens may cut it short
                final = ev.response
    assert final is not None and "".join(texts) == final.output_text and final.id.startswith("resp_")


def test_previous_response_id_chain_retrieve_delete_and_isolation(live_server, chat_model):
    client = live_server.openai("bob")
    first = client.responses.create(model=chat_model, input="My name is Zorblax. Say hello.", max_output_tokens=16,
                                    temperature=0)
    second = client.responses.create(model=chat_model, input="What is my name?", previous_response_id=first.id,
                                     max_output_tokens=16, temperature=0)
    # the server replayed the first turn (question and answer) into the second prompt
    assert second.usage.input_tokens >= first.usage.input_tokens + first.usage.output_tokens
    assert second.previous_response_id == first.id
    items = client.responses.input_items.list(second.id)
    assert [i.content[0].text for i in items.data] == ["What is my name?"]
    assert client.responses.retrieve(second.id).output_text == second.output_text
    with pytest.raises(openai.NotFoundError):
        live_server.openai("alice").responses.retrieve(second.id)
    with pytest.raises(openai.NotFoundError):
        live_server.openai("alice").responses.create(model=chat_model, input="x", previous_response_id=first.id)
    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)
    # the chain still continues from the second response after the first was deleted
    third = client.responses.create(model=chat_model, input="Thanks.", previous_response_id=second.id,
                                    max_output_tokens=8)
    assert third.usage.input_tokens > second.usage.input_tokens


def test_forced_function_call_round_trip(live_server, chat_model):
    client = live_server.openai("bob")
    model = chat_model.rsplit(":", 1)[0]
    first = client.responses.create(model=model, input="How warm is it in Berlin?", tools=TOOLS,
                                    tool_choice={"type": "function", "name": "get_weather"}, max_output_tokens=60,
                                    temperature=0)
    calls = [o for o in first.output if o.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    args = json.loads(calls[0].arguments)  # grammar-constrained: always the tool's schema
    jsonschema.validate(args, TOOLS[0]["parameters"])
    second = client.responses.create(
        model=model, previous_response_id=first.id, tools=TOOLS, max_output_tokens=16, temperature=0,
        input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": "21 degrees, sunny"}])
    # the follow-up continues the chain: the model answers, or (tools are still offered) calls again
    assert second.status in ("completed", "incomplete") and second.previous_response_id == first.id
    assert second.output_text or any(o.type == "function_call" for o in second.output), second.output


def test_json_schema_text_format(live_server, chat_model):
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "population_millions": {"type": "number"}},
              "required": ["city", "population_millions"], "additionalProperties": False}
    r = live_server.openai("bob").responses.create(
        model=chat_model, input="Tokyo's population in millions, as JSON.", max_output_tokens=60, temperature=0,
        text={"format": {"type": "json_schema", "name": "city", "schema": schema, "strict": True}})
    jsonschema.validate(json.loads(r.output_text), schema)


def test_react_mode_steps_are_reasoning_items(live_server):
    model = live_server.model() + ":react"
    r = httpx.post(live_server.v1 + "/responses", headers=_headers(live_server), timeout=600,
                   json={"model": model, "input": "What is the derivative of x**3 * sin(x)?", "temperature": 0})
    assert r.status_code == 200, r.text
    body = r.json()
    validate(body, "Response")
    steps = [i["summary"][0]["text"] for i in body["output"] if i["type"] == "reasoning"]
    assert any("math_calc" in s and "cos" in s for s in steps), steps  # the tool ran; its result is in the step
    assert body["output"][-1]["type"] == "message" and body["output_text"]


def test_langchain_chat_openai_use_responses_api(live_server, chat_model):
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model=chat_model, base_url=live_server.v1, api_key=live_server.tokens["bob"],
                     use_responses_api=True, max_retries=0, max_tokens=16, temperature=0)
    reply = llm.invoke("Say hello.")
    assert reply.text
    model = chat_model.rsplit(":", 1)[0]
    tool = {"type": "function", "function": {"name": "get_weather", "description": "Current weather for a city",
                                             "parameters": TOOLS[0]["parameters"]}}
    bound = ChatOpenAI(model=model, base_url=live_server.v1, api_key=live_server.tokens["bob"],
                       use_responses_api=True, max_retries=0, max_tokens=60, temperature=0
                       ).bind_tools([tool], tool_choice="get_weather")
    msg = bound.invoke("How warm is it in Madrid?")
    assert [c["name"] for c in msg.tool_calls] == ["get_weather"]
    jsonschema.validate(msg.tool_calls[0]["args"], TOOLS[0]["parameters"])


def test_openai_agents_sdk_runs_our_function_tool(live_server):
    from agents import Agent, ModelSettings, Runner, function_tool, set_tracing_disabled
    from agents.models.openai_responses import OpenAIResponsesModel

    set_tracing_disabled(True)
    seen: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """Current weather for a city."""
        seen.append(city)
        return f"WEATHER-REPORT: 19C and clear in {city}"

    async def main():
        client = openai.AsyncOpenAI(base_url=live_server.v1, api_key=live_server.tokens["bob"], max_retries=0, timeout=300)
        agent = Agent(name="weather", instructions="Use the get_weather tool to answer.", tools=[get_weather],
                      model=OpenAIResponsesModel(model=live_server.model(), openai_client=client),
                      model_settings=ModelSettings(tool_choice="get_weather", max_tokens=60, temperature=0),
                      tool_use_behavior="stop_on_first_tool")
        return await Runner.run(agent, "What's the weather in Lisbon?")

    result = asyncio.run(main())
    assert len(seen) == 1 and seen[0]  # the SDK parsed our function_call item and ran the tool once
    assert result.final_output == f"WEATHER-REPORT: 19C and clear in {seen[0]}"  # the tool's exact result
