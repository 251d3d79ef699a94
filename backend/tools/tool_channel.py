"""Server tools callable from a sandboxed program, through a narrow request/response channel.

    program (in the sandbox)                          server (this module)
    from tools import sql                             ToolChannel.serve(reader, writer)
    rows = sql("SELECT COUNT(*) FROM customers")  ->  one JSON line {"fn": "sql", "args": {...}}
                                                      check: known function, size, call count
                                                      run the real tool with the *requesting
                                                      user's* ToolContext, bounded in time
    rows == [[42]]                                <-  one JSON line {"ok": true, "result": ...}

The channel is two pipes handed to the sandboxed process (``backend.tools.sandbox`` passes their
file descriptors, nothing else): the sandbox still has no network, no server state and no file
beyond its own. The stub module the program imports (``tools``) is generated per run and defines
only the functions whose tools are enabled for this user; the server checks again. Every call is
bounded: at most ``max_calls`` per run, a request line of at most ``max_request_bytes``, a reply of
at most ``max_reply_bytes``, ``call_timeout_s`` per call and ``total_s`` for all of them. A call
over a bound gets an error reply, which the stub raises as ``ToolCallError`` inside the program;
nothing a program writes can end the server's run. Each call is recorded (``calls``) for the trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from backend.tools.base import Tool, ToolContext, ToolResult

if TYPE_CHECKING:
    from backend.settings import Settings

#: the environment variable that tells the stub its two file descriptors ("request,reply")
FDS_ENV = "TOOL_CHANNEL_FDS"


def _sql_result(result: ToolResult) -> Any:
    rows = (result.data or {}).get("rows")
    return rows if isinstance(rows, list) else result.output


def _text_result(result: ToolResult) -> Any:
    return result.output


@dataclass(frozen=True)
class ChannelFunction:
    """A function of the stub: its name in the program, the server tool it calls, its signature."""

    name: str
    tool: str
    params: tuple[str, ...]  # positional parameters, mapped 1:1 onto the tool's arguments
    defaults: Mapping[str, Any]
    signature: str  # how the prompt shows it
    doc: str  # what the prompt says it returns
    result: Callable[[ToolResult], Any] = _text_result


#: stub function -> server tool. A tool that is not enabled for the user is not offered.
FUNCTIONS: tuple[ChannelFunction, ...] = (
    ChannelFunction(
        "sql", "sql_query", ("query",), {}, "sql(query: str) -> list[list]",
        "the rows of one read-only SQLite SELECT on the database (a list of rows, each a list of values)",
        _sql_result,
    ),
    ChannelFunction(
        "search_documents", "rag_retrieval", ("query", "top_k"), {"top_k": 3},
        "search_documents(query: str, top_k: int = 3) -> str",
        "the passages of the user's uploaded documents that best match the query, as text",
    ),
    ChannelFunction(
        "calc", "math_calc", ("expression",), {}, "calc(expression: str) -> str",
        "exact SymPy math (algebra, equations, derivatives, integrals), e.g. calc('solve(x**2-4, x)')",
    ),
)
BY_NAME = {f.name: f for f in FUNCTIONS}


@dataclass
class ChannelLimits:
    max_calls: int = 16
    max_request_bytes: int = 16_384
    max_reply_bytes: int = 32_768
    call_timeout_s: float = 30.0
    total_s: float = 60.0

    @classmethod
    def from_settings(cls, settings: Settings) -> ChannelLimits:
        return cls(
            max_calls=settings.code_tool_max_calls,
            max_request_bytes=settings.code_tool_max_request_bytes,
            max_reply_bytes=settings.code_tool_max_reply_bytes,
            call_timeout_s=settings.code_tool_call_timeout_s,
            total_s=settings.code_tool_total_s,
        )


def channel_functions(tools: Mapping[str, Tool]) -> dict[str, ChannelFunction]:
    """The stub functions whose server tool is among ``tools`` (the tools enabled for this user)."""
    return {f.name: f for f in FUNCTIONS if f.tool in tools}


def prompt_lines(functions: Mapping[str, ChannelFunction], tools: Mapping[str, Tool]) -> str:
    """What the code prompt says about the functions (empty when there are none)."""
    if not functions:
        return ""
    names = ", ".join(functions)
    lines = [f"The program can call these server functions (`from tools import {names}`):"]
    for f in functions.values():
        lines.append(f"- {f.signature}: {f.doc}")
        if f.name == "sql":
            schema = _schema_text(tools[f.tool])
            if schema:
                lines.append("  " + schema.replace("\n", "\n  "))
    return "\n".join(lines)


def _schema_text(sql_tool: Tool) -> str:
    marker = "The database's tables"
    desc = sql_tool.description
    return desc[desc.index(marker) :].strip() if marker in desc else ""


@dataclass
class CallRecord:
    fn: str
    args: dict[str, Any]
    ok: bool
    output: str
    duration_s: float


_STUB_HEAD = '''"""Server tools, callable from this program. Each call sends one request to the server and
waits for its reply; a refused or failed call raises ToolCallError with the reason."""
import json as _json
import os as _os

__all__ = ["ToolCallError"{exports}]


class ToolCallError(RuntimeError):
    pass


_fds = _os.environ.get("{env}", "")
_REQ, _REP = (int(x) for x in _fds.split(",")) if _fds else (-1, -1)
_buffer = b""


def _readline():
    global _buffer
    while b"\\n" not in _buffer:
        chunk = _os.read(_REP, 65536)
        if not chunk:
            raise ToolCallError("the server closed the tool channel")
        _buffer += chunk
    line, _, _buffer = _buffer.partition(b"\\n")
    return line


def _call(fn, args):
    if _REQ < 0:
        raise ToolCallError("no tool channel in this run")
    data = (_json.dumps({{"fn": fn, "args": args}}, default=str) + "\\n").encode()
    view = memoryview(data)
    try:
        while view:
            view = view[_os.write(_REQ, view):]
    except OSError as exc:
        raise ToolCallError("the server closed the tool channel") from exc
    reply = _json.loads(_readline())
    if not reply.get("ok"):
        raise ToolCallError(reply.get("error") or "the tool call failed")
    return reply.get("result")
'''


def stub_source(functions: Mapping[str, ChannelFunction]) -> str:
    """The ``tools`` module the program imports: one function per enabled server tool."""
    exports = "".join(f', "{name}"' for name in functions)
    parts = [_STUB_HEAD.format(exports=exports, env=FDS_ENV)]
    for f in functions.values():
        params = ", ".join(f"{p}={f.defaults[p]!r}" if p in f.defaults else p for p in f.params)
        args = ", ".join(f'"{p}": {p}' for p in f.params)
        parts.append(f'\n\ndef {f.name}({params}):\n    """{f.doc}"""\n    return _call("{f.name}", {{{args}}})\n')
    return "".join(parts)


@dataclass
class ToolChannel:
    """The server side of one run's channel: answers the program's requests with the real tools."""

    ctx: ToolContext
    tools: Mapping[str, Tool]  # tool name -> Tool, the ones enabled for this user
    limits: ChannelLimits = field(default_factory=ChannelLimits)
    calls: list[CallRecord] = field(default_factory=list)
    _busy_s: float = 0.0
    _call_started: float | None = None

    def __post_init__(self) -> None:
        self.functions = channel_functions(self.tools)

    def stub(self) -> str:
        return stub_source(self.functions)

    def busy_s(self) -> float:
        """Seconds spent in tool calls so far (the run's wall clock is extended by this, up to ``total_s``)."""
        running = time.monotonic() - self._call_started if self._call_started is not None else 0.0
        return min(self.limits.total_s, self._busy_s + running)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer requests until the program closes its end (or the run ends and cancels this)."""
        try:
            while True:
                try:
                    line = await reader.readuntil(b"\n")
                except asyncio.IncompleteReadError:
                    return  # the program exited
                except asyncio.LimitOverrunError:
                    # an over-long request: refuse it, then stop listening (its rest is unframed)
                    await self._send(writer, self._error(f"the request is too large (at most {self.limits.max_request_bytes} bytes)"))
                    return
                reply = await self._answer(line)
                await self._send(writer, reply)
        except (BrokenPipeError, ConnectionResetError):
            return
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _send(self, writer: asyncio.StreamWriter, reply: dict[str, Any]) -> None:
        data = json.dumps(reply, ensure_ascii=False, default=str).encode()
        if len(data) + 1 > self.limits.max_reply_bytes:
            data = json.dumps(self._error(
                f"the result is too large ({len(data)} bytes, at most {self.limits.max_reply_bytes}); ask for less "
                "(a LIMIT, fewer columns, a narrower query)"
            )).encode()
        writer.write(data + b"\n")
        await writer.drain()

    @staticmethod
    def _error(message: str) -> dict[str, Any]:
        return {"ok": False, "error": message}

    async def _answer(self, line: bytes) -> dict[str, Any]:
        if len(line) > self.limits.max_request_bytes:
            return self._error(f"the request is too large (at most {self.limits.max_request_bytes} bytes)")
        try:
            request = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return self._error("the request is not JSON")
        if not isinstance(request, dict) or not isinstance(request.get("fn"), str) or not isinstance(request.get("args", {}), dict):
            return self._error('a request is {"fn": name, "args": {...}}')
        fn = self.functions.get(request["fn"])
        if fn is None:
            offered = ", ".join(self.functions) or "none"
            return self._error(f"no server function {request['fn']!r} in this run (offered: {offered})")
        if len(self.calls) >= self.limits.max_calls:
            return self._error(f"too many tool calls (at most {self.limits.max_calls} per run)")
        if self._busy_s >= self.limits.total_s:
            return self._error(f"the tool calls of this run used up their {self.limits.total_s:g}s")
        args = {k: v for k, v in request.get("args", {}).items() if k in fn.params and v is not None}
        timeout = min(self.limits.call_timeout_s, self.limits.total_s - self._busy_s)
        start = time.monotonic()
        self._call_started = start
        try:
            result = await asyncio.wait_for(self.tools[fn.tool].run(self.ctx, args), timeout)
        except TimeoutError:
            result = ToolResult(False, f"Error: {fn.name} took longer than {timeout:.0f}s")
        finally:
            self._call_started = None
            self._busy_s += time.monotonic() - start
        self.calls.append(CallRecord(fn.name, args, result.ok, result.output, round(time.monotonic() - start, 4)))
        if not result.ok:
            return self._error(result.output.removeprefix("Error: "))
        return {"ok": True, "result": fn.result(result)}
