"""The app factory: ``create_app(settings)`` wires settings, services, middleware and routers.

Nothing heavy happens at import or in the factory: state directories, secrets and the model
are prepared in the lifespan start-up (the model loads in the background; requests wait for it).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.routing import Route

from backend.errors import install_handlers
from backend.middleware import (
    BodyLimitMiddleware,
    BrowserGuardMiddleware,
    RequestContextMiddleware,
    SecurityHeadersMiddleware,
    is_loopback_host,
)
from backend.settings import Settings

if TYPE_CHECKING:
    from backend.llm.base import LLMProvider
    from backend.mcp.server import McpEndpoint
    from backend.services import Services

log = logging.getLogger("backend.app")


def build_services(
    settings: Settings, provider: LLMProvider | None = None, agent_provider: LLMProvider | None = None
) -> Services:
    """Every service of one app instance, typed and built once (nothing heavy: no model load)."""
    from backend.auth.secrets import load_jwt_secret
    from backend.auth.throttle import LoginThrottle, RegistrationThrottle
    from backend.auth.tokens import TokenService
    from backend.llm.scheduled import ModelReadiness
    from backend.llm.scheduler import FairScheduler
    from backend.observability.audit import AuditLog
    from backend.observability.metrics import Metrics
    from backend.rag.jobs import IngestJobs
    from backend.services import LazyRag, Services
    from backend.shared_state import SharedState
    from backend.slots import PerUserSlots
    from backend.storage.conversations import ConversationStore
    from backend.storage.jsonstore import clean_temp_files
    from backend.storage.keys import ApiKeyStore
    from backend.storage.responses import ResponseStore
    from backend.storage.usage import UsageStore
    from backend.storage.users import UserStore

    for directory in settings.state_dirs():
        directory.mkdir(parents=True, exist_ok=True)
    removed = clean_temp_files(settings.data_dir)
    if removed:
        log.warning("removed %d temp files left by an interrupted write", removed)
    agent_note = None
    if provider is None:
        from backend.llm.agent_model import create_agent_provider
        from backend.llm.factory import create_provider

        provider = create_provider(settings)
        if agent_provider is None:
            agent_provider, agent_note = create_agent_provider(settings)
    model = ModelReadiness(provider)
    s = settings
    per_user = s.queue_max_per_user or None
    # where limits, throttles, revocations, queue places and job status live: here, or Redis (REDIS_URL)
    shared = SharedState.from_settings(s)
    return Services(
        settings=settings,
        users=UserStore(s.users_path, s.bcrypt_rounds),
        keys=ApiKeyStore(s.keys_path),
        conversations=ConversationStore(s.conversations_path),
        responses=ResponseStore(s.responses_path, s.responses_max_per_user),
        usage=UsageStore(s.usage_path),
        tokens=TokenService(
            load_jwt_secret(s), s.jwt_expiry_minutes, shared.revocations(s.secrets_path / "revoked_tokens.json")
        ),
        provider=provider,
        model=model,
        agent_provider=agent_provider,
        agent_model=ModelReadiness(agent_provider, after=model) if agent_provider is not None else None,
        agent_model_note=agent_note,
        scheduler=FairScheduler(
            provider.parallel, s.queue_max_size, s.queue_timeout_s, per_user, accounting=shared.queue_accounting("model")
        ),
        embedding_scheduler=FairScheduler(
            1, s.queue_max_size, s.queue_timeout_s, per_user, accounting=shared.queue_accounting("embeddings")
        ),
        rate_limiter=shared.rate_limiter(s.rate_limit_rpm, s.rate_limit_tpm),
        upload_limiter=shared.rate_limiter(s.rag_upload_rpm, 0, "upload"),
        search_limiter=shared.rate_limiter(s.rag_search_rpm, 0, "search"),
        login_throttle=LoginThrottle(
            s.login_max_failures, s.login_window_s, s.login_throttle_max_keys,
            counter=shared.counter("login", s.login_max_failures, s.login_window_s, s.login_throttle_max_keys),
        ),
        registration_throttle=RegistrationThrottle(
            s.registration_max_per_ip, s.registration_window_s, s.login_throttle_max_keys,
            counter=shared.counter("register", s.registration_max_per_ip, s.registration_window_s,
                                   s.login_throttle_max_keys),
        ),
        search_slots=PerUserSlots(s.conversation_search_per_user),
        rag_jobs=IngestJobs(
            s.jobs_path, s.rag_max_jobs_per_user, s.rag_finished_jobs_kept, board=shared.job_board()
        ),
        metrics=Metrics(),
        audit=AuditLog(s.audit_log_path),
        rag_service=LazyRag(settings),
        store_pool=ThreadPoolExecutor(max_workers=8, thread_name_prefix="store-io"),
        hash_pool=ThreadPoolExecutor(max_workers=2, thread_name_prefix="bcrypt"),
        shared=shared,
    )


async def _start_mcp(services: Services, endpoint: McpEndpoint | None, stack: contextlib.AsyncExitStack) -> None:
    """Attach the configured MCP servers (their tools join the registry) and run our /mcp endpoint."""
    if services.settings.mcp_servers:
        from backend.mcp.client import McpManager

        services.mcp = McpManager(services.settings)
        stack.push_async_callback(services.mcp.aclose)
        await services.mcp.start()
    if endpoint is not None:
        await stack.enter_async_context(endpoint.run(services))


def create_app(
    settings: Settings | None = None, *, provider: LLMProvider | None = None, agent_provider: LLMProvider | None = None
) -> FastAPI:
    """``provider`` replaces the configured model backend (tests use a scripted one); ``agent_provider``
    the model agent steps run on (default: ``backend.llm.agent_model`` for a configured backend, else
    the same model)."""
    settings = settings or Settings()
    if settings.allow_anonymous and not is_loopback_host(settings.host):
        raise ValueError("ALLOW_ANONYMOUS needs the server bound to loopback (HOST=127.0.0.1): anyone who can "
                         f"reach {settings.host} would otherwise use it without credentials")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = build_services(settings, provider, agent_provider)
        app.state.services = services
        if services.users.count() == 0:
            log.warning(
                "no users yet: create an administrator with "
                "`python run_backend.py create-user NAME --admin` (the password is read from stdin)"
            )
        services.model.start_loading()
        if services.agent_model is not None:
            services.agent_model.start_loading()  # after the chat model: one load at a time
        try:
            async with contextlib.AsyncExitStack() as mcp_stack:
                await _start_mcp(services, mcp_endpoint, mcp_stack)
                yield
        finally:
            await services.aclose()

    app = FastAPI(
        title="Local agent server",
        version="0.1.0",
        description="OpenAI-compatible chat completions with agents, tools and RAG on a local model.",
        lifespan=lifespan,
        docs_url=None,  # /docs is served with local assets by backend.api.docs
        redoc_url=None,
    )
    app.state.settings = settings
    install_handlers(app)

    from backend.api import (
        account,
        admin,
        auth,
        completions,
        conversations,
        docs,
        embeddings,
        files,
        health,
        keys,
        responses,
        v1,
    )

    for module in (v1, embeddings, completions, responses, auth, keys, admin, conversations, files, account, health, docs):
        app.include_router(module.router)
    docs.install_openapi(app)
    mcp_endpoint: McpEndpoint | None = None
    if settings.mcp_server_enabled:  # our tools for MCP clients (the SDK is loaded in the lifespan)
        from backend.mcp.server import PATH, McpEndpoint

        mcp_endpoint = McpEndpoint()
        # an ASGI app as the endpoint (Route passes it scope/receive/send)
        app.router.routes.append(Route(PATH, mcp_endpoint, methods=["GET", "POST", "DELETE"], include_in_schema=False))

    # middleware runs bottom-up: the request context wraps everything
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=False,
            allow_methods=["GET", "POST", "DELETE", "PATCH", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "X-Conversation-Id", "Idempotency-Key"],
            expose_headers=["X-Conversation-Id", "X-Request-Id", "Retry-After"],
        )
    app.add_middleware(BrowserGuardMiddleware, settings=settings)
    app.add_middleware(BodyLimitMiddleware, settings=settings)
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(RequestContextMiddleware)

    if settings.serve_frontend and settings.frontend_dir.is_dir():
        from fastapi.staticfiles import StaticFiles

        app.mount("/", StaticFiles(directory=settings.frontend_dir, html=True), name="frontend")
    return app
