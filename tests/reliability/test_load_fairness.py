"""Load and fairness over real HTTP: rate limits, the bounded queue, per-user fairness,
SSE keep-alives while queued, and retries that must not append a message twice."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import openai
import pytest

from backend.errors import UpstreamError
from tests.fakes import ScriptedProvider
from tests.reliability.conftest import assert_openai_error, sse_data, wait_until

SLOW = "one two three four five six"


def _in_thread(fn: Any, *args: Any, **kw: Any) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["response"] = fn(*args, **kw)
        except Exception as exc:  # surfaced by the assertions
            out["error"] = exc
        out["done_at"] = time.monotonic()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


# ---------------------------------------------------------------------------------- rate limits
def test_per_user_rate_limit_is_429_with_retry_after_and_ratelimit_headers(threaded_app):
    with threaded_app(rate_limit_rpm=3) as app:
        remaining = []
        for _ in range(3):
            r = app.chat("bob")
            assert r.status_code == 200, r.text
            remaining.append(r.headers["x-ratelimit-remaining-requests"])
            assert r.headers["x-ratelimit-limit-requests"] == "3"
        assert remaining == ["2", "1", "0"]
        refused = app.chat("bob")
        err = assert_openai_error(refused, 429, "rate_limit_exceeded")
        assert err["type"] == "rate_limit_error"
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert refused.headers["x-ratelimit-remaining-requests"] == "0"
        assert refused.headers["x-ratelimit-limit-requests"] == "3"
        assert refused.headers["x-ratelimit-reset-requests"].endswith("s")
        # per user: carol is not affected by bob's burst; the admin is exempt by default
        assert app.chat("carol").status_code == 200
        assert all(app.chat("alice").status_code == 200 for _ in range(5))
        metrics = httpx.get(app.base_url + "/metrics").text
        assert 'rate_limited_total{kind="user"} 1.0' in metrics


def test_admins_are_limited_when_exemption_is_off(threaded_app):
    with threaded_app(rate_limit_rpm=2, rate_limit_admin_exempt=False) as app:
        assert [app.chat("alice").status_code for _ in range(3)] == [200, 200, 429]


def test_refused_request_never_reaches_the_model(threaded_app):
    provider = ScriptedProvider()
    with threaded_app(provider, rate_limit_rpm=1) as app:
        assert app.chat("bob").status_code == 200
        assert app.chat("bob").status_code == 429
        assert len(provider.calls) == 1


# ---------------------------------------------------------------------------------- bounded queue
def test_full_queue_is_503_with_retry_after(threaded_app):
    provider = ScriptedProvider(delay_s=0.3)
    provider.default = SLOW
    with threaded_app(provider, queue_max_size=1) as app:
        sched = app.services.scheduler
        ta, a = _in_thread(app.chat, "bob")
        assert wait_until(lambda: sched.active == 1)
        tb, b = _in_thread(app.chat, "carol")
        assert wait_until(lambda: sched.waiting == 1)
        started = time.monotonic()
        refused = app.chat("alice")
        assert time.monotonic() - started < 1.0  # refused at once, not after waiting
        assert_openai_error(refused, 503, "queue_full")
        assert int(refused.headers["retry-after"]) >= 1
        ta.join(10)
        tb.join(10)
        assert a["response"].status_code == b["response"].status_code == 200


def test_one_user_cannot_fill_the_whole_queue(threaded_app):
    provider = ScriptedProvider(delay_s=0.3)
    provider.default = SLOW
    with threaded_app(provider, queue_max_size=8, queue_max_per_user=2, rate_limit_rpm=1000) as app:
        sched = app.services.scheduler
        threads = [_in_thread(app.chat, "bob")]
        assert wait_until(lambda: sched.active == 1)
        threads += [_in_thread(app.chat, "bob") for _ in range(2)]
        assert wait_until(lambda: sched.waiting == 2)
        refused = app.chat("bob")
        assert_openai_error(refused, 429, "too_many_queued_requests")
        assert int(refused.headers["retry-after"]) >= 1
        threads.append(_in_thread(app.chat, "carol"))  # the queue still has room for everyone else
        for t, _ in threads:
            t.join(20)
        assert [out["response"].status_code for _, out in threads] == [200, 200, 200, 200]


@pytest.mark.parametrize("stream", [False, True])
def test_queue_wait_past_its_limit_is_503(threaded_app, stream):
    provider = ScriptedProvider(delay_s=0.4)
    provider.default = SLOW
    with threaded_app(provider, queue_timeout_s=0.5) as app:
        sched = app.services.scheduler
        ta, a = _in_thread(app.chat, "bob")
        assert wait_until(lambda: sched.active == 1)
        started = time.monotonic()
        refused = app.chat("carol", stream=stream)
        waited = time.monotonic() - started
        assert_openai_error(refused, 503, "queue_timeout")
        assert int(refused.headers["retry-after"]) >= 1
        assert 0.4 < waited < 2.0
        assert sched.waiting == 0  # the timed-out request left the queue
        ta.join(10)
        assert a["response"].status_code == 200


def test_one_users_burst_does_not_starve_another(threaded_app):
    provider = ScriptedProvider(delay_s=0.1)
    provider.default = "a b c d"  # ~0.4 s per generation
    with threaded_app(provider, rate_limit_rpm=1000) as app:
        sched = app.services.scheduler
        burst = []
        for _ in range(6):
            burst.append(_in_thread(app.chat, "bob"))
            time.sleep(0.01)
        assert wait_until(lambda: sched.active == 1 and sched.waiting == 5)
        sent = time.monotonic()
        tc, c = _in_thread(app.chat, "carol")
        tc.join(20)
        for t, _ in burst:
            t.join(20)
        assert c["response"].status_code == 200
        assert all(out["response"].status_code == 200 for _, out in burst)
        bob_done = sorted(out["done_at"] for _, out in burst)
        # FIFO would serve carol after all six of bob's requests; round-robin serves her by the 3rd slot
        assert c["done_at"] < bob_done[2], (c["done_at"] - sent, [round(t - sent, 2) for t in bob_done])
        assert c["done_at"] - sent < 2.0


# ---------------------------------------------------------------------------------- keep-alives
def test_streamed_request_gets_keepalive_comments_while_queued(threaded_app):
    provider = ScriptedProvider(delay_s=0.3)
    provider.default = SLOW  # ~1.8 s holding the only slot
    with threaded_app(provider, keepalive_interval_s=0.2) as app:
        ta, a = _in_thread(app.chat, "bob")
        assert wait_until(lambda: app.services.scheduler.active == 1)
        body = {"model": "scripted-model:chat", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        lines: list[tuple[float, str]] = []
        started = time.monotonic()
        with httpx.stream("POST", app.base_url + "/v1/chat/completions", json=body, headers=app.auth("carol"), timeout=30) as r:
            headers_at = time.monotonic() - started
            assert r.status_code == 200
            for line in r.iter_lines():
                if line:
                    lines.append((time.monotonic() - started, line))
        ta.join(10)
        assert headers_at < 1.0  # the stream opened while the request was still queued
        first_data = next(i for i, (_, line) in enumerate(lines) if line.startswith("data: "))
        keepalives = [t for t, line in lines[:first_data] if line == ": keep-alive"]
        assert len(keepalives) >= 3, lines[:first_data]
        gaps = [b - a for a, b in zip(keepalives, keepalives[1:], strict=False)]
        assert max(gaps) < 0.8  # regular, not one burst
        assert lines[-1][1] == "data: [DONE]"
        assert a["response"].status_code == 200


# ---------------------------------------------------------------------------------- retries
class LoseFirstResponse(httpx.BaseTransport):
    """The server answers, but the client never sees it (a timeout after the server committed)."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.lost = 0
        self.seen_keys: list[str | None] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        inner = self.inner.handle_request(request)
        content = inner.read()
        if request.url.path.endswith("/chat/completions"):
            self.seen_keys.append(request.headers.get("idempotency-key"))
            if self.lost == 0:
                self.lost += 1
                raise httpx.ReadTimeout("the response was lost", request=request)
        return httpx.Response(inner.status_code, headers=inner.headers, content=content, request=request)


def _sdk_with_lost_response(api: Any, who: str) -> tuple[openai.OpenAI, LoseFirstResponse]:
    transport = LoseFirstResponse(api.client._transport)
    http = httpx.Client(transport=transport, base_url="http://testserver")
    client = openai.OpenAI(base_url="http://testserver/v1", api_key=api.tokens[who], http_client=http, max_retries=2)
    return client, transport


def _count(api: Any, who: str, conv_id: str) -> int:
    return api.client.get(f"/api/conversations/{conv_id}", headers=api.auth(who)).json()["message_count"]


def test_sdk_retry_after_a_lost_response_appends_once(api):
    conv = api.client.post("/api/conversations", json={}, headers=api.auth("bob")).json()["id"]
    client, transport = _sdk_with_lost_response(api, "bob")
    raw = client.chat.completions.with_raw_response.create(
        model="scripted-model:chat", messages=[{"role": "user", "content": "once please"}],
        extra_headers={"Idempotency-Key": "lost-1"}, extra_body={"conversation_id": conv},
    )
    assert transport.seen_keys == ["lost-1", "lost-1"]  # the SDK retried with the same key
    assert raw.headers.get("idempotent-replayed") == "true"
    assert raw.parse().choices[0].message.content == "Hello from the scripted model."
    assert _count(api, "bob", conv) == 2
    assert len(api.provider.calls) == 1  # the retry was answered from the record, not regenerated

    # the same lost response without a key: the SDK's retry (x-stainless-retry-count: 1) is matched to
    # the turn it repeats by content, so the turn is still stored once and the answer replayed
    conv2 = api.client.post("/api/conversations", json={}, headers=api.auth("bob")).json()["id"]
    client2, _ = _sdk_with_lost_response(api, "bob")
    raw2 = client2.chat.completions.with_raw_response.create(
        model="scripted-model:chat", messages=[{"role": "user", "content": "x"}], extra_body={"conversation_id": conv2})
    assert raw2.headers.get("idempotent-replayed") == "true"
    assert _count(api, "bob", conv2) == 2
    # a deliberate repeat of the same question (not a retry) is a new turn
    client3 = openai.OpenAI(base_url="http://testserver/v1", api_key=api.tokens["bob"], http_client=api.client, max_retries=0)
    client3.chat.completions.create(model="scripted-model:chat", messages=[{"role": "user", "content": "x"}],
                                    extra_body={"conversation_id": conv2})
    assert _count(api, "bob", conv2) == 4


def test_streamed_retry_with_the_same_key_appends_once(api):
    conv = api.client.post("/api/conversations", json={}, headers=api.auth("bob")).json()["id"]
    body = {"model": "scripted-model:chat", "stream": True, "conversation_id": conv,
            "messages": [{"role": "user", "content": "stream once"}]}
    headers = api.auth("bob") | {"Idempotency-Key": "stream-1"}
    for _ in range(2):
        r = api.client.post("/v1/chat/completions", json=body, headers=headers)
        assert r.status_code == 200 and sse_data(r.text)[-1] == "[DONE]"
    assert _count(api, "bob", conv) == 2


def test_failed_request_appends_nothing_and_its_retry_applies_once(api):
    conv = api.client.post("/api/conversations", json={}, headers=api.auth("bob")).json()["id"]
    body = {"model": "scripted-model:chat", "conversation_id": conv, "messages": [{"role": "user", "content": "q"}]}
    headers = api.auth("bob") | {"Idempotency-Key": "fail-then-ok"}
    api.provider.fail = UpstreamError("The model backend sent garbage.")
    for stream in (False, True):
        r = api.client.post("/v1/chat/completions", json=body | {"stream": stream}, headers=headers)
        assert_openai_error(r, 502, "bad_gateway")
        assert r.headers.get("x-should-retry") is None  # 5xx: the SDK may retry
    assert _count(api, "bob", conv) == 0
    api.provider.fail = None
    assert api.client.post("/v1/chat/completions", json=body, headers=headers).status_code == 200
    assert api.client.post("/v1/chat/completions", json=body, headers=headers).headers["idempotent-replayed"] == "true"
    assert _count(api, "bob", conv) == 2


def test_idempotency_keys_are_per_conversation_and_validated(api):
    conv = api.client.post("/api/conversations", json={}, headers=api.auth("bob")).json()["id"]
    body = {"model": "scripted-model:chat", "conversation_id": conv, "messages": [{"role": "user", "content": "q"}]}
    bad = api.client.post("/v1/chat/completions", json=body, headers=api.auth("bob") | {"Idempotency-Key": "../../x y"})
    assert_openai_error(bad, 400)
    assert _count(api, "bob", conv) == 0
