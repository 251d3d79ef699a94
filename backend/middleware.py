"""Pure ASGI middleware (streaming-safe): request context, security headers, the browser guard
(Host allow-list, Origin check, JSON content type) and body limits."""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.errors import error_body
from backend.observability.logging import request_id_var
from backend.settings import Settings

log = logging.getLogger("backend.access")
_RID_RE = re.compile(r"^[A-Za-z0-9._-]{8,64}$")

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'self'"
)
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", CSP.encode()),
    (b"cross-origin-opener-policy", b"same-origin"),
]


async def _send_json(send: Send, status: int, body: dict[str, Any], headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class RequestContextMiddleware:
    """Request id (``X-Request-Id`` in and out), access log line, HTTP metrics."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = next((v for k, v in scope["headers"] if k == b"x-request-id"), b"").decode("latin-1")
        rid = incoming if _RID_RE.fullmatch(incoming) else "req_" + secrets.token_hex(12)
        token = request_id_var.set(rid)
        scope.setdefault("state", {})["request_id"] = rid
        start = time.perf_counter()
        status_holder = {"status": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            duration = time.perf_counter() - start
            route = scope.get("route")
            route_path = getattr(route, "path", None) or ("static" if scope["path"] == "/" else "unmatched")
            app = scope.get("app")
            services = getattr(getattr(app, "state", None), "services", None)
            if services is not None:
                services.metrics.observe_request(route_path, scope["method"], str(status_holder["status"]), duration)
            if log.isEnabledFor(logging.INFO):  # the extra dict is not built for a line nobody writes
                log.info(
                    "%s %s %s",
                    scope["method"],
                    route_path,
                    status_holder["status"],
                    extra={
                        "route": route_path,
                        "method": scope["method"],
                        "status": status_holder["status"],
                        "duration_ms": round(duration * 1000, 1),
                    },
                )
            request_id_var.reset(token)


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *(h for h in SECURITY_HEADERS if h[0] not in present)]
            await send(message)

        await self.app(scope, receive, send_wrapper)


class _BodyTooLarge(StarletteHTTPException):
    """An HTTPException, so frameworks that wrap body-parsing errors still answer 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"Request body too large (limit {limit // 1024} KiB).")


class BodyLimitMiddleware:
    """413 before buffering: by Content-Length, and by counting a streamed body."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    def _limit(self, path: str) -> int:
        if path.startswith("/api/files/upload"):
            return self.settings.max_upload_bytes + 64 * 1024  # multipart framing
        return self.settings.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope["path"])
        headers = dict(scope["headers"])
        raw_length = headers.get(b"content-length")
        message = f"Request body too large (limit {limit // 1024} KiB)."
        if raw_length is not None:
            try:
                too_big = int(raw_length) > limit
            except ValueError:
                await _send_json(send, 400, error_body("Invalid Content-Length.", "invalid_request_error"))
                return
            if too_big:
                await _send_json(send, 413, error_body(message, "invalid_request_error", None, "payload_too_large"),
                                 [(b"connection", b"close"), (b"x-should-retry", b"false")])
                return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            msg = await receive()
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge(limit)
            return msg

        async def send_wrapper(msg: Message) -> None:
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, limited_receive, send_wrapper)
        except _BodyTooLarge:
            if not started:
                await _send_json(send, 413, error_body(message, "invalid_request_error", None, "payload_too_large"),
                                 [(b"connection", b"close"), (b"x-should-retry", b"false")])


# ------------------------------------------------------------------------------ browser guard
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::", "[::]"})
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_DEFAULT_PORTS = {"http": "80", "https": "443"}
# media types each body-carrying route accepts; every other /v1 and /api route takes JSON only
_FORM_TYPES = ("application/json", "application/x-www-form-urlencoded", "multipart/form-data")
_BODY_TYPES = {"/api/files/upload": ("multipart/form-data",), "/api/auth/login": _FORM_TYPES}


def split_host(value: str) -> tuple[str, str | None]:
    """``"Example.org:8080"`` → ``("example.org", "8080")``; ``"[::1]:80"`` → ``("::1", "80")``."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end == -1:
            return value, None
        rest = value[end + 1 :]
        return value[1:end], ((rest[1:] or None) if rest.startswith(":") else None)
    host, sep, port = value.rpartition(":")
    if not sep or ":" in host:  # no port, or a bare IPv6 address
        return value.rstrip("."), None
    return host.rstrip("."), port or None


def is_loopback_host(host: str) -> bool:
    name, _ = split_host(host)
    return name in LOOPBACK_HOSTS or name.startswith("127.")


def allowed_host_names(settings: Settings) -> frozenset[str]:
    names = set(LOOPBACK_HOSTS)
    names.update(split_host(h)[0] for h in settings.allowed_hosts)
    if settings.host not in _WILDCARD_BINDS:
        names.add(split_host(settings.host)[0])
    return frozenset(names)


def _origin_key(origin: str) -> tuple[str, str | None] | None:
    parts = urlsplit(origin)
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    try:
        port = str(parts.port) if parts.port is not None else None
    except ValueError:
        return None
    return parts.hostname.rstrip("."), (None if port == _DEFAULT_PORTS[parts.scheme] else port)


def _host_key(host: str) -> tuple[str, str | None]:
    name, port = split_host(host)
    return name, (None if port in ("80", "443") else port)


class BrowserGuardMiddleware:
    """What keeps a web page the user happens to visit from driving this server.

    * Host allow-list (DNS rebinding): a Host header that is not localhost, 127.0.0.1, [::1], the
      bind address or one of ``ALLOWED_HOSTS`` → 421.
    * Origin check (CSRF): a state-changing request whose ``Origin`` is neither this server's own
      origin nor in ``CORS_ORIGINS`` → 403 (``Origin: null`` included).
    * Content type: a body sent to a JSON route must be ``application/json`` → 415 otherwise, which
      also rules out the "simple" cross-site form and text/plain posts browsers send without asking.
    """

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.hosts = allowed_host_names(settings)
        self.origins = frozenset(o.rstrip("/").lower() for o in settings.cors_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        problem = self._check(scope, dict(scope["headers"]))
        if problem is None:
            await self.app(scope, receive, send)
            return
        status, message, code = problem
        etype = "permission_error" if status == 403 else "invalid_request_error"
        await _send_json(send, status, error_body(message, etype, None, code), [(b"x-should-retry", b"false")])

    def _check(self, scope: Scope, headers: dict[bytes, bytes]) -> tuple[int, str, str] | None:
        raw_host = headers.get(b"host")
        host = raw_host.decode("latin-1") if raw_host is not None else None
        if host is not None and split_host(host)[0] not in self.hosts:
            return 421, ("This server does not answer for that Host name; add it to ALLOWED_HOSTS if it is "
                         "yours."), "host_not_allowed"
        method = scope["method"]
        if method not in STATE_CHANGING:
            return None
        origin = headers.get(b"origin")
        if origin is not None:
            value = origin.decode("latin-1").strip()
            same = host is not None and _origin_key(value) == _host_key(host)
            if not same and value.rstrip("/").lower() not in self.origins:
                return 403, "Requests from this web origin are not allowed; add it to CORS_ORIGINS.", "origin_not_allowed"
        elif headers.get(b"sec-fetch-site") == b"cross-site":
            return 403, "Cross-site requests are not allowed.", "origin_not_allowed"
        path = scope["path"]
        if method == "DELETE" or not path.startswith(("/v1/", "/api/")):
            return None
        if headers.get(b"content-length", b"0") in (b"0", b"") and b"transfer-encoding" not in headers:
            return None  # no body: nothing to interpret
        media = headers.get(b"content-type", b"").decode("latin-1").split(";", 1)[0].strip().lower()
        accepted = _BODY_TYPES.get(path, ("application/json",))
        if media not in accepted:
            return 415, f"Send the request body as {' or '.join(accepted)}.", "unsupported_media_type"
        return None
