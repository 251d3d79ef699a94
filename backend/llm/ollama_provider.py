"""Ollama through the official ``ollama`` client (``/api/chat`` streaming NDJSON).

Ollama parses tool calls itself but has no ``tool_choice``; so:

* unconstrained output (``tool_choice="auto"``): tools are sent natively and the reply's
  ``message.tool_calls`` come back as structured ``ToolCall`` events (the base class still
  recovers calls a model wrote as text);
* constrained output (a forced call, or ``response_format``): the ``JsonConstraint`` is sent as
  ``format`` (Ollama's structured outputs) and the tools are described in the system message, so
  the JSON the model must write is the call itself.

Transport failures map onto the API's errors: unreachable → 503, timeouts → 504, anything
malformed or failing upstream → 502.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from backend.errors import (
    APIError,
    BadRequestError,
    ServiceUnavailableError,
    UpstreamError,
    UpstreamTimeoutError,
)
from backend.llm.base import JsonConstraint, LLMProvider
from backend.llm.embedded import tools_system_text
from backend.llm.tool_calling import make_call
from backend.llm.types import GenerationParams, Message, StreamEvent, ToolCall, Usage, message_text
from backend.settings import Settings

if TYPE_CHECKING:
    from ollama import AsyncClient

log = logging.getLogger("backend.llm.ollama")


def _args_dict(arguments: Any) -> dict[str, Any]:
    if isinstance(arguments, dict):
        return arguments
    if isinstance(arguments, str):
        try:
            value = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError:
            return {"_raw": arguments}
        return value if isinstance(value, dict) else {"_value": value}
    return {}


def to_ollama_messages(
    messages: list[Message], *, tools_in_system: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """OpenAI-shaped messages → Ollama's (arguments as objects, ``tool_name`` on tool results)."""
    call_names: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    for msg in messages:
        role = msg.get("role")
        text = message_text(msg.get("content"))
        if role == "developer":
            role = "system"
        if role == "assistant" and msg.get("tool_calls"):
            calls = []
            for c in msg["tool_calls"]:
                fn = c.get("function") or {}
                if c.get("id"):
                    call_names[c["id"]] = fn.get("name", "")
                calls.append({"function": {"name": fn.get("name", ""), "arguments": _args_dict(fn.get("arguments"))}})
            out.append({"role": "assistant", "content": text, "tool_calls": calls})
        elif role in ("tool", "function"):
            item: dict[str, Any] = {"role": "tool", "content": text}
            name = msg.get("name") or call_names.get(msg.get("tool_call_id") or "")
            if name:
                item["tool_name"] = name
            out.append(item)
        elif role in ("system", "user", "assistant"):
            out.append({"role": role, "content": text})
        else:
            raise BadRequestError(f"Unsupported message role '{role}'.", param="messages")
    if tools_in_system:
        extra = tools_system_text(tools_in_system)
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": (out[0]["content"] + "\n\n" + extra).strip()}
        else:
            out.insert(0, {"role": "system", "content": extra})
    return out


def penalty_options(params: GenerationParams) -> dict[str, float]:
    """OpenAI's presence/frequency penalties as Ollama options (same names, same scale)."""
    out: dict[str, float] = {}
    if params.presence_penalty is not None:
        out["presence_penalty"] = params.presence_penalty
    if params.frequency_penalty is not None:
        out["frequency_penalty"] = params.frequency_penalty
    return out


def _host_label(host: str) -> str:
    parts = urlsplit(host if "://" in host else "http://" + host)
    return f"{parts.scheme}://{parts.hostname}:{parts.port}" if parts.port else f"{parts.scheme}://{parts.hostname}"


class OllamaProvider(LLMProvider):
    name = "ollama"
    native_tool_calls = False

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.parallel = max(1, settings.ollama_num_parallel)
        self._client: AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._context_window: int | None = None
        self.host_label = _host_label(settings.ollama_host)

    @property
    def model_id(self) -> str:
        return self.settings.ollama_model

    @property
    def context_window(self) -> int | None:
        n = self.settings.ollama_num_ctx
        return min(n, self._context_window) if self._context_window else n

    def client(self) -> AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is not None and self._client_loop is not loop:
            self._client = None  # its connections belong to a loop that is gone
        if self._client is None:
            self._client_loop = loop
            import httpx
            from ollama import AsyncClient

            timeout = httpx.Timeout(self.settings.ollama_timeout_s, connect=self.settings.ollama_connect_timeout_s)
            self._client = AsyncClient(host=self.settings.ollama_host, timeout=timeout)
        return self._client

    async def start(self) -> None:
        info = await self.health()
        if not info["ok"]:
            log.warning("Ollama is not ready: %s", info.get("error"))

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._client_loop is asyncio.get_running_loop():
            await client._client.aclose()

    # ------------------------------------------------------------ errors
    def _map_error(self, exc: BaseException) -> APIError:
        import httpx
        import pydantic
        from ollama import ResponseError

        where = f"Ollama at {self.host_label}"
        if isinstance(exc, APIError):
            return exc
        if isinstance(exc, (ConnectionError, httpx.ConnectError, httpx.ConnectTimeout)):
            return ServiceUnavailableError(f"{where} is not reachable; is it running?", retry_after=5)
        if isinstance(exc, httpx.TimeoutException):
            return UpstreamTimeoutError(f"{where} did not answer in time.")
        if isinstance(exc, ResponseError):
            status = exc.status_code
            if status == 404 and "not found" in str(exc.error).lower():
                return UpstreamError(
                    f"{where} has no model '{self.model_id}'. Pull it with: ollama pull {self.model_id}",
                    code="model_not_found",
                )
            if status in (429, 503):
                return ServiceUnavailableError(f"{where} is busy: {exc.error}", retry_after=5)
            if status == 400:
                return BadRequestError(f"{where} rejected the request: {exc.error}")
            return UpstreamError(f"{where} failed: {exc.error}")
        if isinstance(exc, (json.JSONDecodeError, pydantic.ValidationError)):
            return UpstreamError(f"{where} sent a malformed response.")
        if isinstance(exc, httpx.HTTPError):
            return UpstreamError(f"{where} broke the connection: {type(exc).__name__}.")
        return UpstreamError(f"{where} failed unexpectedly: {type(exc).__name__}.")

    # ------------------------------------------------------------ health
    async def health(self) -> dict[str, Any]:
        info: dict[str, Any] = {"ok": False, "model": self.model_id, "provider": self.name, "host": self.host_label}
        try:
            listing = await self.client().list()
            names = {m.model for m in listing.models if m.model}
            wanted = self.model_id if ":" in self.model_id else self.model_id + ":latest"
            if self.model_id not in names and wanted not in names:
                info["error"] = f"model '{self.model_id}' is not pulled (ollama pull {self.model_id})"
                return info
            shown = await self.client().show(self.model_id)
            for key, value in (shown.modelinfo or {}).items():
                if key.endswith(".context_length") and isinstance(value, int):
                    self._context_window = value
            info["ok"] = True
            if shown.capabilities:
                info["capabilities"] = list(shown.capabilities)
        except Exception as exc:  # noqa: BLE001 - health never raises
            info["error"] = self._map_error(exc).message
        return info

    # ------------------------------------------------------------ generation
    def _options(self, params: GenerationParams) -> dict[str, Any]:
        s = self.settings
        options: dict[str, Any] = {
            "num_ctx": s.ollama_num_ctx,
            "temperature": params.temperature if params.temperature is not None else s.temperature,
            "top_p": params.top_p if params.top_p is not None else s.top_p,
            "top_k": params.top_k if params.top_k is not None else s.top_k,
            "num_predict": params.max_tokens or s.default_max_tokens,
        }
        if params.seed is not None:
            options["seed"] = params.seed
        if params.stop:
            options["stop"] = list(params.stop)
        options.update(penalty_options(params))
        return options

    def _request(
        self, messages: list[Message], params: GenerationParams, constraint: JsonConstraint | None
    ) -> dict[str, Any]:
        s = self.settings
        options = self._options(params)
        tools = params.tools or None
        native_tools = tools if constraint is None else None
        req: dict[str, Any] = {
            "model": self.model_id,
            "messages": to_ollama_messages(messages, tools_in_system=tools if constraint is not None else None),
            "stream": True,
            "options": options,
            "keep_alive": s.ollama_keep_alive,
        }
        if native_tools:
            req["tools"] = native_tools
        if constraint is not None:
            req["format"] = constraint.schema if constraint.schema is not None else "json"
        return req

    async def _stream_raw(
        self,
        messages: list[Message],
        params: GenerationParams,
        constraint: JsonConstraint | None,
    ) -> AsyncIterator[StreamEvent]:
        req = self._request(messages, params, constraint)
        calls: list[ToolCall] = []
        done = False
        stream: Any = None
        try:
            stream = await self.client().chat(**req)
            async for part in stream:
                msg = part.message
                if msg is not None and msg.content:
                    yield StreamEvent(content=msg.content)
                if msg is not None and msg.tool_calls:
                    calls.extend(make_call(c.function.name, dict(c.function.arguments or {})) for c in msg.tool_calls)
                if part.done:
                    done = True
                    finish = "length" if part.done_reason == "length" else "stop"
                    usage = Usage(prompt_tokens=part.prompt_eval_count or 0, completion_tokens=part.eval_count or 0)
                    yield StreamEvent(tool_calls=calls or None, finish_reason=finish, usage=usage)
                    break
        except Exception as exc:
            raise self._map_error(exc) from exc
        finally:
            if stream is not None:
                with contextlib.suppress(Exception):
                    await stream.aclose()  # releases the HTTP connection at once
        if not done:
            raise UpstreamError(f"Ollama at {self.host_label} ended the stream before the answer was complete.")

    # ------------------------------------------------------------ raw text completion (/v1/completions)
    supports_text_completion = True
    supports_suffix = True

    async def _stream_text_raw(
        self, prompt: str, params: GenerationParams, suffix: str | None
    ) -> AsyncIterator[StreamEvent]:
        """``/api/generate``: a plain prompt goes ``raw`` (no template), as /v1/completions means;
        with ``suffix`` the model's own template builds the fill-in-the-middle prompt."""
        done = False
        stream: Any = None
        try:
            # the overloads type suffix as str; the implementation takes None (= no suffix)
            stream = await self.client().generate(  # type: ignore[call-overload]
                model=self.model_id,
                prompt=prompt,
                suffix=suffix,
                raw=suffix is None,
                stream=True,
                options=self._options(params),
                keep_alive=self.settings.ollama_keep_alive,
            )
            async for part in stream:
                if part.response:
                    yield StreamEvent(content=part.response)
                if part.done:
                    done = True
                    finish = "length" if part.done_reason == "length" else "stop"
                    usage = Usage(prompt_tokens=part.prompt_eval_count or 0, completion_tokens=part.eval_count or 0)
                    yield StreamEvent(finish_reason=finish, usage=usage)
                    break
        except Exception as exc:
            raise self._map_error(exc) from exc
        finally:
            if stream is not None:
                with contextlib.suppress(Exception):
                    await stream.aclose()
        if not done:
            raise UpstreamError(f"Ollama at {self.host_label} ended the stream before the answer was complete.")

    # ------------------------------------------------------------ embeddings
    async def embed(self, texts: list[str], model: str | None = None) -> list[list[float]]:
        """Embeddings via ``/api/embed`` (model: ``settings.embedding_model`` unless given)."""
        if not texts:
            return []
        try:
            resp = await self.client().embed(
                model=model or self.settings.embedding_model,
                input=texts,
                keep_alive=self.settings.ollama_keep_alive,
            )
        except Exception as exc:
            raise self._map_error(exc) from exc
        vectors = [list(map(float, v)) for v in resp.embeddings]
        if len(vectors) != len(texts):
            raise UpstreamError(f"Ollama at {self.host_label} returned {len(vectors)} embeddings for {len(texts)} texts.")
        return vectors
