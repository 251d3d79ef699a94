"""/v1/completions on a scripted model: body and stream shapes (OpenAI's schema), fill-in-the-middle
post-processing, the check_syntax guarantee, refusals, the rate limit and the fair queue."""

from __future__ import annotations

import ast
import json

import openai
import pytest

from tests.openai_schema import validate, validate_completion_chunk

PREFIX = "def double(x):\n"
SUFFIX = "\n    return y\n"


def sdk(api, who: str = "bob") -> openai.OpenAI:
    return openai.OpenAI(base_url="http://testserver/v1", api_key=api.tokens[who], http_client=api.client, max_retries=0)


def sse(text: str) -> list:
    return [line[6:] if line[6:] == "[DONE]" else json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]


def post(api, body: dict, who: str = "bob"):
    return api.client.post("/v1/completions", json={"model": "scripted-model", **body}, headers=api.auth(who))


def test_sdk_non_stream_body_validates(api):
    resp = sdk(api).completions.with_raw_response.create(model="scripted-model", prompt="Once upon a time", max_tokens=20)
    body = json.loads(resp.text)
    validate(body, "CreateCompletionResponse")
    assert body["object"] == "text_completion" and body["id"].startswith("cmpl-")
    assert body["choices"] == [{"index": 0, "text": "Hello from the scripted model.", "finish_reason": "stop", "logprobs": None}]
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"] > 0
    call = api.provider.calls[-1]
    assert call["prompt"] == "Once upon a time" and call["suffix"] is None and call["params"].max_tokens == 20
    assert resp.headers["x-ratelimit-limit-requests"]


def test_default_max_tokens_is_openais_16(api):
    post(api, {"prompt": "x"})
    assert api.provider.calls[-1]["params"].max_tokens == 16


def test_stream_chunks_validate_and_end_with_done(api):
    stream = sdk(api).completions.create(model="scripted-model", prompt="Hi", stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "Hello from the scripted model."
    raw = post(api, {"prompt": "Hi", "stream": True, "stream_options": {"include_usage": True}})
    assert raw.headers["content-type"].startswith("text/event-stream")
    events = sse(raw.text)
    assert events[-1] == "[DONE]"
    for chunk in events[:-1]:
        validate_completion_chunk(chunk)
    finishes = [c["choices"][0]["finish_reason"] for c in events[:-1] if c["choices"]]
    assert finishes[-1] == "stop" and set(finishes[:-1]) == {None}
    assert events[-2]["choices"] == [] and events[-2]["usage"]["completion_tokens"] > 0
    assert len({c["id"] for c in events[:-1]}) == 1


def test_suffix_goes_to_the_provider_and_a_repeated_suffix_is_cut(api):
    api.provider.outputs = ["    y = x * 2\n    return y\nprint(double(3))\n"]
    r = post(api, {"prompt": PREFIX, "suffix": SUFFIX, "max_tokens": 64})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["text"] == "    y = x * 2\n"
    assert api.provider.calls[-1]["suffix"] == SUFFIX


def test_fim_stream_is_line_buffered_and_cut_at_the_suffix(api):
    api.provider.outputs = ["    y = x * 2\n    return y\n"]
    events = sse(post(api, {"prompt": PREFIX, "suffix": SUFFIX, "stream": True}).text)
    texts = [c["choices"][0]["text"] for c in events[:-1] if c["choices"]]
    assert "".join(texts) == "    y = x * 2\n"
    assert all(t.endswith("\n") for t in texts if t)  # whole lines only


def test_check_syntax_trims_to_a_line_that_parses(api):
    api.provider.outputs = ["    y = x * 2\n    z = (y +"]
    r = post(api, {"prompt": PREFIX, "suffix": SUFFIX, "check_syntax": "python", "max_tokens": 64})
    body = r.json()
    validate(body, "CreateCompletionResponse")
    middle = body["choices"][0]["text"]
    assert middle == "    y = x * 2\n"
    ast.parse(PREFIX + middle + SUFFIX)
    assert body["syntax_check"] == [{"index": 0, "language": "python", "attempts": 1, "trimmed_chars": len("    z = (y +")}]


def test_check_syntax_regenerates_when_nothing_but_an_empty_middle_fits(api):
    api.provider.outputs = ["    y = (x", "    y = x + x\n"]
    r = post(api, {"prompt": PREFIX, "suffix": SUFFIX, "check_syntax": "python", "temperature": 0})
    middle = r.json()["choices"][0]["text"]
    assert middle == "    y = x + x\n"
    assert r.json()["syntax_check"][0]["attempts"] == 2
    assert api.provider.calls[-1]["params"].temperature > 0  # the retry samples instead of repeating greedy output


def test_check_syntax_never_answers_200_with_code_that_does_not_parse(api):
    api.provider.outputs = ["(((", "[[[", "{{{"]
    r = post(api, {"prompt": "value = ", "suffix": "\nprint(value)\n", "check_syntax": "python"})
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "syntax_unsatisfied" and r.json()["error"]["param"] == "check_syntax"
    assert len(api.provider.calls) == api.services.settings.fim_syntax_attempts


def test_check_syntax_stream_sends_the_checked_middle(api):
    api.provider.outputs = ["    y = x * 2\n    z = (y +"]
    events = sse(post(api, {"prompt": PREFIX, "suffix": SUFFIX, "check_syntax": "python", "stream": True}).text)
    for chunk in events[:-1]:
        validate_completion_chunk(chunk)
    middle = "".join(c["choices"][0]["text"] for c in events[:-1] if c["choices"])
    ast.parse(PREFIX + middle + SUFFIX)
    assert middle == "    y = x * 2\n"


def test_echo_and_several_prompts(api):
    r = post(api, {"prompt": ["A: ", "B: "], "echo": True})
    choices = r.json()["choices"]
    assert [c["index"] for c in choices] == [0, 1]
    assert choices[0]["text"] == "A: Hello from the scripted model." and choices[1]["text"].startswith("B: ")


def test_penalties_and_sampling_reach_the_provider(api):
    post(api, {"prompt": "x", "presence_penalty": 0.5, "frequency_penalty": -0.25, "temperature": 0.1, "top_p": 0.5,
               "seed": 7, "stop": ["\n\n"]})
    params = api.provider.calls[-1]["params"]
    assert (params.presence_penalty, params.frequency_penalty, params.temperature, params.top_p, params.seed, params.stop) == (
        0.5, -0.25, 0.1, 0.5, 7, ["\n\n"])


@pytest.mark.parametrize(
    ("body", "status", "param", "code"),
    [
        ({"prompt": "x", "n": 2}, 400, "n", "unsupported_value"),
        ({"prompt": "x", "best_of": 3}, 400, "best_of", "unsupported_value"),
        ({"prompt": "x", "logprobs": 1}, 400, "logprobs", "unsupported_value"),
        ({"prompt": "x", "logit_bias": {"50256": -100}}, 400, "logit_bias", "unsupported_value"),
        ({"prompt": "x", "suffix": "y", "echo": True}, 400, "echo", "unsupported_value"),
        ({"prompt": [1, 2, 3]}, 400, "prompt", "unsupported_value"),
        ({"prompt": [[1, 2], [3]]}, 400, "prompt", "unsupported_value"),
        ({"prompt": ""}, 400, "prompt", None),
        ({"prompt": ["x"] * 9}, 400, "prompt", "too_many_prompts"),
        ({"prompt": "x", "model": "scripted-model:react"}, 400, "model", "invalid_value"),
        ({"prompt": "x", "model": "gpt-nope"}, 404, "model", "model_not_found"),
        ({"prompt": "x", "temperature": 9}, 400, "temperature", "invalid_value"),
        ({"prompt": "x", "check_syntax": "cobol"}, 400, "check_syntax", "invalid_value"),
        ({"prompt": "word " * 5000}, 400, "prompt", "context_length_exceeded"),
    ],
)
def test_refusals_are_openai_shaped(api, body, status, param, code):
    r = post(api, body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["param"] == param and err["code"] == code
    assert not api.provider.calls  # refused before the model was asked


def test_backend_without_raw_completions_is_a_clear_400(api):
    api.provider.supports_text_completion = False
    r = post(api, {"prompt": "x"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "unsupported_endpoint"
    api.provider.supports_text_completion, api.provider.supports_suffix = True, False
    r = post(api, {"prompt": "x", "suffix": "y"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "suffix"


def test_rate_limit_and_tokens_recorded(api):
    limiter = api.services.rate_limiter
    limiter.rpm = 1
    assert post(api, {"prompt": "x"}).status_code == 200
    assert sum(n for _, n in limiter._tokens[api.users["bob"]["id"]]) > 0  # the tokens count against bob's budget
    r = post(api, {"prompt": "x"})
    assert r.status_code == 429 and r.headers["retry-after"]


def test_completions_wait_in_the_same_fair_queue_as_chat(api):
    scheduler = api.services.scheduler

    async def take():  # on the app's event loop
        return scheduler.enqueue("someone-else")

    async def give_back(ticket):
        scheduler.release(ticket)

    ticket = api.client.portal.call(take)  # the single model slot is taken
    scheduler.timeout_s = 0.2
    try:
        r = post(api, {"prompt": "x"})
        assert r.status_code == 503 and r.json()["error"]["code"] == "queue_timeout"
    finally:
        api.client.portal.call(give_back, ticket)
    assert post(api, {"prompt": "x"}).status_code == 200


def test_backend_failure_before_output_is_a_proper_http_error(api):
    from backend.errors import UpstreamError

    api.provider.fail = UpstreamError("The model backend failed.")
    r = post(api, {"prompt": "x", "stream": True})
    assert r.status_code == 502 and r.json()["error"]["type"] == "server_error"
