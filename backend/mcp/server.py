"""Our own tools as an MCP server at ``/mcp`` (streamable HTTP), for IDEs and desktop assistants.

Every HTTP request to ``/mcp`` is authenticated like ``/v1`` (``Authorization: Bearer <JWT or API
key>``, resolved by ``backend.api.deps.authenticate``; 401 in OpenAI's error shape otherwise). Each
tool call then runs as that user: document search sees only the caller's own documents, the
sandbox and math run out of process as for the agents, and the per-user rate limit counts each call.

The SDK's session manager runs stateless (no per-client session state kept in the server) with JSON
responses; it is created and run in the app lifespan (``McpEndpoint.run``), never at import.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from backend.api.deps import _bearer, authenticate, off_loop
from backend.errors import APIError, PermissionDeniedError, RateLimitError, error_body
from backend.middleware import is_loopback_host
from backend.tools.base import Tool

if TYPE_CHECKING:
    from backend.services import Principal, Services

log = logging.getLogger("backend.mcp.server")

PATH = "/mcp"
SERVER_NAME = "local-agent-server"
_PRINCIPAL = "mcp_principal"  # key in the ASGI scope's state: who sent this request


def exposed_tools(services: Services) -> dict[str, Tool]:
    """The built-in tools served at /mcp: configured in ``mcp_server_tools`` and runnable here.

    Attached MCP servers' tools are never re-exported.
    """
    from backend.tools.registry import available_tools

    wanted = set(services.settings.mcp_server_tools)
    return {name: t for name, t in available_tools(services.settings).items() if name in wanted}


def build_server(services: Services) -> Any:
    """The low-level SDK server: list our tools with their JSON schemas, run a call as the caller."""
    from mcp import types
    from mcp.server.lowlevel import Server

    server: Server = Server(SERVER_NAME, version="1.0", instructions=(
        "Tools of a local agent server: search your uploaded documents, exact math, sandboxed Python."))

    def error(text: str) -> types.CallToolResult:
        return types.CallToolResult(content=[types.TextContent(type="text", text=text)], isError=True)

    # the SDK's handler-registering decorators (``Server.list_tools``/``call_tool``) are unannotated
    @server.list_tools()  # type: ignore[no-untyped-call, untyped-decorator]
    async def list_tools() -> list[types.Tool]:
        return [types.Tool(name=t.name, description=t.description, inputSchema=t.parameters)
                for t in exposed_tools(services).values()]

    @server.call_tool()  # type: ignore[untyped-decorator]
    async def call_tool(name: str, arguments: dict[str, Any]) -> types.CallToolResult:
        request = server.request_context.request
        principal: Principal | None = getattr(getattr(request, "state", None), _PRINCIPAL, None)
        if principal is None:  # only reachable if the endpoint's authentication were bypassed
            return error("Error: not authenticated")
        t = exposed_tools(services).get(name)
        if t is None:
            return error(f"Error: unknown tool '{name}'")
        if not (principal.is_admin and services.settings.rate_limit_admin_exempt):
            try:
                services.rate_limiter.check(principal.user_id)
            except RateLimitError as exc:
                services.metrics.rate_limited.labels("user").inc()
                return error(f"Error: {exc.message}")
        ctx = services.tool_context(
            principal.user_id, request_id=request.headers.get("x-request-id") if request is not None else None
        )
        result = await t.run(ctx, arguments)
        services.metrics.tool_calls.labels(t.name, "ok" if result.ok else "error").inc()
        services.audit.record("tool_call", user=principal.user_id, tool=t.name, ok=result.ok, via="mcp")
        return types.CallToolResult(content=[types.TextContent(type="text", text=result.output)], isError=not result.ok)

    return server


class McpEndpoint:
    """The ASGI app routed at ``/mcp``: authenticate, then hand the request to the SDK."""

    def __init__(self) -> None:
        self._manager: Any = None
        self._services: Services | None = None

    @contextlib.asynccontextmanager
    async def run(self, services: Services) -> AsyncIterator[None]:
        from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
        from mcp.server.transport_security import TransportSecuritySettings

        manager = StreamableHTTPSessionManager(
            app=build_server(services),
            stateless=True,
            json_response=True,
            # clients authenticate with a bearer token, never a cookie: a rebound DNS name gains nothing,
            # and the Host header differs behind a reverse proxy
            security_settings=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )
        async with manager.run():
            self._manager, self._services = manager, services
            try:
                yield
            finally:
                self._manager, self._services = None, None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        manager, services = self._manager, self._services
        if scope["type"] != "http" or manager is None or services is None:
            body = error_body("The MCP endpoint is not running.", "server_error", None, "mcp_unavailable")
            await JSONResponse(body, status_code=503)(scope, receive, send)
            return
        try:
            server = scope.get("server")
            loopback = is_loopback_host(str(server[0])) if server else False
            principal = await off_loop(services, authenticate, _bearer(Request(scope)), services, loopback=loopback)
            if "inference" not in principal.scopes:  # the tools are inference, as through /v1
                raise PermissionDeniedError("This API key lacks the 'inference' scope the MCP tools need.",
                                            code="insufficient_scope")
        except APIError as exc:
            await JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)(scope, receive, send)
            return
        state = dict(scope.get("state") or {})
        state[_PRINCIPAL] = principal
        await manager.handle_request({**scope, "state": state}, receive, send)
