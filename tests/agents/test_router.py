"""The router: keyword decisions on a table of requests, the LLM fallback, model-id modes."""

from __future__ import annotations

import asyncio
import json

import pytest

from backend.agents.router import (
    MODES,
    RouteDecision,
    decide,
    determine_task_type,
    heuristic_route,
    model_ids,
    parse_model_id,
    route,
)
from backend.errors import NotFoundError
from tests.agents.conftest import ScriptedLLM

TABLE = [
    # plain chat: knowledge, writing, coding help, small talk
    ("Hello! How are you today?", "chat"),
    ("Write a haiku about autumn leaves.", "chat"),
    ("Explain the difference between a list and a tuple in Python.", "chat"),
    ("Write a python function that reverses a string.", "chat"),
    ("Translate 'good night' into Spanish.", "chat"),
    ("What does polymorphism mean in object-oriented programming?", "chat"),
    ("Refactor this class to use dataclasses: class A: def __init__(self, x): self.x = x", "chat"),
    ("Tell me a joke about database administrators", "chat"),
    ("Thanks, that was helpful!", "chat"),
    ("How does a hash map work?", "chat"),
    # one tool: ReAct
    ("What is the derivative of x**3 * sin(x)?", "react"),
    ("Calculate 1234 * 5678", "react"),
    ("What is 17% of 2300?", "react"),
    ("Solve x**2 - 5*x + 6 = 0", "react"),
    ("Integrate 2*x from 0 to 3", "react"),
    ("Search the web for the latest Python release notes", "react"),
    ("What's the weather in Berlin?", "react"),
    ("Look up Ada Lovelace on Wikipedia", "react"),
    ("Summarize my uploaded documents about the contract", "react"),
    ("What do my documents say about the refund policy?", "react"),
    ("Run a SQL query to count the orders in the database", "react"),
    ("Run this python code: print(sum(range(10)))", "react"),
    ("Compute the standard deviation of 3, 5, 7, 9", "react"),
    # dependent steps: ReAct
    ("Look up the population of Tokyo, then calculate 2% of it", "react"),
    ("Search for the boiling point of ethanol and then convert it to Fahrenheit step by step", "react"),
    ("Check the weather in Oslo and if it is raining search for indoor museums", "react"),
    ("First find the GDP of France on Wikipedia, after that compute its square root", "react"),
    # independent parts: plan-and-execute
    ("Compare the weather in Paris and London", "plan_execute"),
    ("Get the weather in Rome and also search for the latest news about Italy", "plan_execute"),
    ("Give me a complete analysis of the sales dataset", "plan_execute"),
    ("Look up both Marie Curie and Albert Einstein on Wikipedia", "plan_execute"),
    ("What's the forecast in Tokyo and calculate 15 * 23", "plan_execute"),
    ("Search my uploaded documents for the deadline and query the database for open tickets", "plan_execute"),
]


@pytest.mark.parametrize(("query", "expected"), TABLE)
def test_route_table(query, expected):
    decision = asyncio.run(route(query, provider=None))
    assert decision.mode == expected, decision.reason
    assert decision.source == "heuristic" and decision.reason
    assert determine_task_type(query) == ("chat" if expected == "chat" else "agentic")


def test_table_is_big_enough_and_covers_every_mode():
    assert len(TABLE) >= 30
    assert {m for _, m in TABLE} == {"chat", "react", "plan_execute"}


def test_unsure_query_asks_the_model_with_a_json_schema():
    query = "Who won the most recent Tour de France?"
    decision, sure = heuristic_route(query)
    assert not sure and decision.mode == "chat"
    llm = ScriptedLLM([json.dumps({"mode": "react", "reason": "needs current facts"})])
    out = asyncio.run(route(query, provider=llm))
    assert out == RouteDecision("react", "model classification: needs current facts", "llm")
    schema = llm.calls[0]["constraint"].schema
    assert schema["properties"]["mode"]["enum"] == ["chat", "react", "plan_execute"]


def test_sure_query_does_not_call_the_model():
    llm = ScriptedLLM([])
    assert asyncio.run(route("What is the derivative of x**2?", provider=llm)).source == "heuristic"
    assert llm.calls == []


def test_llm_off_or_failing_keeps_the_heuristic():
    query = "Who won the most recent Tour de France?"
    assert asyncio.run(route(query, provider=ScriptedLLM([]), use_llm=False)).source == "heuristic"
    broken = ScriptedLLM(["not json at all"])
    assert asyncio.run(route(query, provider=broken)).source == "heuristic"


def test_parse_model_id():
    bases = ["qwen2.5-coder-0.5b-instruct", "qwen2.5-coder:0.5b"]
    assert parse_model_id("qwen2.5-coder-0.5b-instruct", bases) == ("qwen2.5-coder-0.5b-instruct", "auto")
    assert parse_model_id("qwen2.5-coder-0.5b-instruct:react", bases) == ("qwen2.5-coder-0.5b-instruct", "react")
    assert parse_model_id("qwen2.5-coder-0.5b-instruct:plan-execute", bases)[1] == "plan_execute"
    assert parse_model_id("qwen2.5-coder-0.5b-instruct:chat", bases)[1] == "chat"
    # an Ollama id with its own colon
    assert parse_model_id("qwen2.5-coder:0.5b", bases) == ("qwen2.5-coder:0.5b", "auto")
    assert parse_model_id("qwen2.5-coder:0.5b:plan-execute", bases) == ("qwen2.5-coder:0.5b", "plan_execute")
    for bad in ("gpt-4", "qwen2.5-coder-0.5b-instruct:turbo", "qwen2.5-coder:7b"):
        with pytest.raises(NotFoundError) as err:
            parse_model_id(bad, bases)
        assert err.value.code == "model_not_found" and err.value.param == "model"


def test_model_ids_and_decide_override():
    assert MODES == ["auto", "chat", "react", "plan-execute"]
    assert model_ids(["m"]) == ["m", "m:chat", "m:react", "m:plan-execute"]
    forced = asyncio.run(decide("Hello", "plan_execute"))
    assert forced.mode == "plan_execute" and forced.source == "override"
    assert asyncio.run(decide("Hello", "auto")).mode == "chat"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("What is the derivative of x**3 * sin(x)?", {"math_calc", "python_code"}),
        ("Look up Celtuce on Wikipedia", {"wikipedia"}),
        ("Search the web and Wikipedia for Celtuce", {"web_search", "wikipedia"}),
        ("What's the weather in Paris and 15 * 23?", {"weather", "math_calc", "python_code"}),
        ("What do my uploaded documents say about refunds?", {"rag_retrieval"}),
        ("Tell me something interesting", None),  # no signal: every tool
    ],
)
def test_relevant_tools(query, expected):
    from backend.agents.tools import relevant_tools
    from backend.tools.registry import all_tools

    tools = all_tools()
    chosen = set(relevant_tools(query, tools))
    assert chosen == (expected if expected is not None else set(tools))
