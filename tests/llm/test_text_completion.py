"""Raw text completions and fill-in-the-middle (``stream_text``) on each provider, and the
presence/frequency penalties reaching each runtime: the OpenAI provider against the fake
upstream, Ollama against the fixture server on the real model, the embedded model itself."""

from __future__ import annotations

import functools
from typing import Any

import pytest

from backend.errors import BadRequestError
from backend.llm.factory import create_provider
from backend.llm.types import GenerationParams, StreamEvent
from tests.fixtures.fake_openai_server import FIM_MIDDLE, FIXED_TEXT
from tests.llm.conftest import arun, text_of

PREFIX = 'def is_even(n: int) -> bool:\n    """Return True when n is even."""\n'
SUFFIX = "\n\nprint(is_even(4))\n"
PENALTIES = {"presence_penalty": 0.6, "frequency_penalty": 0.4}


async def text_events(provider: Any, prompt: str, suffix: str | None = None, **params: Any) -> list[StreamEvent]:
    return [ev async for ev in provider.stream_text(prompt, GenerationParams(**params), suffix=suffix)]


def openai_provider(settings_factory: Any, server: Any) -> Any:
    return create_provider(settings_factory(llm_provider="openai", openai_base_url=server.base_url,
                                            openai_api_key="sk-test-upstream", openai_model="fake-model"))


def ollama_provider(settings_factory: Any, host: str) -> Any:
    return create_provider(settings_factory(llm_provider="ollama", ollama_host=host, ollama_model="qwen2.5-coder:0.5b",
                                            ollama_num_ctx=2048, temperature=0.0))


# ----------------------------------------------------------------------------- OpenAI-compatible upstream
def test_openai_upstream_fim_and_plain_completion(settings_factory, fake_openai):
    provider = openai_provider(settings_factory, fake_openai)
    events = arun(text_events(provider, PREFIX, SUFFIX, max_tokens=32, temperature=0.0, **PENALTIES))
    assert text_of(events) == FIM_MIDDLE
    assert events[-1].finish_reason == "stop" and events[-1].usage.completion_tokens > 0
    sent = fake_openai.requests[-1]
    assert sent["prompt"] == PREFIX and sent["suffix"] == SUFFIX and sent["stream"] is True
    assert (sent["presence_penalty"], sent["frequency_penalty"], sent["max_tokens"]) == (0.6, 0.4, 32)
    plain = arun(text_events(provider, "Once upon a time", max_tokens=8))
    assert text_of(plain) == FIXED_TEXT and "suffix" not in fake_openai.requests[-1]


def test_openai_upstream_without_suffix_support_is_a_400(settings_factory, fake_openai):
    fake_openai.fault = "no_suffix"
    with pytest.raises(BadRequestError) as info:
        arun(text_events(openai_provider(settings_factory, fake_openai), PREFIX, SUFFIX))
    assert info.value.param == "suffix"


def test_openai_upstream_chat_gets_the_penalties(settings_factory, fake_openai):
    provider = openai_provider(settings_factory, fake_openai)
    arun(provider.complete([{"role": "user", "content": "hi"}], GenerationParams(**PENALTIES)))
    sent = fake_openai.requests[-1]
    assert (sent["presence_penalty"], sent["frequency_penalty"]) == (0.6, 0.4)


# ----------------------------------------------------------------------------- Ollama (fixture, real model)
@pytest.mark.model
def test_ollama_fim_goes_through_generate_with_suffix(settings_factory, ollama_fixture):
    provider = ollama_provider(settings_factory, ollama_fixture.host)
    events = arun(text_events(provider, PREFIX, SUFFIX, max_tokens=40, seed=1, **PENALTIES))
    sent = ollama_fixture.requests[-1]
    assert sent["prompt"] == PREFIX and sent["suffix"] == SUFFIX and not sent.get("raw")
    assert sent["options"]["presence_penalty"] == 0.6 and sent["options"]["frequency_penalty"] == 0.4
    assert sent["options"]["num_predict"] == 40
    final = events[-1]
    assert final.finish_reason in ("stop", "length") and final.usage.prompt_tokens > 10
    assert "<|fim" not in text_of(events)


@pytest.mark.model
def test_ollama_plain_completion_is_raw(settings_factory, ollama_fixture):
    provider = ollama_provider(settings_factory, ollama_fixture.host)
    events = arun(text_events(provider, "1, 2, 3, 4,", max_tokens=12, seed=1))
    assert ollama_fixture.requests[-1]["raw"] is True
    assert text_of(events).strip() and events[-1].usage.completion_tokens > 0


@pytest.mark.model
def test_ollama_chat_gets_the_penalties(settings_factory, ollama_fixture):
    provider = ollama_provider(settings_factory, ollama_fixture.host)
    arun(provider.complete([{"role": "user", "content": "hi"}], GenerationParams(max_tokens=4, **PENALTIES)))
    options = ollama_fixture.requests[-1]["options"]
    assert (options["presence_penalty"], options["frequency_penalty"]) == (0.6, 0.4)


# ----------------------------------------------------------------------------- embedded llama.cpp
@pytest.fixture
def spied(qwen: Any):
    """Record the keyword arguments of every real ``create_completion`` call (still run for real)."""
    llama = qwen._llama
    original = llama.create_completion
    seen: list[dict[str, Any]] = []

    @functools.wraps(original)
    def spy(*args: Any, **kw: Any) -> Any:
        seen.append(kw)
        return original(*args, **kw)

    llama.create_completion = spy
    try:
        yield seen
    finally:
        llama.create_completion = original


@pytest.mark.model
def test_embedded_fim_prompt_uses_the_models_fim_tokens(qwen):
    tokens = qwen.render_text_prompt("a = ", "\nprint(a)\n")
    pre, suf, mid = qwen.fim_tokens()
    assert tokens[0] == pre and tokens[-1] == mid and suf in tokens
    assert qwen._llama.detokenize(tokens[1 : tokens.index(suf)]) == b"a = "


@pytest.mark.model
def test_embedded_fim_completes_the_middle(qwen, spied):
    events = arun(text_events(qwen, PREFIX, SUFFIX, max_tokens=48, temperature=0.0, **PENALTIES))
    middle = text_of(events)
    assert "<|" not in middle  # no special token leaks into the text
    assert events[-1].usage.prompt_tokens == len(qwen.render_text_prompt(PREFIX, SUFFIX))
    assert spied[-1]["presence_penalty"] == 0.6 and spied[-1]["frequency_penalty"] == 0.4


@pytest.mark.model
def test_embedded_chat_gets_the_penalties(qwen, spied):
    arun(qwen.complete([{"role": "user", "content": "hi"}], GenerationParams(max_tokens=4, **PENALTIES)))
    assert (spied[-1]["presence_penalty"], spied[-1]["frequency_penalty"]) == (0.6, 0.4)


@pytest.mark.model
def test_embedded_plain_completion_and_stop(qwen):
    events = arun(text_events(qwen, "1, 2, 3, 4, 5,", max_tokens=30, temperature=0.0, stop=[" 9"]))
    assert " 9" not in text_of(events)
    assert events[-1].finish_reason == "stop" and events[-1].usage.completion_tokens >= 0
