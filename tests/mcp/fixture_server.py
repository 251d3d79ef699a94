"""A real MCP server written with the SDK's FastMCP, for the client tests.

    python -m tests.mcp.fixture_server stdio
    python -m tests.mcp.fixture_server http PORT     # streamable HTTP on 127.0.0.1:PORT/mcp
"""

from __future__ import annotations

import asyncio
import os
import sys

from mcp.server.fastmcp import FastMCP

mcp = FastMCP("fixture", host="127.0.0.1", log_level="WARNING")


@mcp.tool()
def add(a: float, b: float) -> str:
    """Add two numbers and return the sum."""
    total = a + b
    return str(int(total) if total == int(total) else total)


@mcp.tool()
def echo(text: str, times: int = 1) -> str:
    """Echo the text back, repeated `times` times."""
    return " ".join([text] * times)


@mcp.tool()
def explode(reason: str) -> str:
    """Always fails with the given reason."""
    raise ValueError(f"fixture failure: {reason}")


@mcp.tool()
async def sleepy(seconds: float) -> str:
    """Sleep for some seconds, then answer."""
    await asyncio.sleep(seconds)
    return f"slept {seconds}s"


@mcp.tool()
def big(chars: int) -> str:
    """Return a long text of `chars` characters."""
    return "x" * chars


@mcp.tool()
def crash() -> str:
    """Kill this server process (to test a server that goes away)."""
    os._exit(3)


def main() -> None:
    transport = sys.argv[1] if len(sys.argv) > 1 else "stdio"
    if transport == "http":
        mcp.settings.port = int(sys.argv[2])
        mcp.run("streamable-http")
    else:
        mcp.run("stdio")


if __name__ == "__main__":
    main()
