"""A Responses request → the chat pipeline's request (``ChatCompletionRequest``), and back.

* ``input_items``: ``input`` (a string or a list of items) → stored item resources with ids
  (``message``, ``function_call``, ``function_call_output``, ``reasoning``), checked one by one.
* ``items_to_messages``: items → OpenAI chat messages (function calls join the assistant turn,
  outputs become ``tool`` messages, reasoning items are not replayed to the model).
* ``to_chat_request``: the whole request (history from ``previous_response_id`` + instructions +
  input; tools, tool_choice, text.format, sampling) as the pipeline's input.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from pydantic import ValidationError

from backend.chat.schemas import ChatCompletionRequest
from backend.errors import BadRequestError, validation_error
from backend.modes import Mode, parse_model_id
from backend.responses.schemas import ResponsesRequest, TextParam

_ITEM_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_TEXT_PARTS = {"input_text", "output_text"}
_UNSUPPORTED_PARTS = {"input_image", "input_file", "input_audio"}


def new_item_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def _bad(message: str, param: str, code: str = "invalid_value") -> BadRequestError:
    return BadRequestError(message, param=param, code=code)


def _str(value: Any, param: str, *, empty_ok: bool = True, max_len: int = 10_485_760) -> str:
    if not isinstance(value, str):
        raise _bad(f"Invalid type for '{param}': expected a string.", param, "invalid_type")
    if not empty_ok and not value:
        raise _bad(f"'{param}' must not be empty.", param)
    if len(value) > max_len:
        raise _bad(f"'{param}' is too long ({len(value)} characters; limit {max_len}).", param, "string_above_max_length")
    return value


def _item_id(item: dict[str, Any], prefix: str) -> str:
    given = item.get("id")
    return given if isinstance(given, str) and _ITEM_ID_RE.fullmatch(given) else new_item_id(prefix)


def _text_parts(content: Any, param: str, role: str) -> list[dict[str, Any]]:
    """A message's content as stored parts: ``input_text`` (user/system/developer) or ``output_text``."""
    out_type = "output_text" if role == "assistant" else "input_text"
    if isinstance(content, str):
        return [_part(out_type, content)]
    if not isinstance(content, list):
        raise _bad(f"Invalid type for '{param}': expected a string or a list of content parts.", param, "invalid_type")
    parts = []
    for j, part in enumerate(content):
        where = f"{param}[{j}]"
        if not isinstance(part, dict):
            raise _bad(f"Invalid type for '{where}': expected an object.", where, "invalid_type")
        kind = part.get("type")
        if kind in _TEXT_PARTS:
            parts.append(_part(out_type, _str(part.get("text"), f"{where}.text")))
        elif kind == "refusal" and role == "assistant":
            parts.append({"type": "refusal", "refusal": _str(part.get("refusal"), f"{where}.refusal")})
        elif kind in _UNSUPPORTED_PARTS:
            raise _bad(f"Content parts of type '{kind}' are not supported by this server's models; send text.",
                       f"{where}.type", "unsupported_content")
        else:
            raise _bad(f"Invalid content part type {kind!r} for a {role} message.", f"{where}.type")
    return parts


def _part(kind: str, text: str) -> dict[str, Any]:
    if kind == "output_text":
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    return {"type": "input_text", "text": text}


def _message_item(item: dict[str, Any], param: str) -> dict[str, Any]:
    role = item.get("role")
    if role not in ("user", "system", "developer", "assistant"):
        raise _bad(f"Invalid value for '{param}.role': expected 'user', 'assistant', 'system' or 'developer'.",
                   f"{param}.role")
    if "content" not in item:
        raise _bad(f"Missing required parameter: '{param}.content'.", f"{param}.content", "missing_required_parameter")
    parts = _text_parts(item["content"], f"{param}.content", role)
    out = {"id": _item_id(item, "msg"), "type": "message", "role": role, "content": parts, "status": "completed"}
    return out


def _function_call_item(item: dict[str, Any], param: str) -> dict[str, Any]:
    call_id = _str(item.get("call_id"), f"{param}.call_id", empty_ok=False, max_len=128)
    name = _str(item.get("name"), f"{param}.name", empty_ok=False, max_len=64)
    if not _NAME_RE.fullmatch(name):
        raise _bad(f"Invalid '{param}.name': letters, digits, '_' and '-' only.", f"{param}.name")
    arguments = _str(item.get("arguments"), f"{param}.arguments")
    return {"id": _item_id(item, "fc"), "type": "function_call", "call_id": call_id, "name": name,
            "arguments": arguments, "status": "completed"}


def _function_output_item(item: dict[str, Any], param: str) -> dict[str, Any]:
    call_id = _str(item.get("call_id"), f"{param}.call_id", empty_ok=False, max_len=128)
    output = item.get("output")
    if isinstance(output, list):
        _text_parts(output, f"{param}.output", "user")  # text parts only
    elif not isinstance(output, str):
        raise _bad(f"Invalid type for '{param}.output': expected a string or a list of input_text parts.",
                   f"{param}.output", "invalid_type")
    return {"id": _item_id(item, "fco"), "type": "function_call_output", "call_id": call_id, "output": output,
            "status": "completed"}


def _reasoning_item(item: dict[str, Any], param: str) -> dict[str, Any]:
    summary = item.get("summary") or []
    if not isinstance(summary, list):
        raise _bad(f"Invalid type for '{param}.summary': expected a list.", f"{param}.summary", "invalid_type")
    texts = []
    for j, part in enumerate(summary):
        if not isinstance(part, dict):
            raise _bad(f"Invalid type for '{param}.summary[{j}]': expected an object.", f"{param}.summary[{j}]", "invalid_type")
        texts.append({"type": "summary_text", "text": _str(part.get("text", ""), f"{param}.summary[{j}].text")})
    return {"id": _item_id(item, "rs"), "type": "reasoning", "summary": texts}


def input_items(value: str | list[Any], max_items: int) -> list[dict[str, Any]]:
    """``input`` → item resources (with ids) as stored and listed by ``/input_items``."""
    if isinstance(value, str):
        return [{"id": new_item_id("msg"), "type": "message", "role": "user",
                 "content": [_part("input_text", value)], "status": "completed"}]
    if not value:
        raise _bad("'input' must not be empty.", "input", "empty_array")
    if len(value) > max_items:
        raise _bad(f"Too many input items ({len(value)}); the limit is {max_items}.", "input", "array_above_max_length")
    out = []
    for i, item in enumerate(value):
        param = f"input[{i}]"
        if not isinstance(item, dict):
            raise _bad(f"Invalid type for '{param}': expected an object.", param, "invalid_type")
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            out.append(_message_item(item, param))
        elif kind == "function_call":
            out.append(_function_call_item(item, param))
        elif kind == "function_call_output":
            out.append(_function_output_item(item, param))
        elif kind == "reasoning":
            out.append(_reasoning_item(item, param))
        elif kind is None:
            raise _bad(f"Missing required parameter: '{param}.type'.", f"{param}.type", "missing_required_parameter")
        else:
            raise _bad(f"Input items of type '{kind}' are not supported by this server "
                       "(supported: message, function_call, function_call_output, reasoning).", f"{param}.type",
                       "unsupported_value")
    return out


def _content_text(parts: Any) -> str:
    if isinstance(parts, str):
        return parts
    return "\n".join(p.get("text") or p.get("refusal") or "" for p in parts)


def items_to_messages(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stored items → chat messages; consecutive function calls form one assistant turn."""
    messages: list[dict[str, Any]] = []
    for item in items:
        kind = item["type"]
        if kind == "message":
            text = _content_text(item["content"])
            messages.append({"role": item["role"], "content": text})
        elif kind == "function_call":
            call = {"id": item["call_id"], "type": "function",
                    "function": {"name": item["name"], "arguments": item["arguments"]}}
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": _content_text(item["output"])})
    for msg in messages:  # an assistant turn that is only calls has no text
        if msg["role"] == "assistant" and msg.get("tool_calls") and not msg["content"]:
            msg["content"] = None
    return messages


def _check_outputs_match_calls(history: list[dict[str, Any]], items: list[dict[str, Any]]) -> None:
    calls = {it["call_id"] for it in (*history, *items) if it["type"] == "function_call"}
    for i, item in enumerate(items):
        if item["type"] == "function_call_output" and item["call_id"] not in calls:
            raise _bad(f"No tool call found for function call output with call_id {item['call_id']}.",
                       f"input[{i}].call_id")


def chat_tools(tools: list[Any] | None) -> list[dict[str, Any]] | None:
    """Responses function tools (flat) → chat tools (nested ``function``); other tool types are a 400."""
    if not tools:
        return None
    out = []
    for i, tool in enumerate(tools):
        param = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise _bad(f"Invalid type for '{param}': expected an object.", param, "invalid_type")
        if tool.get("type") != "function":
            raise _bad(f"Tools of type {tool.get('type')!r} are not supported by this server; send function tools "
                       "(the server's own tools are used through the agent model ids).", f"{param}.type",
                       "unsupported_value")
        name = tool.get("name")
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            raise _bad(f"Invalid '{param}.name': 1-64 letters, digits, '_' or '-'.", f"{param}.name")
        params = tool.get("parameters")
        if params is not None and not isinstance(params, dict):
            raise _bad(f"Invalid type for '{param}.parameters': expected an object.", f"{param}.parameters", "invalid_type")
        description = tool.get("description")
        if description is not None and not isinstance(description, str):
            raise _bad(f"Invalid type for '{param}.description': expected a string.", f"{param}.description", "invalid_type")
        unknown = set(tool) - {"type", "name", "description", "parameters", "strict"}
        if unknown:
            key = sorted(unknown)[0]
            raise _bad(f"Unknown parameter: '{param}.{key}'.", f"{param}.{key}", "unknown_parameter")
        fn = {"name": name, "description": description, "parameters": params, "strict": tool.get("strict")}
        out.append({"type": "function", "function": {k: v for k, v in fn.items() if v is not None}})
    return out


def echo_tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The tools as the Response object reports them (``FunctionTool``)."""
    out = []
    for tool in tools or []:
        fn = tool["function"]
        out.append({"type": "function", "name": fn["name"], "description": fn.get("description"),
                    "parameters": fn.get("parameters"), "strict": fn.get("strict")})
    return out


def chat_tool_choice(choice: Any, tools: list[dict[str, Any]] | None) -> tuple[Any, list[dict[str, Any]] | None]:
    """Responses ``tool_choice`` → chat ``tool_choice`` (and tools narrowed by ``allowed_tools``)."""
    if choice is None or isinstance(choice, str):
        if choice not in (None, "auto", "none", "required"):
            raise _bad("Invalid value for 'tool_choice': expected 'none', 'auto' or 'required'.", "tool_choice")
        return choice, tools
    kind = choice.get("type")
    if kind == "function":
        name = choice.get("name")
        if not isinstance(name, str):
            raise _bad("Missing required parameter: 'tool_choice.name'.", "tool_choice.name", "missing_required_parameter")
        return {"type": "function", "function": {"name": name}}, tools
    if kind == "allowed_tools":
        mode = choice.get("mode")
        listed = choice.get("tools")
        if mode not in ("auto", "required") or not isinstance(listed, list):
            raise _bad("tool_choice.allowed_tools needs 'mode' ('auto' or 'required') and a 'tools' list.", "tool_choice")
        names = set()
        for j, entry in enumerate(listed):
            if not isinstance(entry, dict) or entry.get("type") != "function" or not isinstance(entry.get("name"), str):
                raise _bad("Only function tools can be allowed here.", f"tool_choice.tools[{j}]", "unsupported_value")
            names.add(entry["name"])
        narrowed = [t for t in tools or [] if t["function"]["name"] in names]
        missing = names - {t["function"]["name"] for t in narrowed}
        if missing:
            raise _bad(f"tool_choice allows '{sorted(missing)[0]}', which is not in 'tools'.", "tool_choice.tools")
        return mode, narrowed
    raise _bad(f"tool_choice of type {kind!r} is not supported by this server.", "tool_choice.type", "unsupported_value")


def response_format(text: TextParam | None) -> dict[str, Any] | None:
    """``text.format`` → the pipeline's ``response_format``."""
    fmt = text.format if text is not None else None
    if fmt is None:
        return None
    kind = fmt.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        name = fmt.get("name")
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            raise _bad("'text.format.name' is required: 1-64 letters, digits, '_' or '-'.", "text.format.name")
        schema = fmt.get("schema")
        if not isinstance(schema, dict):
            raise _bad("'text.format.schema' must be a JSON schema object.", "text.format.schema")
        spec: dict[str, Any] = {"name": name, "schema": schema}
        if fmt.get("strict") is not None:
            spec["strict"] = bool(fmt["strict"])
        if isinstance(fmt.get("description"), str):
            spec["description"] = fmt["description"]
        return {"type": "json_schema", "json_schema": spec}
    raise _bad("Invalid value for 'text.format.type': expected 'text', 'json_object' or 'json_schema'.",
               "text.format.type")


def echo_text(text: TextParam | None) -> dict[str, Any]:
    fmt = text.format if text is not None else None
    return {"format": fmt or {"type": "text"}, "verbosity": "medium"}


def to_chat_request(
    req: ResponsesRequest, history: list[dict[str, Any]], items: list[dict[str, Any]], base_ids: list[str],
    max_tokens_limit: int | None = None,
) -> tuple[ChatCompletionRequest, list[dict[str, Any]] | None]:
    """The pipeline's request for this Responses request; also the chat tools (for the echo)."""
    _, mode = parse_model_id(req.model, base_ids)  # 404 for an unknown model, before any work
    _check_outputs_match_calls(history, items)
    tools = chat_tools(req.tools)
    tool_choice, tools = chat_tool_choice(req.tool_choice, tools)
    fmt = response_format(req.text)
    if mode not in (Mode.AUTO, Mode.CHAT) and (tools or fmt):
        raise _bad(f"Function tools and text.format need the model's chat mode ('{req.model.split(':')[0]}' or "
                   f"'…:chat'); agent model ids use the server's own tools.", "tools" if tools else "text.format",
                   "unsupported_value")
    messages = items_to_messages([*history, *items])
    if req.instructions:
        messages.insert(0, {"role": "system", "content": req.instructions})
    if not any(m["role"] in ("user", "tool") for m in messages):
        raise _bad("The input needs a user message (or a function_call_output).", "input")
    body: dict[str, Any] = {
        "model": req.model,
        "messages": messages,
        "stream": bool(req.stream),
        "temperature": req.temperature,
        "top_p": req.top_p,
        "max_completion_tokens": req.max_output_tokens,
        "response_format": fmt,
        "tools": tools,
        "tool_choice": tool_choice if tools else None,
        "parallel_tool_calls": req.parallel_tool_calls,
        "user": req.user,
        "file_ids": req.file_ids,
        "use_documents": req.use_documents,
    }
    if tool_choice not in (None, "auto", "none") and not tools:
        raise _bad("tool_choice requires 'tools' to be set.", "tool_choice")
    try:
        chat = ChatCompletionRequest.model_validate({k: v for k, v in body.items() if v is not None},
                                                    context={"max_tokens_limit": max_tokens_limit})
    except ValidationError as exc:
        raise validation_error(exc) from None
    return chat, tools
