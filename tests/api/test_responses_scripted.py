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


def test_items_input_roles_and_parts(api):
    items = [
        {"role": "developer", "content": "dev rules"},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "part one"},
                                                        {"type": "input_text", "text": "part two"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "earlier answer"}]},
        {"role": "user", "content": "and now?"},
    ]
    r = post(api, {"model": MODEL, "input": items})
    assert r.status_code == 200, r.text
    validate(r.json(), "Response")
    sent = api.provider.calls[-1]["messages"]
    assert sent == [{"role": "system", "content": "dev rules"}, {"role": "user", "content": "part one\npart two"},
                    {"role": "assistant", "content": "earlier answer"}, {"role": "user", "content": "and now?"}]
    mixed = [*items, {"type": "reasoning", "summary": [{"type": "summary_text", "text": "thinking"}]},
             {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"},
             {"type": "function_call_output", "call_id": "call_1", "output": "out"}]
    rid = post(api, {"model": MODEL, "input": mixed}).json()["id"]
    listed = api.client.get(f"/v1/responses/{rid}/input_items?order=asc", headers=api.auth("bob")).json()
    validate(listed, "ResponseItemList")
    assert [i["type"] for i in listed["data"]] == ["message"] * 4 + ["reasoning", "function_call", "function_call_output"]
    assert "thinking" not in json.dumps(api.provider.calls[-1]["messages"])  # reasoning is not replayed


def test_stream_events_validate_and_add_up(api):
    r = post(api, {"model": MODEL, "input": "hi", "stream": True})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = sse(r.text)
    validate_events(events)
    kinds = [e["type"] for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-5:] == ["response.output_text.delta", "response.output_text.done", "response.content_part.done",
                          "response.output_item.done", "response.completed"]
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    done = next(e for e in events if e["type"] == "response.output_text.done")
    final = events[-1]["response"]
    assert deltas == done["text"] == final["output_text"] == "Hello from the scripted model."
    assert events[0]["response"]["status"] == "in_progress" and final["status"] == "completed"
    assert len({e["response"]["id"] for e in events if "response" in e}) == 1
    assert final["usage"]["output_tokens"] == 5


def test_sdk_create_and_stream(api):
    client = sdk(api, "bob")
    resp = client.responses.create(model=MODEL, input="hi")
    assert resp.output_text == "Hello from the scripted model."
    with client.responses.stream(model=MODEL, input="hi again") as stream:
        deltas = [ev.delta for ev in stream if ev.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text == "Hello from the scripted model."
    assert final.status == "completed" and final.id.startswith("resp_")


TOOLS = [{"type": "function", "name": "get_weather", "description": "Weather for a city", "strict": True,
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                         "additionalProperties": False}}]


def test_function_call_round_trip_with_previous_response_id(api):
    api.provider.outputs = ['{"name": "get_weather", "arguments": {"city": "Paris"}}', "It is sunny in Paris."]
    first = post(api, {"model": "scripted-model", "input": "Weather in Paris?", "tools": TOOLS,
                       "tool_choice": {"type": "function", "name": "get_weather"}})
    assert first.status_code == 200, first.text
    body = first.json()
    validate(body, "Response")
    [call] = body["output"]
    assert call["type"] == "function_call" and call["name"] == "get_weather" and call["status"] == "completed"
    assert json.loads(call["arguments"]) == {"city": "Paris"} and call["call_id"]
    assert body["tools"][0]["name"] == "get_weather" and body["tool_choice"] == {"type": "function", "name": "get_weather"}
    # the forced call was grammar-constrained to the named tool
    assert api.provider.calls[-1]["constraint"].schema["properties"]["name"] == {"const": "get_weather"}
    second = post(api, {"model": "scripted-model", "previous_response_id": body["id"], "tools": TOOLS,
                        "input": [{"type": "function_call_output", "call_id": call["call_id"], "output": "sunny, 21C"}]})
    assert second.status_code == 200, second.text
    validate(second.json(), "Response")
    assert second.json()["output_text"] == "It is sunny in Paris."
    assert second.json()["previous_response_id"] == body["id"]
    sent = api.provider.calls[-1]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool"]
    assert sent[1]["tool_calls"][0]["id"] == call["call_id"] and sent[2]["tool_call_id"] == call["call_id"]
    assert sent[2]["content"] == "sunny, 21C"


def test_function_call_items_in_input_without_storage(api):
    items = [{"role": "user", "content": "Weather in Oslo?"},
             {"type": "function_call", "call_id": "call_abc", "name": "get_weather", "arguments": '{"city":"Oslo"}'},
             {"type": "function_call_output", "call_id": "call_abc", "output": [{"type": "input_text", "text": "rain"}]}]
    r = post(api, {"model": "scripted-model", "input": items, "tools": TOOLS, "store": False})
    assert r.status_code == 200, r.text
    assert r.json()["store"] is False
    sent = api.provider.calls[-1]["messages"]
    assert sent[1] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_abc", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}]}
    assert sent[2] == {"role": "tool", "content": "rain", "tool_call_id": "call_abc"}
    # store=false: nothing kept
    assert api.client.get(f"/v1/responses/{r.json()['id']}", headers=api.auth("bob")).status_code == 404
    assert api.services.responses.count(api.users["bob"]["id"]) == 0


def test_streamed_function_call_events(api):
    api.provider.outputs = ['<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call>']
    r = post(api, {"model": "scripted-model", "input": "Weather in Rome?", "tools": TOOLS, "stream": True})
    events = sse(r.text)
    validate_events(events)
    args_done = [e for e in events if e["type"] == "response.function_call_arguments.done"]
    assert len(args_done) == 1 and json.loads(args_done[0]["arguments"]) == {"city": "Rome"}
    assert args_done[0]["name"] == "get_weather"
    final = events[-1]["response"]
    assert [i["type"] for i in final["output"]] == ["function_call"]
    # the SDK's stream helper reads the same events
    api.provider.outputs = ['<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call>']
    with sdk(api, "bob").responses.stream(model="scripted-model", input="Weather in Rome?", tools=TOOLS) as stream:
        final_sdk = stream.get_final_response()
    assert final_sdk.output[0].type == "function_call" and json.loads(final_sdk.output[0].arguments) == {"city": "Rome"}


def test_parallel_tool_calls_false_keeps_one_call(api):
    two = ('[{"name": "get_weather", "arguments": {"city": "A"}}, '
           '{"name": "get_weather", "arguments": {"city": "B"}}]')
    api.provider.outputs = [two, two]
    many = post(api, {"model": "scripted-model", "input": "A and B?", "tools": TOOLS})
    one = post(api, {"model": "scripted-model", "input": "A and B?", "tools": TOOLS, "parallel_tool_calls": False})
    assert many.status_code == one.status_code == 200, (many.text, one.text)
    assert len(many.json()["output"]) >= 2
    assert [json.loads(i["arguments"])["city"] for i in one.json()["output"]] == ["A"]
    assert one.json()["parallel_tool_calls"] is False


def test_allowed_tools_narrows_the_tools(api):
    tools = [*TOOLS, {"type": "function", "name": "other", "strict": None, "parameters": {"type": "object", "properties": {}}}]
    api.provider.outputs = ['{"name": "other", "arguments": {}}']
    r = post(api, {"model": "scripted-model", "input": "x", "tools": tools,
                   "tool_choice": {"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "other"}]}})
    assert r.status_code == 200, r.text
    validate(r.json(), "Response")
    assert api.provider.calls[-1]["constraint"].schema["properties"]["name"] == {"const": "other"}


def test_text_format_json_schema(api):
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"],
              "additionalProperties": False}
    api.provider.outputs = ['{"answer": 42}']
    fmt = {"type": "json_schema", "name": "result", "schema": schema, "strict": True}
    r = post(api, {"model": "scripted-model", "input": "6*7?", "text": {"format": fmt}})
    assert r.status_code == 200, r.text
    validate(r.json(), "Response")
    assert json.loads(r.json()["output_text"]) == {"answer": 42}
    assert r.json()["text"]["format"] == fmt
    constraint = api.provider.calls[-1]["constraint"]
    assert constraint is not None and constraint.schema == schema
    api.provider.outputs = ['{"ok": true}']
    r = post(api, {"model": "scripted-model", "input": "json please", "text": {"format": {"type": "json_object"}}})
    assert r.status_code == 200 and api.provider.calls[-1]["constraint"] is not None


def test_sdk_parse_with_pydantic_text_format(api):
    from pydantic import BaseModel

    class Answer(BaseModel):
        answer: int

    api.provider.outputs = ['{"answer": 7}']
    parsed = sdk(api, "bob").responses.parse(model="scripted-model", input="3+4?", text_format=Answer)
    assert parsed.output_parsed == Answer(answer=7)


def test_sampling_params_reach_the_model(api):
    r = post(api, {"model": MODEL, "input": "x", "temperature": 0.2, "top_p": 0.5, "max_output_tokens": 33,
                   "user": "end-user-1", "safety_identifier": "h1", "metadata": {"a": "b"}})
    assert r.status_code == 200, r.text
    p = api.provider.calls[-1]["params"]
    assert (p.temperature, p.top_p, p.max_tokens) == (0.2, 0.5, 33)
    body = r.json()
    validate(body, "Response")
    assert (body["temperature"], body["top_p"], body["max_output_tokens"], body["user"]) == (0.2, 0.5, 33, "end-user-1")


def test_store_retrieve_input_items_delete_and_isolation(api):
    items = [{"role": "user", "content": f"message {i}"} for i in range(5)]
    r = post(api, {"model": MODEL, "input": items, "metadata": {"tag": "x"}})
    rid = r.json()["id"]
    got = api.client.get(f"/v1/responses/{rid}", headers=api.auth("bob"))
    assert got.status_code == 200 and got.json() == r.json()
    validate(got.json(), "Response")
    page = api.client.get(f"/v1/responses/{rid}/input_items?limit=2&order=asc", headers=api.auth("bob")).json()
    validate(page, "ResponseItemList")
    assert [i["content"][0]["text"] for i in page["data"]] == ["message 0", "message 1"] and page["has_more"] is True
    rest = api.client.get(f"/v1/responses/{rid}/input_items?limit=10&order=asc&after={page['last_id']}",
                          headers=api.auth("bob")).json()
    validate(rest, "ResponseItemList")
    assert [i["content"][0]["text"] for i in rest["data"]] == ["message 2", "message 3", "message 4"]
    assert rest["has_more"] is False and rest["first_id"] == rest["data"][0]["id"]
    desc = api.client.get(f"/v1/responses/{rid}/input_items", headers=api.auth("bob")).json()
    assert desc["data"][0]["content"][0]["text"] == "message 4"
    # another user (even an admin) cannot see, list, chain on or delete it
    for method, path in (("GET", f"/v1/responses/{rid}"), ("GET", f"/v1/responses/{rid}/input_items"),
                         ("DELETE", f"/v1/responses/{rid}")):
        other = api.client.request(method, path, headers=api.auth("alice"))
        assert other.status_code == 404 and other.json()["error"]["code"] == "not_found", other.text
    chained = post(api, {"model": MODEL, "input": "x", "previous_response_id": rid}, who="alice")
    assert chained.status_code == 404 and chained.json()["error"]["param"] == "previous_response_id"
    # the SDK: retrieve, delete, then 404
    client = sdk(api, "bob")
    assert client.responses.retrieve(rid).id == rid
    client.responses.delete(rid)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(rid)
    assert api.client.delete(f"/v1/responses/{rid}", headers=api.auth("bob")).status_code == 404


def test_chain_of_three_carries_the_whole_conversation(api):
    api.provider.outputs = ["one", "two", "three"]
    a = post(api, {"model": MODEL, "input": "first", "instructions": "only for the first"}).json()
    b = post(api, {"model": MODEL, "input": "second", "previous_response_id": a["id"]}).json()
    api.client.delete(f"/v1/responses/{a['id']}", headers=api.auth("bob"))  # an ancestor gone: b still continues
    c = post(api, {"model": MODEL, "input": "third", "previous_response_id": b["id"]})
    assert c.status_code == 200, c.text
    sent = api.provider.calls[-1]["messages"]
    # instructions are not carried over (as OpenAI documents)
    assert sent == [{"role": "user", "content": "first"}, {"role": "assistant", "content": "one"},
                    {"role": "user", "content": "second"}, {"role": "assistant", "content": "two"},
                    {"role": "user", "content": "third"}]


def test_storage_cap_evicts_the_oldest(api):
    api.services.responses.max_per_user = 3
    ids = [post(api, {"model": MODEL, "input": f"n{i}"}).json()["id"] for i in range(5)]
    codes = [api.client.get(f"/v1/responses/{i}", headers=api.auth("bob")).status_code for i in ids]
    assert codes == [404, 404, 200, 200, 200]
    assert api.services.responses.count(api.users["bob"]["id"]) == 3
    assert api.services.responses.count(api.users["alice"]["id"]) == 0  # nobody else's budget was touched


def test_agent_mode_steps_become_reasoning_items(api):
    api.provider.outputs = ['{"name": "math_calc", "arguments": {"expression": "6*7"}}',  # a forced call (grammar) as JSON
                            "The result is 42."]
    r = post(api, {"model": "scripted-model:react", "input": "Calculate 6*7"})
    assert r.status_code == 200, r.text
    body = r.json()
    validate(body, "Response")
    kinds = [i["type"] for i in body["output"]]
    assert kinds[-1] == "message" and "reasoning" in kinds
    step = next(i for i in body["output"] if i["type"] == "reasoning")
    assert "math_calc" in step["summary"][0]["text"] and "42" in step["summary"][0]["text"]  # the tool's result
    # a one-step computation is one model call: the answer is composed around the tool's exact result
    assert "42" in body["output_text"] and len(api.provider.calls) == 1
    assert body["agent"]["mode"] == "react" and body["agent"]["llm_calls"] == 1  # our extension field


def test_auto_routes_computation_to_the_code_path_and_its_program_is_a_reasoning_item(api):
    api.provider.outputs = ["```python\nprint(6 * 7)\n```"]
    r = post(api, {"model": "scripted-model", "input": "Calculate 6*7 for my homework"})
    assert r.status_code == 200, r.text
    body = r.json()
    validate(body, "Response")
    assert body["agent"]["mode"] == "code"
    step = next(i for i in body["output"] if i["type"] == "reasoning")
    assert "print(6 * 7)" in step["summary"][0]["text"] and "42" in step["summary"][0]["text"]  # program and its output
    assert "42" in body["output_text"]  # the sandbox's printed result is the answer


def test_agent_mode_streams_reasoning_events(api):
    api.provider.outputs = ['{"name": "math_calc", "arguments": {"expression": "2**10"}}',
                            "It is 1024."]
    r = post(api, {"model": "scripted-model:react", "input": "Calculate 2**10", "stream": True})
    events = sse(r.text)
    validate_events(events)
    kinds = [e["type"] for e in events]
    assert "response.reasoning_summary_text.delta" in kinds
    assert kinds.index("response.reasoning_summary_text.done") < kinds.index("response.output_text.delta")
    text = next(e for e in events if e["type"] == "response.reasoning_summary_text.done")["text"]
    assert "1024" in text
    assert "1024" in events[-1]["response"]["output_text"]  # the tool's exact result, composed by the server
    assert len(api.provider.calls) == 1  # one call for a one-step computation


def test_agent_mode_refuses_client_tools(api):
    r = post(api, {"model": "scripted-model:react", "input": "x", "tools": TOOLS})
    assert r.status_code == 400 and r.json()["error"]["param"] == "tools"


def test_max_output_tokens_hit_is_incomplete(api):
    from backend.llm.types import StreamEvent, Usage

    async def truncated(messages, params, constraint):
        yield StreamEvent(content="partial")
        yield StreamEvent(finish_reason="length", usage=Usage(3, 1))

    api.provider._stream_raw = truncated
    r = post(api, {"model": MODEL, "input": "x", "max_output_tokens": 1})
    body = r.json()
    validate(body, "Response")
    assert body["status"] == "incomplete" and body["incomplete_details"] == {"reason": "max_output_tokens"}
    s = post(api, {"model": MODEL, "input": "x", "max_output_tokens": 1, "stream": True})
    events = sse(s.text)
    validate_events(events)
    assert events[-1]["type"] == "response.incomplete"


def test_failure_mid_stream_is_response_failed(api):
    from backend.errors import UpstreamError
    from backend.llm.types import StreamEvent

    async def breaks(messages, params, constraint):
        yield StreamEvent(content="half an ans")
        raise UpstreamError("The model backend dropped the connection.")

    api.provider._stream_raw = breaks
    r = post(api, {"model": MODEL, "input": "x", "stream": True})
    events = sse(r.text)
    validate_events(events)
    last = events[-1]
    assert last["type"] == "response.failed" and last["response"]["status"] == "failed"
    assert last["response"]["error"] == {"code": "server_error", "message": "The model backend dropped the connection."}
    # before any output, a failure is a plain HTTP error
    api.provider._stream_raw = None
    del api.provider._stream_raw
    api.provider.fail = RuntimeError("secret internal detail")
    r = post(api, {"model": MODEL, "input": "x", "stream": True})
    assert r.status_code == 500 and "secret" not in r.text


@pytest.mark.parametrize(
    ("body", "status", "param", "code"),
    [
        ({"model": MODEL}, 400, "input", None),
        ({"input": "x"}, 400, "model", None),
        ({"model": "nope", "input": "x"}, 404, "model", "model_not_found"),
        ({"model": MODEL, "input": "x", "frobnicate": 1}, 400, "frobnicate", "unknown_parameter"),
        ({"model": MODEL, "input": "x", "background": True}, 400, "background", "unsupported_parameter"),
        ({"model": MODEL, "input": "x", "include": ["file_search_call.results"]}, 400, "include", "unsupported_parameter"),
        ({"model": MODEL, "input": "x", "truncation": "auto"}, 400, "truncation", "unsupported_parameter"),
        ({"model": MODEL, "input": "x", "conversation": "conv_1"}, 400, "conversation", "unsupported_parameter"),
        ({"model": MODEL, "input": "x", "reasoning": {"effort": "high"}}, 400, "reasoning.effort", None),
        ({"model": MODEL, "input": "x", "text": {"verbosity": "high"}}, 400, "text.verbosity", None),
        ({"model": MODEL, "input": "x", "temperature": 3}, 400, "temperature", None),
        ({"model": MODEL, "input": "x", "max_output_tokens": 0}, 400, "max_output_tokens", None),
        ({"model": MODEL, "input": "x", "metadata": {"k": "v" * 600}}, 400, "metadata", None),
        ({"model": MODEL, "input": []}, 400, "input", "empty_array"),
        ({"model": MODEL, "input": [42]}, 400, "input[0]", "invalid_type"),
        ({"model": MODEL, "input": [{"role": "wizard", "content": "x"}]}, 400, "input[0].role", None),
        ({"model": MODEL, "input": [{"role": "user"}]}, 400, "input[0].content", "missing_required_parameter"),
        ({"model": MODEL, "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "data:,"}]}]},
         400, "input[0].content[0].type", "unsupported_content"),
        ({"model": MODEL, "input": [{"type": "item_reference", "id": "msg_1"}]}, 400, "input[0].type", "unsupported_value"),
        ({"model": MODEL, "input": [{"type": "function_call_output", "call_id": "nope", "output": "x"}]},
         400, "input[0].call_id", None),
        ({"model": MODEL, "input": "x", "tools": [{"type": "web_search"}]}, 400, "tools[0].type", "unsupported_value"),
        ({"model": MODEL, "input": "x", "tools": [{"type": "function", "name": "bad name!"}]}, 400, "tools[0].name", None),
        ({"model": MODEL, "input": "x", "tool_choice": "required"}, 400, "tool_choice", None),
        ({"model": MODEL, "input": "x", "tools": TOOLS, "tool_choice": {"type": "function", "name": "missing"}},
         400, "tool_choice", None),
        ({"model": MODEL, "input": "x", "tools": TOOLS, "tool_choice": {"type": "mcp", "server_label": "x"}},
         400, "tool_choice.type", "unsupported_value"),
        ({"model": MODEL, "input": "x", "text": {"format": {"type": "json_schema", "schema": {}}}}, 400,
         "text.format.name", None),
        ({"model": MODEL, "input": "x", "text": {"format": {"type": "yaml"}}}, 400, "text.format.type", None),
        ({"model": MODEL, "input": "x", "previous_response_id": "resp_doesnotexist0000"}, 404, "previous_response_id", "not_found"),
        ({"model": MODEL, "input": "x", "previous_response_id": "../../etc/passwd"}, 404, "previous_response_id", "not_found"),
        ({"model": MODEL, "input": [{"role": "system", "content": "only a system message"}]}, 400, "input", None),
    ],
)
def test_bad_requests_are_openai_shaped(api, body, status, param, code):
    r = post(api, body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    validate(r.json(), "ErrorResponse")
    assert err["param"] == param or (param is not None and (err["param"] or "").startswith(param)), err
    if code is not None:
        assert err["code"] == code


def test_malformed_bodies_and_bad_ids(api):
    r = api.client.post("/v1/responses", content=b"{nope", headers=api.auth("bob") | {"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    r = api.client.post("/v1/responses", content=b"[1]", headers=api.auth("bob") | {"content-type": "application/json"})
    assert r.status_code == 400
    for bad in ("resp_..%2F..%2Fx", "nothing", "resp_" + "a" * 200):
        assert api.client.get(f"/v1/responses/{bad}", headers=api.auth("bob")).status_code == 404
    rid = post(api, {"model": MODEL, "input": "x"}).json()["id"]
    r = api.client.get(f"/v1/responses/{rid}/input_items?limit=0", headers=api.auth("bob"))
    assert r.status_code == 400
    r = api.client.get(f"/v1/responses/{rid}/input_items?after=msg_unknown", headers=api.auth("bob"))
    assert r.status_code == 400 and r.json()["error"]["param"] == "after"
    assert api.client.post("/v1/responses", json={"model": MODEL, "input": "x"}).status_code == 401


def test_account_export_and_delete_cover_responses(api):
    rid = post(api, {"model": MODEL, "input": "remember pelican"}).json()["id"]
    import io
    import zipfile

    raw = api.client.get("/api/account/export", headers=api.auth("bob")).content
    with zipfile.ZipFile(io.BytesIO(raw)) as zf:
        stored = json.loads(zf.read("responses.json"))
    assert [s["response"]["id"] for s in stored] == [rid]
    assert stored[0]["input_items"][0]["content"][0]["text"] == "remember pelican"
    r = api.client.delete("/api/account", headers=api.auth("bob"))
    assert r.status_code == 200 and r.json()["responses"] == 1
    assert not (api.services.settings.responses_path / api.users["bob"]["id"]).exists()


def test_langchain_chat_openai_over_responses(api):
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model=MODEL, base_url="http://testserver/v1", api_key=api.tokens["bob"], http_client=api.client,
                     use_responses_api=True, max_retries=0)
    reply = llm.invoke("hi")
    assert isinstance(reply, AIMessage) and reply.text == "Hello from the scripted model."
    assert reply.response_metadata.get("id", "").startswith("resp_") or reply.id.startswith(("resp_", "msg_"))
    chunks = list(llm.stream("hi"))
    assert "".join(c.text for c in chunks) == "Hello from the scripted model."
    # tools: the call comes back as a LangChain tool call, the result goes back as a function_call_output
    api.provider.outputs = ['{"name": "get_weather", "arguments": {"city": "Lima"}}', "Lima is foggy."]
    tool = {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                             "parameters": TOOLS[0]["parameters"]}}
    bound = ChatOpenAI(model="scripted-model", base_url="http://testserver/v1", api_key=api.tokens["bob"],
                       http_client=api.client, use_responses_api=True, max_retries=0).bind_tools(
        [tool], tool_choice="get_weather")
    first = bound.invoke([HumanMessage("Weather in Lima?")])
    [call] = first.tool_calls
    assert call["name"] == "get_weather" and call["args"] == {"city": "Lima"}
    final = bound.bind(tool_choice="auto").invoke(
        [HumanMessage("Weather in Lima?"), first, ToolMessage("foggy, 17C", tool_call_id=call["id"])])
    assert final.text == "Lima is foggy."
    assert api.provider.calls[-1]["messages"][-1] == {"role": "tool", "content": "foggy, 17C", "tool_call_id": call["id"]}


def _agents_client(api):
    import httpx
    from openai import AsyncOpenAI

    transport = httpx.ASGITransport(app=api.client.app)  # the app the TestClient started
    http = httpx.AsyncClient(transport=transport, base_url="http://testserver")
    return AsyncOpenAI(base_url="http://testserver/v1", api_key=api.tokens["bob"], http_client=http, max_retries=0)


@pytest.mark.parametrize("streamed", [False, True])
def test_openai_agents_sdk_runs_a_function_tool(api, streamed):
    import asyncio

    from agents import Agent, ModelSettings, Runner, function_tool, set_tracing_disabled
    from agents.models.openai_responses import OpenAIResponsesModel

    set_tracing_disabled(True)
    seen: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """Weather for a city."""
        seen.append(city)
        return f"sunny in {city}"

    api.provider.outputs = ['{"name": "get_weather", "arguments": {"city": "Paris"}}', "Paris is sunny today."]

    async def main():
        agent = Agent(name="weather", instructions="Use the tool.", tools=[get_weather],
                      model=OpenAIResponsesModel(model="scripted-model", openai_client=_agents_client(api)),
                      model_settings=ModelSettings(tool_choice="get_weather"))
        if not streamed:
            return await Runner.run(agent, "Weather in Paris?")
        run = Runner.run_streamed(agent, "Weather in Paris?")
        async for _ in run.stream_events():
            pass
        return run

    result = asyncio.run(main())
    assert seen == ["Paris"]  # the SDK parsed our function_call item and ran the tool
    assert result.final_output == "Paris is sunny today."
    # the second turn carried the tool's exact output back to the model
    sent = api.provider.calls[-1]["messages"]
    assert sent[-1] == {"role": "tool", "content": "sunny in Paris", "tool_call_id": sent[-2]["tool_calls"][0]["id"]}


def test_openai_agents_sdk_with_server_side_state(api):
    import asyncio

    from agents import Agent, Runner, set_tracing_disabled
    from agents.models.openai_responses import OpenAIResponsesModel

    set_tracing_disabled(True)
    api.provider.outputs = ["Nice to meet you, Ada.", "Your name is Ada."]

    async def main():
        agent = Agent(name="chat", instructions="Be brief.",
                      model=OpenAIResponsesModel(model=MODEL, openai_client=_agents_client(api)))
        first = await Runner.run(agent, "My name is Ada.")
        second = await Runner.run(agent, "What is my name?", previous_response_id=first.last_response_id)
        return first, second

    first, second = asyncio.run(main())
    assert first.last_response_id.startswith("resp_") and second.final_output == "Your name is Ada."
    sent = api.provider.calls[-1]["messages"]
    assert [m["content"] for m in sent if m["role"] != "system"] == [
        "My name is Ada.", "Nice to meet you, Ada.", "What is my name?"]


def test_rag_citations_become_file_citation_annotations(api):
    doc = b"Pelicans eat fish. The secret word is albatross.\n" * 5
    up = api.client.post("/api/files/upload", files=[("files", ("notes.txt", doc, "text/plain"))], headers=api.auth("bob"))
    assert up.status_code == 200, up.text
    entry = up.json()["data"][0]
    file_id = entry.get("id") or entry.get("file_id")
    api.provider.outputs = ["The secret word is albatross [1].", "The secret word is albatross [1]."]
    body = {"model": MODEL, "input": "What is the secret word?", "file_ids": [file_id]}
    r = post(api, body)
    assert r.status_code == 200, r.text
    validate(r.json(), "Response")
    part = r.json()["output"][0]["content"][0]
    assert part["annotations"] == [{"type": "file_citation", "file_id": file_id, "filename": "notes.txt",
                                    "index": part["text"].index("[1]")}]
    assert "albatross" in api.provider.calls[-1]["messages"][0]["content"]  # the passage was in the prompt
    events = sse(post(api, body | {"stream": True}).text)
    validate_events(events)
    added = [e for e in events if e["type"] == "response.output_text.annotation.added"]
    assert [a["annotation"]["file_id"] for a in added] == [file_id]
    assert events[-1]["response"]["output"][0]["content"][0]["annotations"] == part["annotations"]


def test_agent_sources_become_citations():
    from backend.responses.render import annotations_for

    text = "Paris is big, see https://example.org/paris. Also in notes.pdf."
    sources = [{"title": "Paris", "url": "https://example.org/paris"}, {"title": "Other", "url": "https://x.test/"},
               {"file_id": "file_abc12345", "filename": "notes.pdf", "page": 1, "text": "..."},
               {"file_id": "file_abc12345", "filename": "notes.pdf", "page": 2, "text": "..."}]
    out = annotations_for(text, sources)
    start = text.index("https://example.org/paris")
    assert out == [
        {"type": "url_citation", "url": "https://example.org/paris", "title": "Paris", "start_index": start,
         "end_index": start + len("https://example.org/paris")},
        {"type": "url_citation", "url": "https://x.test/", "title": "Other", "start_index": len(text),
         "end_index": len(text)},
        {"type": "file_citation", "file_id": "file_abc12345", "filename": "notes.pdf", "index": text.index("notes.pdf")},
    ]
    for a in out:
        validate(a, "Annotation")


def test_get_with_stream_is_refused_and_encrypted_reasoning_include_is_accepted(api):
    r = post(api, {"model": MODEL, "input": "x", "include": ["reasoning.encrypted_content"], "store": True})
    assert r.status_code == 200, r.text
    again = api.client.get(f"/v1/responses/{r.json()['id']}?stream=true", headers=api.auth("bob"))
    assert again.status_code == 400 and again.json()["error"]["param"] == "stream"


def test_storage_failure_after_a_stream_is_an_error_event(api, monkeypatch):
    from backend.errors import StorageError

    def full(*args, **kwargs):
        raise StorageError("The server could not save your data (storage full or read-only); nothing was changed.")

    monkeypatch.setattr(api.services.responses, "save", full)
    events = sse(post(api, {"model": MODEL, "input": "x", "stream": True}).text)
    validate_events(events)
    assert [e["type"] for e in events[-2:]] == ["response.completed", "error"]  # the answer was still delivered
    assert events[-1]["code"] == "storage_unavailable"
    r = post(api, {"model": MODEL, "input": "x"})
    assert r.status_code == 507 and r.json()["error"]["code"] == "storage_unavailable"


def test_sdk_paginates_input_items(api):
    items = [{"role": "user", "content": f"m{i}"} for i in range(7)]
    rid = post(api, {"model": MODEL, "input": items}).json()["id"]
    client = sdk(api, "bob")
    page = client.responses.input_items.list(rid, limit=3, order="asc")
    assert len(page.data) == 3 and page.has_more
    assert [i.content[0].text for i in page] == [f"m{i}" for i in range(7)]  # the SDK follows `after`


def test_agent_web_sources_become_url_citations(make_settings):
    """A ReAct run whose weather tool (against the replay server: a real recorded Open-Meteo answer)
    reports its source: the answer carries it as a url_citation annotation, the step as reasoning."""
    from fastapi.testclient import TestClient

    from backend.app import create_app
    from tests.conftest import PASSWORD, login
    from tests.fakes import ScriptedProvider
    from tests.fixtures.replay_server import ReplayServer

    script = ['{"name": "weather", "arguments": {"location": "Paris"}}', "It is overcast in Paris, 13 to 23 degrees."]
    provider = ScriptedProvider(script * 2)  # one run non-stream, one streamed
    body = {"model": "scripted-model:react", "input": "What's the weather in Paris?"}
    with ReplayServer() as replay:
        settings = make_settings(ssrf_allow_hosts=["127.0.0.1"], tool_http_timeout_s=5.0,
                                 weather_geocoding_url=replay.url("/geocoding/v1/search"),
                                 weather_forecast_url=replay.url("/forecast/v1/forecast"))
        with TestClient(create_app(settings, provider=provider), raise_server_exceptions=False) as client:
            client.app.state.services.users.create("bob", PASSWORD, "user")
            headers = {"Authorization": f"Bearer {login(client, 'bob')}"}
            r = client.post("/v1/responses", headers=headers, json=body)
            assert r.status_code == 200, r.text
            events = sse(client.post("/v1/responses", headers=headers, json=body | {"stream": True}).text)
    body = r.json()
    validate(body, "Response")
    steps = [i["summary"][0]["text"] for i in body["output"] if i["type"] == "reasoning"]
    assert any("weather" in s and "Overcast" in s for s in steps), steps  # the recorded forecast reached the step
    message = body["output"][-1]
    text = message["content"][0]["text"]
    assert message["content"][0]["annotations"] == [
        {"type": "url_citation", "url": "https://open-meteo.com/", "title": "Open-Meteo",
         "start_index": len(text), "end_index": len(text)}]
    validate_events(events)
    added = [e["annotation"] for e in events if e["type"] == "response.output_text.annotation.added"]
    assert [a["url"] for a in added] == ["https://open-meteo.com/"]
