"""The services one app instance uses, built once by the app factory (``build_services``).

Routes reach them through ``backend.api.deps.get_services``. Heavy objects (the model, the
embedding model, indexes) are created lazily on first use or in the start-up task, never at import.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from backend.settings import Settings

if TYPE_CHECKING:
    from backend.auth.tokens import TokenService
    from backend.llm.base import LLMProvider
    from backend.llm.scheduler import FairScheduler
    from backend.mcp.client import McpManager
    from backend.observability.audit import AuditLog
    from backend.observability.metrics import Metrics
    from backend.ratelimit import RateLimiter
    from backend.storage.conversations import ConversationStore
    from backend.storage.keys import ApiKeyStore
    from backend.storage.responses import ResponseStore
    from backend.storage.usage import UsageStore
    from backend.storage.users import UserStore

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
class Services:
    settings: Settings
    users: UserStore
    keys: ApiKeyStore
    conversations: ConversationStore
    tokens: TokenService
    provider: LLMProvider
    scheduler: FairScheduler
    rate_limiter: RateLimiter
    metrics: Metrics
    audit: AuditLog
    #: fair per-user queue in front of the embedding model (``/v1/embeddings``, one batch at a time)
    embedding_scheduler: FairScheduler | None = None
    responses: ResponseStore = None  # type: ignore[assignment]  # stored /v1/responses (built in build_services)
    usage: UsageStore = None  # type: ignore[assignment]  # per-user request/token counters (build_services)
    mcp: McpManager | None = None  # attached MCP servers (backend.mcp.client), started in the lifespan
    extras: dict[str, Any] = field(default_factory=dict)
    _rag: Any = None
    _rag_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def rag(self) -> Any:
        """The RAG service (``backend.rag.service.RagService``), created on first use."""
        if self._rag is None:
            async with self._rag_lock:
                if self._rag is None:
                    from backend.rag.service import RagService

                    self._rag = await asyncio.to_thread(RagService, self.settings, self)
        return self._rag

    def rag_if_loaded(self) -> Any:
        return self._rag
