"""An OpenAI-compatible upstream (OpenAI, vLLM, llama.cpp server, LiteLLM, ...).

Chat completions (streamed and not) go out as plain HTTP calls on one pooled ``aiohttp`` session:
the request is already a JSON-ready dict and the answer is read as JSON, so the official ``openai``
SDK's per-call work (request transformation, typed response models) is skipped on the hot path, and
aiohttp's C HTTP parser costs ~0.3 ms of CPU per call where httpx's pure-Python stack costs ~1.4 ms
(``bench/api_profile.py``, measured on this machine). The SDK stays for the rest (``/models`` in
health, text completions). Both paths map failures the same way, in ``_map_status`` and
``_map_error``. The upstream enforces ``tool_choice`` and ``response_format`` itself
(``native_tool_calls``); streamed tool-call deltas are assembled into whole ``ToolCall`` objects.
No retries: the client of this server decides; upstream failures map onto 502/503/504 with clear
messages.
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
    import aiohttp
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
        """``deltas``: the ``delta.tool_calls`` list of one chunk, as JSON (dicts)."""
        for d in deltas or []:
            if not isinstance(d, dict):
                raise UpstreamError("The upstream sent a malformed tool-call delta.")
            slot = self._calls.setdefault(d.get("index") or 0, {"id": None, "name": "", "arguments": []})
            if d.get("id"):
                slot["id"] = d["id"]
            fn = d.get("function")
            if isinstance(fn, dict):
                if fn.get("name"):
                    slot["name"] += fn["name"]
                if fn.get("arguments"):
                    slot["arguments"].append(fn["arguments"])

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
        self._http: aiohttp.ClientSession | None = None
        self._http_loop: asyncio.AbstractEventLoop | None = None
        self._chat_url = settings.openai_base_url.rstrip("/") + "/chat/completions"

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

            self._client = AsyncOpenAI(
                base_url=self.settings.openai_base_url,
                api_key=self._api_key(),
                timeout=self.settings.openai_timeout_s,
                max_retries=0,
            )
        return self._client

    def _api_key(self) -> str:
        return self.settings.openai_api_key.get_secret_value() if self.settings.openai_api_key else "not-needed"

    def http(self) -> aiohttp.ClientSession:
        """The pooled HTTP session of the hot path (one per event loop, like ``client()``)."""
        loop = asyncio.get_running_loop()
        if self._http is not None and self._http_loop is not loop:
            self._http = None  # its connections belong to a loop that is gone
        if self._http is None:
            import aiohttp

            self._http_loop = loop
            timeout_s = self.settings.openai_timeout_s  # per connect and per read, as the SDK applies it
            self._http = aiohttp.ClientSession(
                headers={"Authorization": f"Bearer {self._api_key()}", "Content-Type": "application/json",
                         "Accept": "application/json"},
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=timeout_s, sock_read=timeout_s),
                connector=aiohttp.TCPConnector(limit=1000, limit_per_host=0),  # the SDK's pool size
                trust_env=False,
                read_bufsize=1 << 20,  # one SSE line (a big tool-call chunk) may exceed the 64 KiB default
            )
        return self._http

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._client_loop is asyncio.get_running_loop():
            await client.close()
        http, self._http = self._http, None
        if http is not None and self._http_loop is asyncio.get_running_loop():
            await http.close()

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
            return self._map_status(exc.status_code, getattr(exc, "body", None), exc.response.headers)
        if isinstance(exc, (openai.APIError, json.JSONDecodeError)):
            return UpstreamError(f"{where} sent a malformed or failed stream: {exc}")
        return UpstreamError(f"{where} failed unexpectedly: {type(exc).__name__}.")

    def _map_status(self, status: int, body: Any, headers: Any) -> APIError:
        """An upstream HTTP error status (``body``: its parsed JSON, if any) as our error."""
        where = f"The upstream model service ({self.base_label})"
        err = _error_obj(body)
        detail = str(err["message"]) if err.get("message") else f"HTTP {status}"
        if status == 429:
            return ServiceUnavailableError(f"{where} is rate limiting requests: {detail}", retry_after=_retry_after(headers))
        if status in (401, 403):
            return UpstreamError(f"{where} rejected this server's credentials (check OPENAI_API_KEY).")
        if status == 404:
            return UpstreamError(f"{where} does not know model '{self.model_id}': {detail}", code="model_not_found")
        if status in (400, 422):
            if err.get("code") == "context_length_exceeded":
                return ContextLengthExceededError(detail, param="messages")
            param = str(err["param"]) if err.get("param") else None
            return BadRequestError(f"{where} rejected the request: {detail}", param=param)
        if status == 503:
            return ServiceUnavailableError(f"{where} is unavailable: {detail}", retry_after=_retry_after(headers))
        return UpstreamError(f"{where} failed with HTTP {status}: {detail}")

    def _map_http_error(self, exc: BaseException, *, started: bool) -> APIError:
        """A transport failure of the plain-HTTP path, mapped as the SDK's equivalents are."""
        import aiohttp

        where = f"The upstream model service ({self.base_label})"
        if isinstance(exc, APIError):
            return exc
        if isinstance(exc, TimeoutError):  # aiohttp's connect and read timeouts are TimeoutErrors too
            return UpstreamTimeoutError(f"{where} did not answer in time.")
        if isinstance(exc, aiohttp.ClientConnectorError) or (isinstance(exc, aiohttp.ClientError) and not started):
            return ServiceUnavailableError(f"{where} is not reachable.", retry_after=5)
        if isinstance(exc, (aiohttp.ClientError, ConnectionError)):
            return UpstreamError(f"{where} broke the connection mid-answer.")
        if isinstance(exc, (ValueError, TypeError, KeyError, AttributeError)):  # JSON that is not a completion
            return UpstreamError(f"{where} sent a malformed or failed stream: {type(exc).__name__}: {exc}")
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
            async with self.http().post(self._chat_url, data=_encode(req), allow_redirects=False) as resp:
                raw = await resp.read()
                if resp.status >= 300:
                    raise self._map_status(resp.status, _json_or_none(raw), resp.headers)
            data = json.loads(raw)
            choices = data.get("choices")
            if not choices:
                raise UpstreamError(f"The upstream model service ({self.base_label}) returned no choices.")
            choice = choices[0]
            msg = choice.get("message") or {}
            content = msg.get("content")
            calls = [
                ToolCall(id=tc.get("id") or new_call_id(), name=fn["name"], arguments=fn.get("arguments") or "{}")
                for tc in (msg.get("tool_calls") or [])
                if isinstance(fn := tc.get("function"), dict)
            ]
            raw_usage = data.get("usage")
        except Exception as exc:
            raise self._map_http_error(exc, started=True) from exc
        if isinstance(raw_usage, dict):
            usage = Usage(raw_usage.get("prompt_tokens") or 0, raw_usage.get("completion_tokens") or 0)
        else:
            prompt = sum(self.count_tokens(str(m.get("content") or "")) for m in messages)
            usage = Usage(prompt, self.count_tokens(content) if content else 0)
        finish = choice.get("finish_reason") or "stop"
        if finish == "function_call":
            finish = "tool_calls"
        return Completion(content=content, tool_calls=calls, finish_reason=finish, usage=usage)

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
        where = f"The upstream model service ({self.base_label})"
        try:
            async with self.http().post(self._chat_url, data=_encode(req), allow_redirects=False) as resp:
                if resp.status >= 300:
                    raise self._map_status(resp.status, _json_or_none(await resp.read()), resp.headers)
                async for data in _sse_data(resp):
                    if data.startswith("[DONE]"):
                        break
                    try:
                        chunk = json.loads(data)
                    except ValueError as exc:
                        raise UpstreamError(f"{where} sent a malformed or failed stream: {exc}") from None
                    if not isinstance(chunk, dict):
                        raise UpstreamError(f"{where} sent a malformed or failed stream: not a JSON object.")
                    if chunk.get("error"):
                        err = _error_obj(chunk)
                        raise UpstreamError(f"{where} sent a malformed or failed stream: {err.get('message') or 'error'}")
                    started = True
                    raw_usage = chunk.get("usage")
                    if isinstance(raw_usage, dict):
                        usage = Usage(raw_usage.get("prompt_tokens") or 0, raw_usage.get("completion_tokens") or 0)
                    for choice in chunk.get("choices") or []:
                        delta = choice.get("delta")
                        if isinstance(delta, dict):
                            piece = delta.get("content")
                            if piece:
                                text.append(piece)
                                yield StreamEvent(content=piece)
                            if delta.get("tool_calls"):
                                assembler.add(delta["tool_calls"])
                        if choice.get("finish_reason"):
                            finish = choice["finish_reason"]
        except Exception as exc:
            raise self._map_http_error(exc, started=started) from exc
        if finish is None:
            raise UpstreamError(f"{where} ended the stream without finishing.")
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


def _encode(req: dict[str, Any]) -> bytes:
    return json.dumps(req, separators=(",", ":")).encode()


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


async def _sse_data(resp: aiohttp.ClientResponse) -> AsyncIterator[str]:
    """The ``data`` of each server-sent event (multi-line data joined by newlines, as the spec says)."""
    lines: list[str] = []
    async for raw in resp.content:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if lines:
                yield "\n".join(lines)
                lines = []
            continue
        if line.startswith("data:"):
            value = line[5:]
            lines.append(value[1:] if value.startswith(" ") else value)
        # "event:", "id:", "retry:" and ":" comments carry nothing a chat completion needs
    if lines:
        yield "\n".join(lines)


def _error_obj(body: Any) -> dict[str, Any]:
    """The ``error`` object of an upstream error body (or the body itself, if it is the object)."""
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            return inner
    return {}
