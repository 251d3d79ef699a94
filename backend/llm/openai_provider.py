"""An OpenAI-compatible upstream through the official ``openai`` SDK.

The upstream enforces ``tool_choice`` and ``response_format`` itself (``native_tool_calls``);
streamed tool-call deltas are assembled into whole ``ToolCall`` objects. No SDK retries: the
client of this server decides; upstream failures map onto 502/503/504 with clear messages.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from backend.errors import (
    APIError,
    BadRequestError,
    ContextLengthExceededError,
    ServiceUnavailableError,
    UpstreamError,
    UpstreamTimeoutError,
)
from backend.llm.base import JsonConstraint, LLMProvider
from backend.llm.tool_calling import new_call_id
from backend.llm.types import Completion, GenerationParams, Message, StreamEvent, ToolCall, Usage
from backend.settings import Settings

if TYPE_CHECKING:
    from openai import AsyncOpenAI

log = logging.getLogger("backend.llm.openai")


def _base_label(url: str) -> str:
    """The upstream's address without credentials or query (safe for logs and health)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}".rstrip("/")


def _retry_after(headers: Any, default: int = 5) -> int:
    try:
        return max(1, int(float(headers.get("retry-after"))))
    except (TypeError, ValueError, AttributeError):
        return default


def penalty_fields(params: GenerationParams) -> dict[str, float]:
    """The penalties the caller set, passed on under OpenAI's own names."""
    return {
        k: v
        for k, v in (("presence_penalty", params.presence_penalty), ("frequency_penalty", params.frequency_penalty))
        if v is not None
    }


class _CallAssembler:
    """Joins streamed ``delta.tool_calls`` fragments (by index) into whole calls."""

    def __init__(self) -> None:
        self._calls: dict[int, dict[str, Any]] = {}

    def add(self, deltas: Any) -> None:
        for d in deltas or []:
            slot = self._calls.setdefault(d.index or 0, {"id": None, "name": "", "arguments": []})
            if d.id:
                slot["id"] = d.id
            fn = d.function
            if fn is not None:
                if fn.name:
                    slot["name"] += fn.name
                if fn.arguments:
                    slot["arguments"].append(fn.arguments)

    def calls(self) -> list[ToolCall]:
        out = []
        for _, slot in sorted(self._calls.items()):
            if not slot["name"]:
                raise UpstreamError("The upstream sent a tool call without a function name.")
            args = "".join(slot["arguments"]) or "{}"
            out.append(ToolCall(id=slot["id"] or new_call_id(), name=slot["name"], arguments=args))
        return out


class OpenAIProvider(LLMProvider):
    name = "openai"
    native_tool_calls = True
    supports_complete = True

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.parallel = max(1, settings.openai_parallel)
        self.base_label = _base_label(settings.openai_base_url)
        self._client: AsyncOpenAI | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    @property
    def model_id(self) -> str:
        return self.settings.openai_model

    def client(self) -> AsyncOpenAI:
        loop = asyncio.get_running_loop()
        if self._client is not None and self._client_loop is not loop:
            self._client = None  # its connections belong to a loop that is gone
        if self._client is None:
            self._client_loop = loop
            from openai import AsyncOpenAI

            key = self.settings.openai_api_key.get_secret_value() if self.settings.openai_api_key else "not-needed"
            self._client = AsyncOpenAI(
                base_url=self.settings.openai_base_url,
                api_key=key,
                timeout=self.settings.openai_timeout_s,
                max_retries=0,
            )
        return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._client_loop is asyncio.get_running_loop():
            await client.close()

    # ------------------------------------------------------------ errors
    def _map_error(self, exc: BaseException, *, started: bool = False) -> APIError:
        import openai

        where = f"The upstream model service ({self.base_label})"
        if isinstance(exc, APIError):
            return exc
        if isinstance(exc, openai.APITimeoutError):
            return UpstreamTimeoutError(f"{where} did not answer in time.")
        if isinstance(exc, openai.APIConnectionError):
            if started:
                return UpstreamError(f"{where} broke the connection mid-answer.")
            return ServiceUnavailableError(f"{where} is not reachable.", retry_after=5)
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            detail = _upstream_message(exc)
            if status == 429:
                return ServiceUnavailableError(
                    f"{where} is rate limiting requests: {detail}", retry_after=_retry_after(exc.response.headers)
                )
            if status in (401, 403):
                return UpstreamError(f"{where} rejected this server's credentials (check OPENAI_API_KEY).")
            if status == 404:
                return UpstreamError(f"{where} does not know model '{self.model_id}': {detail}", code="model_not_found")
            if status in (400, 422):
                code = _upstream_code(exc)
                if code == "context_length_exceeded":
                    return ContextLengthExceededError(detail, param="messages")
                return BadRequestError(f"{where} rejected the request: {detail}", param=_upstream_param(exc))
            if status == 503:
                return ServiceUnavailableError(f"{where} is unavailable: {detail}", retry_after=_retry_after(exc.response.headers))
            return UpstreamError(f"{where} failed with HTTP {status}: {detail}")
        if isinstance(exc, (openai.APIError, json.JSONDecodeError)):
            return UpstreamError(f"{where} sent a malformed or failed stream: {exc}")
        return UpstreamError(f"{where} failed unexpectedly: {type(exc).__name__}.")

    # ------------------------------------------------------------ health
    async def health(self) -> dict[str, Any]:
        info: dict[str, Any] = {"ok": False, "model": self.model_id, "provider": self.name, "base_url": self.base_label}
        try:
            page = await self.client().with_options(timeout=10.0).models.list()
            ids = [m.id for m in page.data]
            info["ok"] = True
            if ids and self.model_id not in ids:
                info["ok"], info["error"] = False, f"model '{self.model_id}' is not offered by the upstream"
        except Exception as exc:  # noqa: BLE001 - health never raises
            info["error"] = self._map_error(exc).message
        return info

    # ------------------------------------------------------------ generation
    def _request(self, messages: list[Message], params: GenerationParams) -> dict[str, Any]:
        req: dict[str, Any] = {
            "model": self.model_id,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": params.max_tokens or self.settings.default_max_tokens,
        }
        if params.temperature is not None:
            req["temperature"] = params.temperature
        if params.top_p is not None:
            req["top_p"] = params.top_p
        if params.stop:
            req["stop"] = list(params.stop)
        if params.seed is not None:
            req["seed"] = params.seed
        req.update(penalty_fields(params))
        if params.response_format:
            req["response_format"] = params.response_format
        if params.tools:
            req["tools"] = params.tools
            if params.tool_choice is not None:
                req["tool_choice"] = params.tool_choice
        return req

    async def _complete_raw(
        self, messages: list[Message], params: GenerationParams, constraint: JsonConstraint | None
    ) -> Completion:
        req = self._request(messages, params)
        req.pop("stream")
        req.pop("stream_options")
        try:
            resp = await self.client().chat.completions.create(**req)
        except Exception as exc:
            # a refused connection is "not reachable" (503); one that broke after the request went out is a 502
            cause = exc.__cause__
            started = cause is not None and type(cause).__name__ not in ("ConnectError", "ConnectTimeout")
            raise self._map_error(exc, started=started) from exc
        if not resp.choices:
            raise UpstreamError(f"The upstream model service ({self.base_label}) returned no choices.")
        choice = resp.choices[0]
        msg = choice.message
        calls = [
            ToolCall(id=tc.id or new_call_id(), name=tc.function.name, arguments=tc.function.arguments or "{}")
            for tc in (msg.tool_calls or [])
            if getattr(tc, "function", None) is not None
        ]
        if resp.usage is not None:
            usage = Usage(resp.usage.prompt_tokens or 0, resp.usage.completion_tokens or 0)
        else:
            prompt = sum(self.count_tokens(str(m.get("content") or "")) for m in messages)
            usage = Usage(prompt, self.count_tokens(msg.content or "") if msg.content else 0)
        finish = choice.finish_reason or "stop"
        if finish == "function_call":
            finish = "tool_calls"
        return Completion(content=msg.content, tool_calls=calls, finish_reason=finish, usage=usage)

    async def _stream_raw(
        self,
        messages: list[Message],
        params: GenerationParams,
        constraint: JsonConstraint | None,
    ) -> AsyncIterator[StreamEvent]:
        req = self._request(messages, params)
        assembler = _CallAssembler()
        finish: str | None = None
        usage: Usage | None = None
        text: list[str] = []
        started = False
        stream: Any = None
        try:
            stream = await self.client().chat.completions.create(**req)
            async for chunk in stream:
                started = True
                if chunk.usage is not None:
                    usage = Usage(chunk.usage.prompt_tokens or 0, chunk.usage.completion_tokens or 0)
                for choice in chunk.choices or []:
                    delta = choice.delta
                    if delta is not None and delta.content:
                        text.append(delta.content)
                        yield StreamEvent(content=delta.content)
                    if delta is not None and delta.tool_calls:
                        assembler.add(delta.tool_calls)
                    if choice.finish_reason:
                        finish = choice.finish_reason
        except Exception as exc:
            raise self._map_error(exc, started=started) from exc
        finally:
            if stream is not None:
                await stream.close()
        if finish is None:
            raise UpstreamError(f"The upstream model service ({self.base_label}) ended the stream without finishing.")
        calls = assembler.calls()
        if usage is None:  # some compatible servers ignore stream_options
            prompt = sum(self.count_tokens(str(m.get("content") or "")) for m in messages)
            usage = Usage(prompt, self.count_tokens("".join(text)) if text else 0)
        if finish == "function_call":
            finish = "tool_calls"
        yield StreamEvent(tool_calls=calls or None, finish_reason=finish, usage=usage)

    # ------------------------------------------------------------ raw text completion (/v1/completions)
    supports_text_completion = True
    supports_suffix = True

    async def _stream_text_raw(
        self, prompt: str, params: GenerationParams, suffix: str | None
    ) -> AsyncIterator[StreamEvent]:
        """The upstream's own ``/completions`` (``suffix`` passed on; an upstream without it says 400)."""
        req: dict[str, Any] = {
            "model": self.model_id,
            "prompt": prompt,
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": params.max_tokens or self.settings.default_max_tokens,
            **penalty_fields(params),
        }
        sampling = {"temperature": params.temperature, "top_p": params.top_p, "seed": params.seed}
        req.update({key: value for key, value in sampling.items() if value is not None})
        if params.stop:
            req["stop"] = list(params.stop)
        if suffix is not None:
            req["suffix"] = suffix
        finish: str | None = None
        usage: Usage | None = None
        text: list[str] = []
        started = False
        stream: Any = None
        try:
            stream = await self.client().completions.create(**req)
            async for chunk in stream:
                started = True
                if chunk.usage is not None:
                    usage = Usage(chunk.usage.prompt_tokens or 0, chunk.usage.completion_tokens or 0)
                for choice in chunk.choices or []:
                    if choice.text:
                        text.append(choice.text)
                        yield StreamEvent(content=choice.text)
                    if choice.finish_reason:
                        finish = choice.finish_reason
        except Exception as exc:
            raise self._map_error(exc, started=started) from exc
        finally:
            if stream is not None:
                await stream.close()
        if finish is None:
            raise UpstreamError(f"The upstream model service ({self.base_label}) ended the stream without finishing.")
        if usage is None:
            usage = Usage(self.count_tokens(prompt + (suffix or "")), self.count_tokens("".join(text)) if text else 0)
        yield StreamEvent(finish_reason=finish, usage=usage)


def _error_obj(exc: Any) -> dict[str, Any]:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            return inner
    return {}


def _upstream_message(exc: Any) -> str:
    msg = _error_obj(exc).get("message")
    return str(msg) if msg else f"HTTP {getattr(exc, 'status_code', '?')}"


def _upstream_code(exc: Any) -> str | None:
    code = _error_obj(exc).get("code")
    return str(code) if code else None


def _upstream_param(exc: Any) -> str | None:
    param = _error_obj(exc).get("param")
    return str(param) if param else None
