"""The embedded provider keeps the KV state of stable system prompts across requests: after another
prompt replaced the KV cache, an agent prompt restores its prefix instead of evaluating it, and the
restored state gives exactly the same greedy output as a fresh evaluation. Real model: ``-m model``."""

from __future__ import annotations

import asyncio

import pytest

from backend.agents.code import CODE_SYSTEM
from backend.agents.react.prompts import REACT_NATIVE_SYSTEM
from backend.llm.embedded import PrefixCache
from backend.llm.types import GenerationParams

GREEDY = GenerationParams(temperature=0.0, seed=1, max_tokens=24)


def ask(provider, system: str, question: str) -> str:
    messages = [{"role": "system", "content": system}, {"role": "user", "content": question}]
    return asyncio.run(provider.complete(messages, GREEDY)).content or ""


@pytest.mark.model
@pytest.mark.timeout(600)
def test_a_stable_prefix_is_restored_after_another_prompt(embedded_provider):
    p = embedded_provider
    p.prefix_cache = PrefixCache(64 * 1024 * 1024)
    fresh = ask(p, CODE_SYSTEM, "What is 2 to the power 20?")
    assert len(p.prefix_cache) == 1 and p.prefix_cache.hits == 0
    ask(p, REACT_NATIVE_SYSTEM, "Say hi.")  # replaces the KV cache with another prefix
    assert len(p.prefix_cache) == 2
    prefix = p.stable_prefix_len(
        [{"role": "system", "content": CODE_SYSTEM}, {"role": "user", "content": "x"}],
        None,
        p.render_prompt([{"role": "system", "content": CODE_SYSTEM}, {"role": "user", "content": "x"}], None)[0],
    )
    restored = ask(p, CODE_SYSTEM, "What is 2 to the power 20?")
    assert p.prefix_cache.hits == 1
    assert p.last_cached_tokens >= prefix >= 32, "the system turn came from the prefix cache"
    assert restored == fresh, "the restored KV state is the same as evaluating the prefix"


def test_the_cache_is_bounded():
    cache = PrefixCache(max_bytes=100)
    cache.put("a", 10, b"x" * 60)
    cache.put("b", 10, b"y" * 60)
    assert len(cache) == 1 and cache.get("a") is None and cache.get("b") is not None
    cache.put("c", 10, b"z" * 200)  # larger than the whole budget: not kept
    assert cache.get("c") is None and cache.size_bytes <= 100
