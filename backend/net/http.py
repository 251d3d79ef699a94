"""HTTP clients that connect only to addresses the SSRF guard has checked.

``PinnedAsyncTransport`` / ``PinnedTransport`` are httpx transports: for every request (so every
redirect hop too) they resolve the host once, check all addresses with ``backend.net.ssrf``, and
connect to a checked IP while keeping the original Host header and TLS SNI/certificate name.

``SafeHttpClient`` adds what tools want on top: bounded, re-checked manual redirects, a response
size cap, timeouts, and errors as ``HttpFetchError`` with a message fit for an observation.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Self

import httpx

from backend.net.ssrf import SSRFError, check_url, check_url_async

if TYPE_CHECKING:
    from backend.settings import Settings

USER_AGENT = "local-agent-server/1.0 (+https://github.com/)"
MAX_REDIRECTS = 5
MAX_RESPONSE_BYTES = 5 * 1024 * 1024


class HttpFetchError(Exception):
    """An outbound request failed; the message is safe to show to users and models."""

    def __init__(self, message: str, status_code: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body = body


def _pin(request: httpx.Request, host: str, address: str) -> None:
    request.url = request.url.copy_with(host=address)
    if request.url.scheme == "https":
        request.extensions = {**request.extensions, "sni_hostname": host}


class PinnedAsyncTransport(httpx.AsyncBaseTransport):
    def __init__(self, allow_hosts: Iterable[str] | None = None, *, verify: bool = True, dns_timeout_s: float = 10.0):
        self._allow = list(allow_hosts or [])
        self._dns_timeout_s = dns_timeout_s
        self._inner = httpx.AsyncHTTPTransport(verify=verify, retries=0)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        target = await check_url_async(str(request.url), self._allow, self._dns_timeout_s)
        original_url = request.url
        last_error: Exception | None = None
        for address in target.addresses:
            _pin(request, target.host, address)
            try:
                response = await self._inner.handle_async_request(request)
            except httpx.ConnectError as exc:
                last_error = exc
                continue
            finally:
                request.url = original_url
            return response
        raise httpx.ConnectError(f"could not connect to {target.host}: {last_error}", request=request)

    async def aclose(self) -> None:
        await self._inner.aclose()


class PinnedTransport(httpx.BaseTransport):
    """Blocking twin of ``PinnedAsyncTransport`` (for libraries that run in a worker thread)."""

    def __init__(self, allow_hosts: Iterable[str] | None = None, *, verify: bool = True):
        self._allow = list(allow_hosts or [])
        self._inner = httpx.HTTPTransport(verify=verify, retries=0)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        target = check_url(str(request.url), self._allow)
        original_url = request.url
        last_error: Exception | None = None
        for address in target.addresses:
            _pin(request, target.host, address)
            try:
                response = self._inner.handle_request(request)
            except httpx.ConnectError as exc:
                last_error = exc
                continue
            finally:
                request.url = original_url
            return response
        raise httpx.ConnectError(f"could not connect to {target.host}: {last_error}", request=request)

    def close(self) -> None:
        self._inner.close()


def async_client(settings: Settings, **kwargs: Any) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` whose every request goes through the SSRF guard (no auto-redirects)."""
    kwargs.setdefault("timeout", httpx.Timeout(settings.tool_http_timeout_s))
    kwargs.setdefault("headers", {"User-Agent": USER_AGENT})
    return httpx.AsyncClient(
        transport=PinnedAsyncTransport(settings.ssrf_allow_hosts),
        follow_redirects=False,
        trust_env=False,
        **kwargs,
    )


def sync_client(settings: Settings, **kwargs: Any) -> httpx.Client:
    kwargs.setdefault("timeout", httpx.Timeout(settings.tool_http_timeout_s))
    kwargs.setdefault("headers", {"User-Agent": USER_AGENT})
    return httpx.Client(
        transport=PinnedTransport(settings.ssrf_allow_hosts), follow_redirects=False, trust_env=False, **kwargs
    )


def _error_detail(body: Any) -> str:
    if isinstance(body, dict):
        for key in ("reason", "detail", "error", "message"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
            if isinstance(value, dict):
                inner = value.get("message") or value.get("error") or value.get("info")
                if isinstance(inner, str):
                    return inner
    return ""


class SafeHttpClient:
    """``async with SafeHttpClient(settings) as c: data = await c.get_json(url, params)``."""

    def __init__(self, settings: Settings, *, max_redirects: int = MAX_REDIRECTS, max_bytes: int = MAX_RESPONSE_BYTES):
        self._settings = settings
        self._max_redirects = max_redirects
        self._max_bytes = max_bytes
        self._client: httpx.AsyncClient | None = None

    async def __aenter__(self) -> Self:
        self._client = async_client(self._settings)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def request(
        self, method: str, url: str, *, params: Mapping[str, Any] | None = None, json_body: Any = None
    ) -> tuple[httpx.Response, bytes]:
        assert self._client is not None, "use SafeHttpClient as an async context manager"
        current = httpx.URL(url, params=params) if params else httpx.URL(url)
        for _hop in range(self._max_redirects + 1):
            try:
                async with self._client.stream(method, current, json=json_body) as response:
                    if response.is_redirect:
                        location = response.headers.get("location")
                        if not location:
                            raise HttpFetchError(f"redirect without a Location header from {current.host}")
                        current = current.join(location)
                        if response.status_code in (301, 302, 303):
                            method, json_body = "GET", None
                        continue  # the next hop is checked again by the transport
                    body = bytearray()
                    async for chunk in response.aiter_bytes():
                        body.extend(chunk)
                        if len(body) > self._max_bytes:
                            raise HttpFetchError(f"response from {current.host} is larger than {self._max_bytes} bytes")
                    return response, bytes(body)
            except SSRFError as exc:
                raise HttpFetchError(f"blocked outbound request: {exc}") from None
            except httpx.TimeoutException:
                raise HttpFetchError(f"request to {current.host} timed out") from None
            except httpx.HTTPError as exc:
                raise HttpFetchError(f"request to {current.host} failed: {type(exc).__name__}: {exc}") from None
        raise HttpFetchError(f"too many redirects (more than {self._max_redirects})")

    async def get_json(self, url: str, params: Mapping[str, Any] | None = None) -> Any:
        response, body = await self.request("GET", url, params=params)
        try:
            data = json.loads(body) if body else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            data = None
        if response.status_code >= 400:
            detail = _error_detail(data)
            message = f"{response.url.host} answered HTTP {response.status_code}" + (f": {detail}" if detail else "")
            raise HttpFetchError(message, status_code=response.status_code, body=data)
        if data is None:
            raise HttpFetchError(f"{response.url.host} did not return JSON")
        return data


async def safe_get_json(url: str, params: Mapping[str, Any] | None, settings: Settings) -> Any:
    """GET ``url`` with ``params`` through the SSRF guard and return the parsed JSON body."""
    async with SafeHttpClient(settings) as client:
        return await client.get_json(url, params)
