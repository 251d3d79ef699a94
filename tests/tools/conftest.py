"""Fixtures for the tool tests: isolated Settings, a ToolContext, and the recording replay server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backend.settings import Settings
from backend.tools.base import Tool, ToolContext, ToolResult
from tests.fixtures.replay_server import ReplayServer


@pytest.fixture
def tool_settings(tmp_path: Path):
    """Settings on a temp data dir; no .env; the SSRF allow-list is empty unless a test sets it."""

    def factory(**overrides: Any) -> Settings:
        base: dict[str, Any] = {"data_dir": tmp_path / "data", "ssrf_allow_hosts": []}
        base.update(overrides)
        return Settings(_env_file=None, **base)

    return factory


@pytest.fixture
def run_tool():
    """Run a Tool the way agents do (``Tool.run``: validation + errors as observations)."""

    def runner(tool: Tool, settings: Settings, services: Any = None, **arguments: Any) -> ToolResult:
        ctx = ToolContext(user_id="user_test", settings=settings, documents=services.rag if services is not None else None)
        return asyncio.run(tool.run(ctx, arguments))

    return runner


@pytest.fixture(scope="session")
def replay() -> Iterator[ReplayServer]:
    with ReplayServer() as server:
        yield server


@pytest.fixture
def replay_settings(tool_settings, replay: ReplayServer):
    """Settings whose external API URLs point at the replay server, with 127.0.0.1 explicitly allowed."""

    def factory(**overrides: Any) -> Settings:
        base: dict[str, Any] = {
            "ssrf_allow_hosts": ["127.0.0.1"],
            "tavily_base_url": replay.url("/tavily"),
            "wikipedia_api_url": replay.url("/wikipedia/w/api.php"),
            "weather_geocoding_url": replay.url("/geocoding/v1/search"),
            "weather_forecast_url": replay.url("/forecast/v1/forecast"),
            "tool_http_timeout_s": 5.0,
        }
        base.update(overrides)
        return tool_settings(**base)

    return factory
