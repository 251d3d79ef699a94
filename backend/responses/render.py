"""A chat run's events (``backend.chat.events``) → the Response object and its stream events.

``ResponseBuilder`` is fed the pipeline's events in order and returns the Responses stream events
each one causes (``response.output_item.added``, ``…output_text.delta``, ``…function_call_arguments.*``,
``…reasoning_summary_*``…), each numbered with ``sequence_number``. The non-stream body is the same
builder's final snapshot, so both paths produce the same ``output``:

* agent steps → ``reasoning`` items, one per step, the step's text as a ``summary_text``;
* answer text → one ``message`` item with an ``output_text`` part;
* tool calls → ``function_call`` items (``call_id`` is the call's id);
* sources → ``file_citation`` (uploaded documents) / ``url_citation`` (web pages) annotations.
"""

from __future__ import annotations

import copy
import re
import time
from typing import Any

from backend.chat.events import AgentMeta, ChatDone, ChatEvent, ChatResult, SourcesEvent, StepEvent
from backend.chat.render import step_text
from backend.errors import APIError
from backend.llm.types import StreamEvent, Usage
from backend.responses.translate import new_item_id

_MARKER_RE = re.compile(r"\[(\d{1,3})\]")


def usage_body(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.total_tokens,
    }


def annotations_for(text: str, sources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Citations for ``text``: a ``[n]`` marker naming a numbered RAG passage becomes a
    ``file_citation`` at the marker; sources the agents gathered (documents, web pages) are cited
    where the text names them, else at the end of the text, once each."""
    out: list[dict[str, Any]] = []
    numbered = {s["index"]: s for s in sources if isinstance(s.get("index"), int) and s.get("file_id")}
    if numbered:  # RAG-grounded chat: the answer cites passages by number
        for match in _MARKER_RE.finditer(text):
            source = numbered.get(int(match.group(1)))
            if source is not None:
                out.append(_file_citation(source, match.start()))
        return out
    seen: set[str] = set()
    for source in sources:
        if source.get("file_id"):
            key = "file:" + str(source["file_id"])
            if key in seen:
                continue
            seen.add(key)
            at = text.find(str(source.get("filename") or "\0"))
            out.append(_file_citation(source, at if at >= 0 else len(text)))
        elif isinstance(source.get("url"), str):
            url = source["url"]
            if "url:" + url in seen:
                continue
            seen.add("url:" + url)
            at = text.find(url)
            start, end = (at, at + len(url)) if at >= 0 else (len(text), len(text))
            out.append({"type": "url_citation", "url": url, "title": str(source.get("title") or url),
                        "start_index": start, "end_index": end})
    return out


def _file_citation(source: dict[str, Any], index: int) -> dict[str, Any]:
    return {"type": "file_citation", "file_id": str(source["file_id"]),
            "filename": str(source.get("filename") or source["file_id"]), "index": index}


class ResponseBuilder:
    def __init__(
        self, resp_id: str, echo: dict[str, Any], *, parallel_tool_calls: bool = True, agent_answers: bool = False
    ) -> None:
        self.id = resp_id
        self.agent_answers = agent_answers  # an agent's final answer replaces the streamed text
        self.created_at = int(time.time())
        self.echo = echo  # request fields the Response object reports back
        self.parallel_tool_calls = parallel_tool_calls
        self.output: list[dict[str, Any]] = []
        self.seq = 0
        self.status = "in_progress"
        self.error: dict[str, Any] | None = None
        self.incomplete: dict[str, Any] | None = None
        self.usage: Usage | None = None
        self.completed_at: int | None = None
        self.agent: dict[str, Any] | None = None  # our extension: which mode answered (as chat completions' `agent`)
        self._message: int | None = None  # output index of the open message item
        self._calls = 0

    # ------------------------------------------------------------------ objects
    def response(self) -> dict[str, Any]:
        text = "".join(
            part["text"] for item in self.output if item["type"] == "message"
            for part in item["content"] if part["type"] == "output_text"
        )
        body = {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": self.status,
            "completed_at": self.completed_at,
            "error": self.error,
            "incomplete_details": self.incomplete,
            "output": copy.deepcopy(self.output),
            "output_text": text,
            "usage": usage_body(self.usage) if self.usage is not None else None,
            **self.echo,
        }
        if body["usage"] is None:
            del body["usage"]
        if self.agent is not None:
            body["agent"] = self.agent
        return body

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        ev = {"type": kind, "sequence_number": self.seq, **fields}
        self.seq += 1
        return ev

    def start(self) -> list[dict[str, Any]]:
        return [self._event("response.created", response=self.response()),
                self._event("response.in_progress", response=self.response())]

    # ------------------------------------------------------------------ events
    def feed(self, ev: ChatEvent) -> list[dict[str, Any]]:
        """The stream events ``ev`` causes; ``ChatDone`` closes the response (``response.completed``)."""
        if isinstance(ev, ChatDone):
            return self.finish(ev.result)
        if isinstance(ev, StepEvent):
            return [*self._close_message(), *self._reasoning(step_text(ev.step).strip())]
        if isinstance(ev, StreamEvent):
            out: list[dict[str, Any]] = []
            if ev.content:
                out += self._text(ev.content)
            for call in ev.tool_calls or []:
                if self.parallel_tool_calls or self._calls == 0:
                    out += [*self._close_message(), *self._function_call(call.id, call.name, call.arguments)]
            if ev.usage is not None:
                self.usage = ev.usage
            return out
        if isinstance(ev, (AgentMeta, SourcesEvent)):
            return []  # the route decision is not a Responses item; sources are cited at the end
        return []

    def _reasoning(self, text: str) -> list[dict[str, Any]]:
        index = len(self.output)
        item: dict[str, Any] = {"id": new_item_id("rs"), "type": "reasoning", "summary": [], "status": "in_progress"}
        self.output.append(item)
        part = {"type": "summary_text", "text": text}
        events = [
            self._event("response.output_item.added", output_index=index, item=copy.deepcopy(item)),
            self._event("response.reasoning_summary_part.added", item_id=item["id"], output_index=index,
                        summary_index=0, part={"type": "summary_text", "text": ""}),
            self._event("response.reasoning_summary_text.delta", item_id=item["id"], output_index=index,
                        summary_index=0, delta=text),
            self._event("response.reasoning_summary_text.done", item_id=item["id"], output_index=index,
                        summary_index=0, text=text),
            self._event("response.reasoning_summary_part.done", item_id=item["id"], output_index=index,
                        summary_index=0, part=dict(part)),
        ]
        item["summary"] = [part]
        item["status"] = "completed"
        events.append(self._event("response.output_item.done", output_index=index, item=copy.deepcopy(item)))
        return events

    def _text(self, delta: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        if self._message is None:
            index = len(self.output)
            item: dict[str, Any] = {"id": new_item_id("msg"), "type": "message", "role": "assistant", "status": "in_progress",
                    "content": []}
            self.output.append(item)
            self._message = index
            events.append(self._event("response.output_item.added", output_index=index, item=copy.deepcopy(item)))
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            item["content"].append(part)
            events.append(self._event("response.content_part.added", item_id=item["id"], output_index=index,
                                      content_index=0, part=dict(part, annotations=[], logprobs=[])))
        item = self.output[self._message]  # the open message (set above)
        item["content"][0]["text"] += delta
        events.append(self._event("response.output_text.delta", item_id=item["id"], output_index=self._message,
                                  content_index=0, delta=delta, logprobs=[]))
        return events

    def _close_message(self, *, final_text: str | None = None, sources: list[dict[str, Any]] | None = None,
                       status: str = "completed") -> list[dict[str, Any]]:
        if self._message is None:
            return []
        index, self._message = self._message, None
        item = self.output[index]
        part = item["content"][0]
        if final_text is not None:
            part["text"] = final_text
        events = [self._event("response.output_text.done", item_id=item["id"], output_index=index,
                              content_index=0, text=part["text"], logprobs=[])]
        for n, annotation in enumerate(annotations_for(part["text"], sources or [])):
            part["annotations"].append(annotation)
            events.append(self._event("response.output_text.annotation.added", item_id=item["id"],
                                      output_index=index, content_index=0, annotation_index=n,
                                      annotation=annotation))
        events.append(self._event("response.content_part.done", item_id=item["id"], output_index=index,
                                  content_index=0, part=copy.deepcopy(part)))
        item["status"] = status
        events.append(self._event("response.output_item.done", output_index=index, item=copy.deepcopy(item)))
        return events

    def _function_call(self, call_id: str, name: str, arguments: str) -> list[dict[str, Any]]:
        self._calls += 1
        index = len(self.output)
        item = {"id": new_item_id("fc"), "type": "function_call", "status": "in_progress", "call_id": call_id,
                "name": name, "arguments": ""}
        self.output.append(item)
        events = [
            self._event("response.output_item.added", output_index=index, item=copy.deepcopy(item)),
            self._event("response.function_call_arguments.delta", item_id=item["id"], output_index=index,
                        delta=arguments),
            self._event("response.function_call_arguments.done", item_id=item["id"], output_index=index,
                        name=name, arguments=arguments),
        ]
        item["arguments"] = arguments
        item["status"] = "completed"
        events.append(self._event("response.output_item.done", output_index=index, item=copy.deepcopy(item)))
        return events

    # ------------------------------------------------------------------ end
    def finish(self, result: ChatResult) -> list[dict[str, Any]]:
        """Close the open items with the run's authoritative answer and citations; the final event."""
        truncated = result.finish_reason == "length"
        status = "incomplete" if truncated else "completed"
        events: list[dict[str, Any]] = []
        final_text = result.content if self.agent_answers and result.content else None
        if self._message is None and result.content and not any(i["type"] == "message" for i in self.output):
            events += self._text(result.content)  # an answer that arrived without deltas
        events += self._close_message(final_text=final_text, sources=result.sources, status=status)
        self.usage = result.usage
        if result.agent is not None:
            self.agent = {**result.agent.to_dict(), "llm_calls": result.llm_calls}
        self.status = status
        if truncated:
            self.incomplete = {"reason": "max_output_tokens"}
        self.completed_at = int(time.time()) if status == "completed" else None
        kind = "response.incomplete" if truncated else "response.completed"
        events.append(self._event(kind, response=self.response()))
        return events

    def fail(self, exc: BaseException) -> list[dict[str, Any]]:
        if isinstance(exc, APIError):
            code = "rate_limit_exceeded" if exc.status_code == 429 else (
                "invalid_prompt" if exc.status_code == 400 else "server_error")
            message = exc.message
        else:
            code, message = "server_error", "The server had an error while generating the response."
        events = self._close_message(status="incomplete")
        self.status = "failed"
        self.error = {"code": code, "message": message}
        events.append(self._event("response.failed", response=self.response()))
        return events
