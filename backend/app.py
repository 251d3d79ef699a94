"""The app factory: ``create_app(settings)`` wires settings, services, middleware and routers.

Nothing heavy happens at import or in the factory: state directories, secrets and the model
are prepared in the lifespan start-up (the model loads in the background; requests wait for it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from backend.errors import install_handlers
from backend.middleware import (
    BodyLimitMiddleware,
    BrowserGuardMiddleware,
    RequestContextMiddleware,
    SecurityHeadersMiddleware,
    is_loopback_host,
)
from backend.settings import Settings

log = logging.getLogger("backend.app")


def build_services(settings: Settings, provider=None):  # noqa: ANN001, ANN201 - returns Services
    from backend.auth.secrets import load_jwt_secret
    from backend.auth.tokens import TokenService
    from backend.llm.scheduler import FairScheduler
    from backend.observability.audit import AuditLog
    from backend.observability.metrics import Metrics
    from backend.ratelimit import RateLimiter
    from backend.services import Services
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
    if provider is None:
        from backend.llm.factory import create_provider

        provider = create_provider(settings)
    return Services(
        settings=settings,
        users=UserStore(settings.users_path, settings.bcrypt_rounds),
        keys=ApiKeyStore(settings.keys_path),
        conversations=ConversationStore(settings.conversations_path),
        tokens=TokenService(
            load_jwt_secret(settings), settings.jwt_expiry_minutes, settings.secrets_path / "revoked_tokens.json"
        ),
        provider=provider,
        scheduler=FairScheduler(
            provider.parallel, settings.queue_max_size, settings.queue_timeout_s, settings.queue_max_per_user or None
        ),
        rate_limiter=RateLimiter(settings.rate_limit_rpm, settings.rate_limit_tpm),
        metrics=Metrics(),
        audit=AuditLog(settings.audit_log_path),
        embedding_scheduler=FairScheduler(
            1, settings.queue_max_size, settings.queue_timeout_s, settings.queue_max_per_user or None
        ),
        responses=ResponseStore(settings.responses_path, settings.responses_max_per_user),
        usage=UsageStore(settings.usage_path),
    )


async def _load_model(services) -> None:  # noqa: ANN001
    try:
        await services.provider.start()
        log.info("model backend ready: %s", services.provider.model_id)
    except Exception as exc:  # the server stays up; /health/detailed and 503s say why
        log.error("model backend failed to start: %s", exc)


async def _start_mcp(services, endpoint, stack: contextlib.AsyncExitStack) -> None:  # noqa: ANN001
    """Attach the configured MCP servers (their tools join the registry) and run our /mcp endpoint."""
    if services.settings.mcp_servers:
        from backend.mcp.client import McpManager

        services.mcp = McpManager(services.settings)
        stack.push_async_callback(services.mcp.aclose)
        await services.mcp.start()
    if endpoint is not None:
        await stack.enter_async_context(endpoint.run(services))


def create_app(settings: Settings | None = None, *, provider=None) -> FastAPI:  # noqa: ANN001
    """``provider`` replaces the configured model backend (tests use a scripted one)."""
    settings = settings or Settings()
    if settings.allow_anonymous and not is_loopback_host(settings.host):
        raise ValueError("ALLOW_ANONYMOUS needs the server bound to loopback (HOST=127.0.0.1): anyone who can "
                         f"reach {settings.host} would otherwise use it without credentials")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = build_services(settings, provider)
        app.state.services = services
        if services.users.count() == 0:
            log.warning(
                "no users yet: create an administrator with "
                "`python run_backend.py create-user NAME --admin` (the password is read from stdin)"
            )
        loader = asyncio.create_task(_load_model(services))
        services.extras["model_loader"] = loader
        try:
            async with contextlib.AsyncExitStack() as mcp_stack:
                await _start_mcp(services, mcp_endpoint, mcp_stack)
                yield
        finally:
            loader.cancel()
            with contextlib.suppress(BaseException):
                await loader
            await services.provider.aclose()
            rag = services.rag_if_loaded()
            if rag is not None and hasattr(rag, "aclose"):
                await rag.aclose()
            for pool in [v for v in services.extras.values() if isinstance(v, ThreadPoolExecutor)]:
                pool.shutdown(wait=False, cancel_futures=True)  # the auth/store and bcrypt pools

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
    mcp_endpoint = None
    if settings.mcp_server_enabled:  # our tools for MCP clients (the SDK is loaded in the lifespan)
        from backend.mcp.server import PATH, McpEndpoint

        mcp_endpoint = McpEndpoint()
        app.add_route(PATH, mcp_endpoint, methods=["GET", "POST", "DELETE"], include_in_schema=False)

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
