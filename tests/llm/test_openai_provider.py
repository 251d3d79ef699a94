"""The OpenAI-compatible provider against a local fake upstream (real SDK, real HTTP/SSE)."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import pytest

from backend.errors import (
    BadRequestError,
    ContextLengthExceededError,
    ServiceUnavailableError,
    UpstreamError,
    UpstreamTimeoutError,
)
from backend.llm.factory import create_provider
from backend.llm.openai_provider import OpenAIProvider
from backend.llm.types import GenerationParams
from tests.fixtures.fake_openai_server import FIXED_TEXT
from tests.llm.conftest import arun, collect, text_of

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
HI = [{"role": "user", "content": "Say hello."}]


def make(settings_factory: Any, server: Any, **kw: Any) -> OpenAIProvider:
    provider = create_provider(
        settings_factory(
            llm_provider="openai",
            openai_base_url=server.base_url if server else "http://127.0.0.1:9/v1",
            openai_api_key="sk-test-upstream",
            openai_model="fake-model",
            **kw,
        )
    )
    assert isinstance(provider, OpenAIProvider)
    return provider


def test_stream_yields_text_then_one_final_event_with_usage(settings_factory, fake_openai):
    provider = make(settings_factory, fake_openai)
    events = arun(collect(provider, HI, max_tokens=50, temperature=0.1))
    assert text_of(events) == FIXED_TEXT
    assert len([e for e in events if e.content]) > 1  # really streamed
    finals = [e for e in events if e.finish_reason]
    assert len(finals) == 1 and finals[0] is events[-1]
    assert finals[0].finish_reason == "stop"
    assert finals[0].usage.completion_tokens > 0 and finals[0].usage.prompt_tokens > 0
    sent = fake_openai.requests[-1]
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert sent["max_tokens"] == 50 and sent["temperature"] == 0.1


def test_complete_with_forced_tool_assembles_streamed_call(settings_factory, fake_openai):
    provider = make(settings_factory, fake_openai)
    params = GenerationParams(tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "get_weather"}})
    result = arun(provider.complete([{"role": "user", "content": "weather?"}], params))
    assert result.finish_reason == "tool_calls"
    assert len(result.tool_calls) == 1
    call = result.tool_calls[0]
    assert call.name == "get_weather" and call.id == "call_fake0001"
    assert json.loads(call.arguments) == {"city": "test"}  # joined from two fragments
    assert fake_openai.requests[-1]["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}


def test_tool_choice_none_sends_no_tools(settings_factory, fake_openai):
    provider = make(settings_factory, fake_openai)
    result = arun(provider.complete(
        [{"role": "user", "content": "get_weather please"}], GenerationParams(tools=[WEATHER], tool_choice="none")
    ))
    assert result.tool_calls == [] and result.content == FIXED_TEXT
    assert "tools" not in fake_openai.requests[-1]


def test_json_schema_response_format_is_forwarded(settings_factory, fake_openai):
    provider = make(settings_factory, fake_openai)
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": {
        "type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}}}
    result = arun(provider.complete(HI, GenerationParams(response_format=fmt)))
    assert json.loads(result.content) == {"n": 1}
    assert fake_openai.requests[-1]["response_format"] == fmt


def test_length_finish_reason(settings_factory, fake_openai):
    provider = make(settings_factory, fake_openai)
    result = arun(provider.complete(HI, GenerationParams(max_tokens=2)))
    assert result.finish_reason == "length"


def test_closed_port_is_service_unavailable_fast(settings_factory):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    provider = create_provider(settings_factory(
        llm_provider="openai", openai_base_url=f"http://127.0.0.1:{port}/v1", openai_model="m"))
    t0 = time.monotonic()
    with pytest.raises(ServiceUnavailableError) as err:
        arun(collect(provider, HI))
    assert time.monotonic() - t0 < 3
    assert err.value.headers["Retry-After"]


@pytest.mark.parametrize(
    ("fault", "error", "fragment"),
    [
        ("500", UpstreamError, "HTTP 500"),
        ("429", ServiceUnavailableError, "rate limiting"),
        ("401", UpstreamError, "credentials"),
        ("400", ContextLengthExceededError, "maximum context length"),
        ("404", UpstreamError, "fake-model"),
        ("garbage", UpstreamError, "malformed"),
        ("truncate", UpstreamError, "without finishing"),
        ("drop", UpstreamError, "broke the connection"),
    ],
)
def test_upstream_failures_map_to_clear_errors(settings_factory, fake_openai, fault, error, fragment):
    provider = make(settings_factory, fake_openai)
    fake_openai.fault = fault
    with pytest.raises(error) as err:
        arun(collect(provider, HI))
    assert fragment in err.value.message
    if fault == "429":
        assert err.value.headers["Retry-After"] == "7"
    assert "sk-test-upstream" not in err.value.message


def test_bad_request_keeps_upstream_message(settings_factory, fake_openai):
    provider = make(settings_factory, fake_openai)
    fake_openai.fault = "400"
    with pytest.raises(BadRequestError):
        arun(collect(provider, HI))


def test_stalled_stream_times_out(settings_factory, fake_openai):
    provider = make(settings_factory, fake_openai, openai_timeout_s=0.5)
    fake_openai.fault, fake_openai.delay_s = "stall", 3
    with pytest.raises(UpstreamTimeoutError):
        arun(collect(provider, HI))


def test_health_reports_model_without_secrets(settings_factory, fake_openai):
    provider = make(settings_factory, fake_openai)
    info = arun(provider.health())
    assert info["ok"] is True and info["model"] == "fake-model" and info["provider"] == "openai"
    assert "sk-test" not in json.dumps(info)
    down = create_provider(settings_factory(llm_provider="openai", openai_base_url="http://127.0.0.1:9/v1"))
    bad = arun(down.health())
    assert bad["ok"] is False and "not reachable" in bad["error"]


@pytest.mark.parametrize(
    ("fault", "error", "fragment"),
    [
        ("500", UpstreamError, "HTTP 500"),
        ("429", ServiceUnavailableError, "rate limiting"),
        ("401", UpstreamError, "credentials"),
        ("400", ContextLengthExceededError, "maximum context length"),
        ("404", UpstreamError, "fake-model"),
        ("garbage", UpstreamError, "malformed"),
        ("truncate", UpstreamError, "malformed"),
        ("drop", UpstreamError, "broke the connection"),
    ],
)
def test_non_stream_failures_map_like_the_stream(settings_factory, fake_openai, fault, error, fragment):
    """The plain-HTTP non-stream path maps every upstream failure as the streamed one does."""
    provider = make(settings_factory, fake_openai)
    fake_openai.fault = fault
    with pytest.raises(error) as err:
        arun(provider.complete(HI, GenerationParams()))
    assert fragment in err.value.message
    if fault == "429":
        assert err.value.headers["Retry-After"] == "7"
    assert "sk-test-upstream" not in err.value.message
    assert fake_openai.requests[-1].get("stream") is None  # really the non-stream request


def test_non_stream_sends_the_key_and_reads_usage(settings_factory):
    from tests.fixtures.fake_openai_server import FakeOpenAIServer

    with FakeOpenAIServer(api_key="sk-test-upstream") as srv:
        provider = make(settings_factory, srv)
        result = arun(provider.complete(HI, GenerationParams(max_tokens=50)))
        assert result.content == FIXED_TEXT and result.finish_reason == "stop"
        assert result.usage.prompt_tokens > 0 and result.usage.completion_tokens == len(FIXED_TEXT.split())
        wrong = create_provider(settings_factory(llm_provider="openai", openai_base_url=srv.base_url,
                                                 openai_api_key="sk-wrong", openai_model="fake-model"))
        with pytest.raises(UpstreamError, match="credentials"):
            arun(wrong.complete(HI, GenerationParams()))
