"""The services one app instance uses, built once by the app factory (``build_services``).

Routes reach them through ``backend.api.deps.get_services``; lower layers get only the parts
they use (a ``ToolContext``, a ``ScheduledProvider``). Heavy objects (the model, the embedding
model, indexes) are created lazily on first use or in the start-up task, never at import.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from backend.settings import Settings

if TYPE_CHECKING:
    from backend.auth.throttle import LoginThrottle, RegistrationThrottle
    from backend.auth.tokens import TokenService
    from backend.llm.base import LLMProvider
    from backend.llm.scheduled import CallCounter, ModelReadiness, ScheduledProvider
    from backend.llm.scheduler import FairScheduler
    from backend.mcp.client import McpManager
    from backend.observability.audit import AuditLog
    from backend.observability.metrics import Metrics
    from backend.rag.jobs import IngestJobs
    from backend.rag.service import RagService
    from backend.ratelimit import RateLimits
    from backend.shared_state import SharedState
    from backend.slots import PerUserSlots
    from backend.storage.conversations import ConversationStore
    from backend.storage.keys import ApiKeyStore
    from backend.storage.responses import ResponseStore
    from backend.storage.usage import UsageStore
    from backend.storage.users import UserStore
    from backend.tools.base import ToolContext

log = logging.getLogger("backend.services")


@dataclass
class Principal:
    """The authenticated caller of a request."""

    user_id: str
    username: str
    role: str  # "admin" | "user"
    via: str  # "jwt" | "api_key" | "anonymous"
    token_id: str | None = None  # jti of the JWT, or the API key id
    scopes: frozenset[str] = frozenset()  # what this credential may do (backend.auth.scopes)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass
class HealthProbe:
    """The last model + storage check of ``/health/detailed`` (shared for ``HEALTH_CACHE_S``)."""

    at: float = 0.0
    value: tuple[dict[str, Any], dict[str, Any]] | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class LazyRag:
    """The RAG service (``backend.rag.service.RagService``), built on first use (it loads the embedder)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._service: RagService | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> RagService:
        if self._service is None:
            async with self._lock:
                if self._service is None:
                    from backend.rag.service import RagService

                    self._service = await asyncio.to_thread(RagService, self._settings)
        return self._service

    @property
    def loaded(self) -> RagService | None:
        return self._service


@dataclass
class Services:
    settings: Settings
    users: UserStore
    keys: ApiKeyStore
    conversations: ConversationStore
    responses: ResponseStore  #: stored /v1/responses
    usage: UsageStore  #: per-user request/token counters (admin usage)
    tokens: TokenService
    provider: LLMProvider
    model: ModelReadiness  #: the provider's start-up load (started in the lifespan)
    scheduler: FairScheduler
    #: fair per-user queue in front of the embedding model (``/v1/embeddings``, one batch at a time)
    embedding_scheduler: FairScheduler
    rate_limiter: RateLimits
    upload_limiter: RateLimits  #: per-user document uploads per minute (``RAG_UPLOAD_RPM``)
    search_limiter: RateLimits  #: per-user document searches per minute (``RAG_SEARCH_RPM``)
    login_throttle: LoginThrottle
    registration_throttle: RegistrationThrottle
    rag_jobs: IngestJobs  #: background document ingestion
    search_slots: PerUserSlots  #: conversation searches each user has running (CONVERSATION_SEARCH_PER_USER)
    metrics: Metrics
    audit: AuditLog
    rag_service: LazyRag
    #: JSON-store reads/writes off the event loop, in a pool of their own (auth never waits on ingestion)
    store_pool: ThreadPoolExecutor
    #: bcrypt, in two threads of its own: a burst of logins cannot occupy every thread
    hash_pool: ThreadPoolExecutor
    #: where limits, throttles, revocations, queue places and job status live: memory or Redis (REDIS_URL)
    shared: SharedState
    health_probe: HealthProbe = field(default_factory=HealthProbe)
    mcp: McpManager | None = None  #: attached MCP servers (backend.mcp.client), started in the lifespan
    #: the model agent steps run on when it is not the chat model (backend.llm.agent_model); shares ``scheduler``
    agent_provider: LLMProvider | None = None
    agent_model: ModelReadiness | None = None  #: its load, started after the chat model's
    agent_model_note: str | None = None  #: why agents use the chat model although another was configured

    async def rag(self) -> RagService:
        """The RAG service, created on first use."""
        return await self.rag_service.get()

    def scheduled_provider(
        self, user_id: str, counter: CallCounter | None = None, *, agent: bool = False
    ) -> ScheduledProvider:
        """The provider as one request of ``user_id`` sees it: fair slots, timeouts, counted calls.

        ``agent``: the model for agent steps (the agent model when there is one, else the chat model)."""
        from backend.llm.scheduled import ScheduledProvider, StreamTimeouts

        timeouts = StreamTimeouts(self.settings.first_byte_timeout_s, self.settings.stream_idle_timeout_s)
        provider, readiness = self.provider, self.model
        if agent and self.agent_provider is not None and self.agent_model is not None:
            provider, readiness = self.agent_provider, self.agent_model
        return ScheduledProvider(
            provider, scheduler=self.scheduler, metrics=self.metrics, readiness=readiness,
            timeouts=timeouts, user_id=user_id, counter=counter,
        )

    @property
    def agent_model_id(self) -> str:
        """The model id agent steps run on."""
        return (self.agent_provider or self.provider).model_id

    def tool_context(self, user_id: str, *, request_id: str | None = None, file_ids: list[str] | None = None) -> ToolContext:
        """What a tool run for ``user_id`` may use: the settings, the documents, the MCP servers."""
        from backend.tools.base import ToolContext

        return ToolContext(
            user_id=user_id, settings=self.settings, request_id=request_id, file_ids=file_ids,
            documents=self.rag, mcp=self.mcp,
        )

    async def aclose(self) -> None:
        """On shutdown: stop the model load, let ingestion jobs finish (up to 30 s), close the rest."""
        await self.model.aclose()
        await self.provider.aclose()
        if self.agent_model is not None:
            await self.agent_model.aclose()
        if self.agent_provider is not None:
            await self.agent_provider.aclose()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.rag_jobs.drain(), timeout=30)
        rag = self.rag_service.loaded
        if rag is not None:
            await rag.aclose()
        try:
            await asyncio.to_thread(self.usage.flush)  # counts still pending in memory
        except Exception:
            log.exception("usage counters could not be written at shutdown")
        self.shared.close()  # the Redis connection pool, if any
        for pool in (self.store_pool, self.hash_pool):
            pool.shutdown(wait=False, cancel_futures=True)
