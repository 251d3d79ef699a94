"""Fixtures for the RAG tests: isolated settings, a RagService, and a tiny app with the files router."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from backend.api import files as files_api
from backend.api.deps import current_user, get_services
from backend.errors import AuthenticationError, install_handlers
from backend.rag.jobs import IngestJobs
from backend.rag.service import RagService
from backend.ratelimit import RateLimiter
from backend.services import Principal
from backend.settings import Settings
from backend.storage.conversations import ConversationStore

DOCS_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "docs"  # origins and licences: SOURCES.md there
PDF_DIR = DOCS_DIR / "pdf"
DOCX_DIR = DOCS_DIR / "docx"


def make_rag_settings(tmp_path: Path, **overrides: Any) -> Settings:
    overrides.setdefault("allowed_hosts", ["testserver"])  # the host name TestClient sends
    return Settings(_env_file=None, data_dir=tmp_path / "data", **overrides)


@pytest.fixture
def rag_settings(tmp_path: Path) -> Settings:
    return make_rag_settings(tmp_path)


@pytest.fixture
def rag(rag_settings: Settings) -> RagService:
    return RagService(rag_settings, None)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@dataclass
class MiniServices:
    """What the files router touches of ``backend.services.Services``."""

    settings: Settings
    service: RagService
    rag_jobs: IngestJobs = field(init=False)
    upload_limiter: RateLimiter = field(init=False)
    search_limiter: RateLimiter = field(init=False)
    conversations: ConversationStore = field(init=False)  # the documents list names the conversations citing each
    store_pool: ThreadPoolExecutor = field(init=False)  # off_loop's pool for the JSON stores

    def __post_init__(self) -> None:
        s = self.settings
        self.rag_jobs = IngestJobs(s.jobs_path, s.rag_max_jobs_per_user, s.rag_finished_jobs_kept)
        self.upload_limiter = RateLimiter(s.rag_upload_rpm, 0)
        self.search_limiter = RateLimiter(s.rag_search_rpm, 0)
        self.conversations = ConversationStore(s.conversations_path)
        self.store_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="store-io")

    async def rag(self) -> RagService:
        return self.service


def _test_user(request: Request) -> Principal:
    user = request.headers.get("x-test-user")
    if not user:
        raise AuthenticationError()
    return Principal(user_id=f"u_{user}", username=user, role="user", via="jwt")


def build_app(settings: Settings) -> tuple[FastAPI, MiniServices]:
    app = FastAPI()
    install_handlers(app)
    app.include_router(files_api.router)
    services = MiniServices(settings, RagService(settings, None))
    app.state.services = services
    app.dependency_overrides[current_user] = _test_user
    app.dependency_overrides[get_services] = lambda: services
    return app, services


@pytest.fixture
def files_client(tmp_path: Path) -> Iterator[Any]:
    def factory(**overrides: Any) -> TestClient:
        app, _ = build_app(make_rag_settings(tmp_path, **overrides))
        return TestClient(app)

    clients: list[TestClient] = []

    def tracked(**overrides: Any) -> TestClient:
        client = factory(**overrides)
        client.__enter__()
        clients.append(client)
        return client

    yield tracked
    for client in clients:
        client.__exit__(None, None, None)


def as_user(name: str) -> dict[str, str]:
    return {"x-test-user": name}
