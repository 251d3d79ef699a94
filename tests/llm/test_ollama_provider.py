"""The Ollama provider (official ``ollama`` client) against the Ollama-API fixture server,
which runs the real 0.5B model; fault modes cover the transport failures.

Assertions are on what the provider guarantees (what it sends, finish reasons, parsed calls, streaming
shape); where a known text is needed, a ``const`` in the JSON schema forces it.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import jsonschema
import pytest

from backend.errors import ServiceUnavailableError, UpstreamError, UpstreamTimeoutError
from backend.llm.factory import create_provider
from backend.llm.ollama_provider import OllamaProvider, to_ollama_messages
from backend.llm.types import GenerationParams
from tests.llm.conftest import arun, collect, text_of

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
HI = [{"role": "user", "content": "Count from 1 to 10, separated by spaces."}]
COUNT = "1 2 3 4 5 6 7 8 9 10"
COUNT_SCHEMA = {"type": "object", "properties": {"count": {"const": COUNT}}, "required": ["count"],
                "additionalProperties": False}
FORCED = {"type": "json_schema", "json_schema": {"name": "count", "schema": COUNT_SCHEMA}}


def make(settings_factory: Any, host: str, **kw: Any) -> OllamaProvider:
    values = {"llm_provider": "ollama", "ollama_host": host, "ollama_model": "qwen2.5-coder:0.5b",
              "ollama_num_ctx": 2048, "temperature": 0.0}
    values.update(kw)
    provider = create_provider(settings_factory(**values))
    assert isinstance(provider, OllamaProvider)
    return provider


def test_messages_are_shaped_for_ollama():
    msgs = to_ollama_messages([
        {"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ])
    assert msgs[0] == {"role": "system", "content": "Be brief."}
    assert msgs[1]["tool_calls"] == [{"function": {"name": "get_weather", "arguments": {"city": "Rome"}}}]
    assert msgs[2] == {"role": "tool", "content": "sunny", "tool_name": "get_weather"}


@pytest.mark.model
def test_stream_through_real_http(settings_factory, ollama_fixture):
    provider = make(settings_factory, ollama_fixture.host)
    events = arun(collect(provider, HI, max_tokens=60, seed=1, response_format=FORCED))
    assert len([e for e in events if e.content]) >= 5  # streamed in pieces
    assert json.loads(text_of(events)) == {"count": COUNT}
    final = events[-1]
    assert final.finish_reason == "stop" and final.usage.prompt_tokens > 10 and final.usage.completion_tokens > 5
    sent = ollama_fixture.requests[-1]
    assert sent["options"]["num_ctx"] == 2048 and sent["options"]["num_predict"] == 60
    assert sent["options"]["seed"] == 1 and sent["keep_alive"] == "10m"


@pytest.mark.model
def test_length_and_stop(settings_factory, ollama_fixture):
    provider = make(settings_factory, ollama_fixture.host)
    result = arun(provider.complete(HI, GenerationParams(max_tokens=3, response_format=FORCED)))  # ~15 tokens forced
    assert result.finish_reason == "length"
    result = arun(provider.complete(HI, GenerationParams(max_tokens=60, stop=["5"], response_format=FORCED)))
    assert (result.content or "").rstrip().endswith("1 2 3 4") and "5" not in (result.content or "")
    assert result.finish_reason == "stop"
    assert ollama_fixture.requests[-1]["options"]["stop"] == ["5"]


@pytest.mark.model
def test_json_schema_goes_out_as_format(settings_factory, ollama_fixture):
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
              "required": ["city", "country"]}
    provider = make(settings_factory, ollama_fixture.host)
    fmt = {"type": "json_schema", "json_schema": {"name": "place", "schema": schema}}
    result = arun(provider.complete([{"role": "user", "content": "Where is the Eiffel tower?"}],
                                    GenerationParams(response_format=fmt, max_tokens=60)))
    jsonschema.validate(json.loads(result.content or ""), schema)
    assert ollama_fixture.requests[-1]["format"] == schema


@pytest.mark.model
def test_forced_tool_uses_format_and_returns_a_call(settings_factory, ollama_fixture):
    provider = make(settings_factory, ollama_fixture.host)
    params = GenerationParams(tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "get_weather"}},
                              max_tokens=60)
    result = arun(provider.complete([{"role": "user", "content": "Weather in Madrid?"}], params))
    (call,) = result.tool_calls
    assert call.name == "get_weather" and result.finish_reason == "tool_calls"
    jsonschema.validate(json.loads(call.arguments), WEATHER["function"]["parameters"])
    sent = ollama_fixture.requests[-1]
    assert sent["format"]["properties"]["name"] == {"const": "get_weather"}
    assert not sent.get("tools")  # the call is the constrained JSON itself


@pytest.mark.model
def test_auto_tools_come_back_as_native_tool_calls(settings_factory, ollama_fixture):
    provider = make(settings_factory, ollama_fixture.host)
    msgs = [{"role": "user", "content": "Use the get_weather tool to look up the weather in Berlin."}]
    result = arun(provider.complete(msgs, GenerationParams(tools=[WEATHER], max_tokens=60)))
    assert ollama_fixture.requests[-1]["tools"][0]["function"]["name"] == "get_weather"
    # the model may call or answer; a call comes back as a parsed tool call, never as text
    if result.finish_reason == "tool_calls":
        assert result.tool_calls and all(c.name == "get_weather" for c in result.tool_calls)
        for call in result.tool_calls:
            jsonschema.validate(json.loads(call.arguments), WEATHER["function"]["parameters"])
    else:
        assert result.tool_calls == [] and result.finish_reason in ("stop", "length")


@pytest.mark.model
def test_health_and_embeddings(settings_factory, ollama_fixture):
    provider = make(settings_factory, ollama_fixture.host, embedding_model="qwen2.5-coder:0.5b")

    async def both() -> tuple[dict[str, Any], list[list[float]]]:
        info = await provider.health()
        vectors = await provider.embed(["a cat sat on the mat", "a kitten sat on the rug", "stock market crash"])
        await provider.aclose()
        return info, vectors

    info, vectors = arun(both())
    assert info["ok"] is True and info["provider"] == "ollama" and "tools" in info["capabilities"]
    assert len(vectors) == 3 and len(vectors[0]) > 100

    def cos(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cos(vectors[0], vectors[1]) > cos(vectors[0], vectors[2])
    missing = make(settings_factory, ollama_fixture.host, ollama_model="llama9:70b")

    async def check_missing() -> dict[str, Any]:
        try:
            return await missing.health()
        finally:
            await missing.aclose()

    bad = arun(check_missing())
    assert bad["ok"] is False and "ollama pull llama9:70b" in bad["error"]


def test_closed_port_is_service_unavailable_fast(settings_factory):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    provider = make(settings_factory, f"http://127.0.0.1:{port}")
    t0 = time.monotonic()
    with pytest.raises(ServiceUnavailableError) as err:
        arun(collect(provider, HI))
    assert time.monotonic() - t0 < 2
    assert "not reachable" in err.value.message and err.value.headers["Retry-After"]


@pytest.mark.model
def test_missing_model_names_the_pull_command(settings_factory, ollama_fixture):
    provider = make(settings_factory, ollama_fixture.host, ollama_model="llama9:70b")
    with pytest.raises(UpstreamError) as err:
        arun(collect(provider, HI))
    assert "ollama pull llama9:70b" in err.value.message and err.value.code == "model_not_found"


@pytest.mark.model
@pytest.mark.parametrize(
    ("fault", "error", "fragment"),
    [
        ("500", UpstreamError, "llama runner process has terminated"),
        ("503", ServiceUnavailableError, "busy"),
        ("garbage", UpstreamError, "malformed"),
        ("truncate", UpstreamError, "ended the stream"),
        ("drop", UpstreamError, "broke the connection"),
    ],
)
def test_faults_map_to_clear_errors(settings_factory, ollama_fixture, fault, error, fragment):
    provider = make(settings_factory, ollama_fixture.host)
    ollama_fixture.fault = fault
    with pytest.raises(error) as err:
        arun(collect(provider, HI, max_tokens=20))
    assert fragment in err.value.message


@pytest.mark.model
def test_stalled_stream_times_out(settings_factory, ollama_fixture):
    provider = make(settings_factory, ollama_fixture.host, ollama_timeout_s=0.5)
    ollama_fixture.fault, ollama_fixture.delay_s = "stall", 2.0
    t0 = time.monotonic()
    with pytest.raises(UpstreamTimeoutError):
        arun(collect(provider, HI, max_tokens=20))
    assert time.monotonic() - t0 < 10
