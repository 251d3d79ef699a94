"""The order of ``ChatRun.prepare()``: the rate limit comes before any work or state.

A user over the limit gets a 429 without the router running (its LLM classification takes a
model slot) and without a ``conversation_id: "new"`` conversation left behind.
"""

from __future__ import annotations

import pytest

from backend.ratelimit import RateLimiter

UNSURE = "Who won the most recent Tour de France?"  # the heuristics are unsure: the router asks the model


@pytest.fixture
def limited(api):
    """bob (not an admin) may send one request a minute; the router's LLM fallback is on."""
    api.services.rate_limiter = RateLimiter(rpm=1, tpm=0)
    api.services.settings.router_use_llm = True
    return api


def _chat(api, content: str, **extra):
    body = {"model": "scripted-model", "messages": [{"role": "user", "content": content}], **extra}
    return api.client.post("/v1/chat/completions", json=body, headers=api.auth("bob"))


def test_a_rate_limited_request_does_not_route_with_the_model(limited):
    first = _chat(limited, UNSURE)
    assert first.status_code == 200, first.text
    # the first request did ask the model to classify (JSON-constrained) and then answer
    assert any(c["constraint"] is not None for c in limited.provider.calls)
    calls_before = len(limited.provider.calls)
    second = _chat(limited, UNSURE)
    assert second.status_code == 429, second.text
    assert second.json()["error"]["code"] and second.headers.get("retry-after")
    assert len(limited.provider.calls) == calls_before  # no routing call, no answer


def test_a_rate_limited_request_leaves_no_new_conversation(limited):
    assert _chat(limited, "Hello").status_code == 200
    uid = limited.users["bob"]["id"]
    _, before = limited.services.conversations.list(uid)
    r = _chat(limited, "Hello again", conversation_id="new")
    assert r.status_code == 429, r.text
    _, after = limited.services.conversations.list(uid)
    assert after == before == 0


def test_within_the_limit_a_new_conversation_is_created_and_routed(limited):
    limited.services.rate_limiter = RateLimiter(rpm=10, tpm=0)
    r = _chat(limited, "What is 12 * 13?", conversation_id="new")
    assert r.status_code == 200, r.text
    uid = limited.users["bob"]["id"]
    _, total = limited.services.conversations.list(uid)
    assert total == 1
    assert r.json()["agent"]["mode"] == "code" and r.json()["agent"]["source"] == "heuristic"
