"""Fixtures of the MCP tests: the FastMCP fixture server over stdio (spawned by the client) and over
streamable HTTP (a subprocess on a free 127.0.0.1 port), and configs pointing at them."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port

pytest.importorskip("mcp")

REPO = Path(__file__).resolve().parents[2]


def stdio_config(name: str = "fx", **extra: Any) -> dict[str, Any]:
    return {"name": name, "transport": "stdio", "command": sys.executable,
            "args": ["-m", "tests.mcp.fixture_server", "stdio"], "cwd": str(REPO), **extra}


@dataclass
class HttpFixture:
    port: int
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def config(self, name: str = "web", **extra: Any) -> dict[str, Any]:
        return {"name": name, "transport": "http", "url": self.url, "allow_private_network": True, **extra}

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.mcp.fixture_server", "http", str(self.port)],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("the MCP fixture server exited early")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.1)
        raise RuntimeError("the MCP fixture server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


@pytest.fixture
def http_server() -> Iterator[HttpFixture]:
    server = HttpFixture(free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def mcp_settings(make_settings):
    """Settings with fast ping/reconnect so the tests see a server go and come back quickly."""

    def factory(*servers: dict[str, Any], **overrides: Any):
        base = {"mcp_servers": list(servers), "mcp_ping_interval_s": 0.3, "mcp_reconnect_min_s": 0.2,
                "mcp_reconnect_max_s": 0.5}
        return make_settings(**(base | overrides))

    return factory
