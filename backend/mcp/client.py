"""Sessions with the attached MCP servers (official ``mcp`` SDK), kept for the app's lifetime.

``McpManager`` is built and started in the app lifespan. Each configured server gets a supervisor
task that owns the transport (a spawned stdio subprocess or a streamable-HTTP connection) and the
``ClientSession``: connect, list the tools (filtered by the server's allow-list), then ping now and
then. When the server is down — at start-up or later — only its tools disappear; the supervisor logs
it and reconnects with exponential back-off (and sooner when a request asks for tools).

HTTP servers are reached through the project's SSRF guard (``backend.net.http``): a private or
loopback address is refused unless that server's config sets ``allow_private_network``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anyio
import httpx
from mcp import ClientSession, McpError
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from backend.mcp.bridge import make_tool, result_text
from backend.mcp.config import McpServerConfig
from backend.net.http import USER_AGENT, PinnedAsyncTransport
from backend.tools.base import Tool, ToolError, ToolResult

if TYPE_CHECKING:
    from backend.settings import Settings

log = logging.getLogger("backend.mcp.client")

CLIENT_NAME = "local-agent-server"
#: the SDK's own per-request limit stays above the tool's, so a slow call ends as the tool's timeout
_SDK_CALL_MARGIN_S = 5.0
_CONNECTION_LOST = (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream, httpx.HTTPError, OSError)


class McpServerConnection:
    """One attached server: its supervisor task, its session while connected, its tools."""

    def __init__(self, config: McpServerConfig, settings: Settings) -> None:
        self.config = config
        self._settings = settings
        self.session: ClientSession | None = None
        self.tools: dict[str, Tool] = {}
        self.status = "starting"  # starting | connected | down | stopped
        self.last_error: str | None = None
        self.attempts = 0
        self._backoff = settings.mcp_reconnect_min_s
        self._last_attempt = 0.0
        self._lost = asyncio.Event()
        self._wake = asyncio.Event()
        self._first_attempt = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def name(self) -> str:
        return self.config.name

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._task = asyncio.create_task(self._supervise(), name=f"mcp-{self.name}")

    async def stop(self) -> None:
        self._stopping = True
        task, self._task = self._task, None
        while task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait({task}, timeout=5)
        self.session, self.tools, self.status = None, {}, "stopped"

    async def wait_first_attempt(self, timeout_s: float) -> None:
        await _wait(self._first_attempt, timeout_s)

    def poke(self) -> None:
        """A request wants tools: if the server is down and the minimum back-off has passed, retry now."""
        if self.status == "down" and time.monotonic() - self._last_attempt >= self._settings.mcp_reconnect_min_s:
            self._wake.set()

    async def _supervise(self) -> None:
        while not self._stopping:
            self._last_attempt = time.monotonic()
            self.attempts += 1
            self._lost.clear()
            try:
                await self._connect_and_hold()
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # noqa: BLE001 - transports raise exception groups; the loop must go on
                if isinstance(exc, KeyboardInterrupt | SystemExit):
                    raise
                self.last_error = _describe(exc)
            finally:
                connected_before = self.status == "connected"
                self.session, self.tools = None, {}
                if self.status != "stopped":
                    self.status = "down"
                self._first_attempt.set()
            if connected_before:
                self._backoff = self._settings.mcp_reconnect_min_s
                log.warning("MCP server %r disconnected (%s); its tools are removed until it is back",
                            self.name, self.last_error or "connection lost")
            else:
                log.warning("MCP server %r is unavailable: %s; retrying in %.1fs",
                            self.name, self.last_error, self._backoff)
            self._wake.clear()
            await _wait(self._wake, self._backoff)
            self._backoff = min(self._backoff * 2, self._settings.mcp_reconnect_max_s)

    async def _connect_and_hold(self) -> None:
        cfg = self.config
        request_timeout = timedelta(seconds=cfg.connect_timeout_s)
        async with contextlib.AsyncExitStack() as stack:
            read, write = await self._open_transport(stack)
            session = await stack.enter_async_context(
                ClientSession(read, write, read_timeout_seconds=request_timeout,
                              client_info=_client_info())
            )
            with anyio.fail_after(cfg.connect_timeout_s):
                init = await session.initialize()
            with anyio.fail_after(cfg.connect_timeout_s):
                definitions = await _list_all_tools(session)
            self.tools = self._build_tools(definitions)
            self.session = session
            self.status, self.last_error = "connected", None
            self._backoff = self._settings.mcp_reconnect_min_s
            self._first_attempt.set()
            server = getattr(init, "serverInfo", None)
            log.info("MCP server %r connected (%s %s): %d tools: %s", self.name, getattr(server, "name", "?"),
                     getattr(server, "version", ""), len(self.tools), ", ".join(self.tools) or "none")
            await self._hold(session)

    async def _hold(self, session: ClientSession) -> None:
        """Stay connected until a ping fails or a call reports the connection lost."""
        while not self._stopping:
            if await _wait(self._lost, self._settings.mcp_ping_interval_s):
                raise ConnectionError(self.last_error or "connection lost")
            with anyio.fail_after(self.config.connect_timeout_s):
                await session.send_ping()

    async def _open_transport(self, stack: contextlib.AsyncExitStack) -> tuple[Any, Any]:
        cfg = self.config
        if cfg.transport == "stdio":
            params = StdioServerParameters(
                command=cfg.command or "",
                args=list(cfg.args),
                env={k: v.get_secret_value() for k, v in cfg.env.items()} or None,
                cwd=cfg.cwd,
            )
            read, write = await stack.enter_async_context(stdio_client(params, errlog=self._stderr_log(stack)))
            return read, write
        client = await stack.enter_async_context(self._http_client())
        read, write, _session_id = await stack.enter_async_context(
            streamable_http_client(cfg.url or "", http_client=client)
        )
        return read, write

    def _stderr_log(self, stack: contextlib.ExitStack | contextlib.AsyncExitStack) -> Any:
        """The child's stderr goes to ``logs/mcp-<name>.stderr.log`` beside the audit log, not into ours."""
        path = self._settings.audit_log_path.parent / f"mcp-{self.name}.stderr.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        return stack.enter_context(open(path, "a", encoding="utf-8"))  # noqa: SIM115 - closed by the stack

    def _http_client(self) -> httpx.AsyncClient:
        """httpx through the SSRF guard; the configured host may be private only when the admin says so."""
        cfg = self.config
        allow = list(self._settings.ssrf_allow_hosts)
        if cfg.allow_private_network:
            allow.append(urlsplit(cfg.url or "").hostname or "")
        headers = {"User-Agent": USER_AGENT} | {k: v.get_secret_value() for k, v in cfg.headers.items()}
        return httpx.AsyncClient(
            transport=PinnedAsyncTransport(allow),
            headers=headers,
            timeout=httpx.Timeout(cfg.connect_timeout_s, read=max(cfg.call_timeout_s + _SDK_CALL_MARGIN_S, 300.0)),
            follow_redirects=False,
            trust_env=False,
        )

    def _build_tools(self, definitions: list[Any]) -> dict[str, Tool]:
        tools: dict[str, Tool] = {}
        skipped = [d.name for d in definitions if not self.config.allows(d.name)]
        for definition in definitions:
            if not self.config.allows(definition.name):
                continue
            t = make_tool(self.name, definition, self.call, self.config.call_timeout_s)
            if t.name in tools:
                log.warning("MCP server %r: tool %r clashes with another tool's name %r; skipped",
                            self.name, definition.name, t.name)
                continue
            tools[t.name] = t
        if skipped:
            log.info("MCP server %r: %d tools not in its allow-list: %s", self.name, len(skipped), ", ".join(skipped))
        if self.config.tools is not None:
            missing = set(self.config.tools) - {d.name for d in definitions}
            if missing:
                log.warning("MCP server %r does not list allow-listed tools: %s", self.name, ", ".join(sorted(missing)))
        return tools

    # ------------------------------------------------------------------ calls
    async def call(self, tool: str, arguments: dict[str, Any]) -> ToolResult:
        session = self.session
        if session is None:
            raise ToolError(f"MCP server '{self.name}' is not connected")
        try:
            result = await session.call_tool(
                tool, arguments, read_timeout_seconds=timedelta(seconds=self.config.call_timeout_s + _SDK_CALL_MARGIN_S)
            )
        except McpError as exc:
            message = exc.error.message
            if "connection closed" in message.lower():
                self._connection_lost(message)
                raise ToolError(f"MCP server '{self.name}' is unavailable: {message}") from None
            raise ToolError(f"MCP server '{self.name}' refused the call: {message}") from None
        except _CONNECTION_LOST as exc:
            self._connection_lost(_describe(exc))
            raise ToolError(f"MCP server '{self.name}' is unavailable: {_describe(exc)}") from None
        text = result_text(result, self._settings.mcp_max_result_chars)
        if result.isError:
            return ToolResult(False, f"Error: {text}")
        data = {"structured": result.structuredContent} if result.structuredContent is not None else None
        return ToolResult(True, text, data=data)

    def _connection_lost(self, reason: str) -> None:
        if self.session is not None:
            self.last_error = reason
            self._lost.set()

    def describe(self) -> dict[str, Any]:
        """Name, transport, status and tool names (no URLs, commands or errors: health is public)."""
        return {"name": self.name, "transport": self.config.transport, "status": self.status,
                "tools": list(self.tools)}


class McpManager:
    """All attached servers. ``tools()`` is what the registry adds to the built-in tools."""

    def __init__(self, settings: Settings) -> None:
        self.connections = [McpServerConnection(c, settings) for c in settings.mcp_servers if c.enabled]

    async def start(self, wait_s: float | None = None) -> None:
        """Start every server's supervisor; wait (bounded) for each first connection attempt."""
        for conn in self.connections:
            conn.start()
        waits = [conn.wait_first_attempt(wait_s if wait_s is not None else conn.config.connect_timeout_s + 1)
                 for conn in self.connections]
        if waits:
            await asyncio.gather(*waits)

    async def aclose(self) -> None:
        await asyncio.gather(*(conn.stop() for conn in self.connections))

    def tools(self) -> dict[str, Tool]:
        """The tools of the servers connected now (a down server is poked to reconnect)."""
        tools: dict[str, Tool] = {}
        for conn in self.connections:
            conn.poke()
            for name, t in conn.tools.items():
                tools.setdefault(name, t)
        return tools

    def describe(self) -> list[dict[str, Any]]:
        return [conn.describe() for conn in self.connections]


async def _list_all_tools(session: ClientSession, max_pages: int = 50) -> list[Any]:
    from mcp.types import PaginatedRequestParams

    definitions: list[Any] = []
    cursor: str | None = None
    for _ in range(max_pages):
        page = await session.list_tools(params=PaginatedRequestParams(cursor=cursor) if cursor else None)
        definitions.extend(page.tools)
        cursor = page.nextCursor
        if not cursor:
            break
    return definitions


async def _wait(event: asyncio.Event, timeout_s: float) -> bool:
    """Wait for ``event`` at most ``timeout_s``; True if it was set. (``asyncio.timeout``, not
    ``wait_for``: on Python 3.11 ``wait_for`` can swallow a cancellation that races its timeout.)"""
    try:
        async with asyncio.timeout(timeout_s):
            await event.wait()
    except TimeoutError:
        return event.is_set()
    return True


def _client_info() -> Any:
    from mcp.types import Implementation

    return Implementation(name=CLIENT_NAME, version="1.0")


def _describe(exc: BaseException) -> str:
    """The innermost useful message of an exception (transports raise exception groups)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, McpError):
        return exc.error.message
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
