"""Pure ASGI middleware (streaming-safe): request context, security headers, body limits."""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from typing import Any

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


async def _send_json(send: Send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]] = ()) -> None:
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
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
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
                services.metrics.requests.labels(route_path, scope["method"], str(status_holder["status"])).inc()
                services.metrics.latency.labels(route_path, scope["method"]).observe(duration)
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
