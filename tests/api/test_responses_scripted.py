"""/v1/responses on a scripted model: shapes (validated against OpenAI's schema), streaming events,
function calling round trips, text.format, stored responses per user, and errors in OpenAI's shape."""

from __future__ import annotations

import json

import openai
import pytest

from tests.openai_schema import validate

MODEL = "scripted-model:chat"


def sdk(api, who: str = "alice") -> openai.OpenAI:
    return openai.OpenAI(base_url="http://testserver/v1", api_key=api.tokens[who], http_client=api.client, max_retries=0)


def post(api, body: dict, who: str = "bob"):
    return api.client.post("/v1/responses", json=body, headers=api.auth(who))


def sse(text: str) -> list[dict]:
    events, name = [], None
    for line in text.splitlines():
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            ev = json.loads(line[6:])
            assert ev["type"] == name
            events.append(ev)
    return events


EVENT_SCHEMAS = {
    "response.created": "ResponseCreatedEvent",
    "response.in_progress": "ResponseInProgressEvent",
    "response.output_item.added": "ResponseOutputItemAddedEvent",
    "response.output_item.done": "ResponseOutputItemDoneEvent",
    "response.content_part.added": "ResponseContentPartAddedEvent",
    "response.content_part.done": "ResponseContentPartDoneEvent",
    "response.output_text.delta": "ResponseTextDeltaEvent",
    "response.output_text.done": "ResponseTextDoneEvent",
    "response.output_text.annotation.added": "ResponseOutputTextAnnotationAddedEvent",
    "response.function_call_arguments.delta": "ResponseFunctionCallArgumentsDeltaEvent",
    "response.function_call_arguments.done": "ResponseFunctionCallArgumentsDoneEvent",
    "response.reasoning_summary_part.added": "ResponseReasoningSummaryPartAddedEvent",
    "response.reasoning_summary_part.done": "ResponseReasoningSummaryPartDoneEvent",
    "response.reasoning_summary_text.delta": "ResponseReasoningSummaryTextDeltaEvent",
    "response.reasoning_summary_text.done": "ResponseReasoningSummaryTextDoneEvent",
    "response.completed": "ResponseCompletedEvent",
    "response.incomplete": "ResponseIncompleteEvent",
    "response.failed": "ResponseFailedEvent",
    "error": "ResponseErrorEvent",
}


def validate_events(events: list[dict]) -> None:
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    for ev in events:
        validate(ev, EVENT_SCHEMAS[ev["type"]])
        validate(ev, "ResponseStreamEvent")


def test_string_input_non_stream(api):
    r = post(api, {"model": MODEL, "input": "hi", "instructions": "Be brief.", "metadata": {"k": "v"}})
    assert r.status_code == 200, r.text
    body = r.json()
    validate(body, "Response")
    assert body["id"].startswith("resp_") and body["object"] == "response" and body["status"] == "completed"
    [msg] = body["output"]
    assert msg["type"] == "message" and msg["role"] == "assistant" and msg["status"] == "completed"
    assert msg["content"][0]["text"] == "Hello from the scripted model." == body["output_text"]
    assert body["instructions"] == "Be brief." and body["metadata"] == {"k": "v"}
    u = body["usage"]
    assert u["total_tokens"] == u["input_tokens"] + u["output_tokens"] and u["output_tokens"] == 5
    sent = api.provider.calls[-1]["messages"]
    assert sent[0] == {"role": "system", "content": "Be brief."} and sent[-1] == {"role": "user", "content": "hi"}
