"""Fixtures for the provider tests.

The real models are assembled once into ``data/models`` (or ``TEST_MODELS_DIR``) and each is
loaded once per session. Async code runs with ``asyncio.run`` (one loop per call); the embedded
provider is loop-agnostic, the HTTP providers are created per test.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from backend.llm.base import LLMProvider
from backend.llm.types import GenerationParams, StreamEvent
from backend.settings import Settings

REPO = Path(__file__).resolve().parents[2]
MODELS_DIR = Path(os.environ.get("TEST_MODELS_DIR", REPO / "data" / "models"))
T = TypeVar("T")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "model: loads the real embedded model (slow)")


def arun(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def collect(provider: LLMProvider, messages: list[dict[str, Any]], **params: Any) -> list[StreamEvent]:
    return [ev async for ev in provider.stream(messages, GenerationParams(**params))]


def text_of(events: list[StreamEvent]) -> str:
    return "".join(ev.content or "" for ev in events)


def base_settings(tmp: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"data_dir": tmp / "data", "models_dir": MODELS_DIR, "log_json": False}
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest.fixture
def settings_factory(tmp_path: Path):
    def make(**overrides: Any) -> Settings:
        return base_settings(tmp_path, **overrides)

    return make


@pytest.fixture(scope="session")
def session_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("llm")


@pytest.fixture(scope="session")
def qwen_settings(session_tmp: Path) -> Settings:
    return base_settings(session_tmp, embedded_model="qwen2.5-coder-0.5b", embedded_n_ctx=4096, temperature=0.2)


@pytest.fixture(scope="session")
def qwen_path(qwen_settings: Settings) -> Path:
    from backend.llm.model_assets import ensure_model

    return ensure_model(qwen_settings)


@pytest.fixture(scope="session")
def qwen(qwen_settings: Settings, qwen_path: Path) -> Iterator[Any]:
    """The 0.5B model in an EmbeddedProvider, loaded once for the session."""
    from backend.llm.embedded import EmbeddedProvider

    provider = EmbeddedProvider(qwen_settings)
    arun(provider.start())
    yield provider
    arun(provider.aclose())


@pytest.fixture(scope="session")
def ollama_server(qwen_path: Path) -> Iterator[Any]:
    """The Ollama-API fixture server on the 0.5B model."""
    from tests.fixtures.ollama_server import OllamaFixtureServer

    with OllamaFixtureServer(qwen_path, model_name="qwen2.5-coder:0.5b", n_ctx=4096) as srv:
        yield srv


@pytest.fixture
def ollama_fixture(ollama_server: Any) -> Iterator[Any]:
    ollama_server.fault = "none"
    ollama_server.requests.clear()
    yield ollama_server
    ollama_server.fault = "none"


@pytest.fixture
def fake_openai() -> Iterator[Any]:
    from tests.fixtures.fake_openai_server import FakeOpenAIServer

    with FakeOpenAIServer(model="fake-model", api_key="sk-test-upstream") as srv:
        yield srv
