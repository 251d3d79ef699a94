"""Liveness, readiness details and Prometheus metrics (no secrets in any of them).

``/health/detailed`` asks the model backend at most once per ``HEALTH_CACHE_S`` (one probe is
shared by concurrent callers), so polling it cannot turn into load on the upstream. ``/metrics``
never calls the upstream and needs ``Authorization: Bearer $METRICS_TOKEN`` when that is set.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import tempfile
import time
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from backend.api.deps import get_services, off_loop
from backend.errors import AuthenticationError
from backend.services import Services

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


def _storage_writable(data_dir: Any) -> dict[str, Any]:
    try:
        fd, name = tempfile.mkstemp(prefix=".~health.", suffix=".tmp", dir=data_dir)
        os.close(fd)
        os.unlink(name)
        return {"ok": True}
    except OSError as exc:
        return {"ok": False, "error": exc.strerror or "not writable"}


async def _probe(services: Services) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        model = await asyncio.wait_for(services.provider.health(), timeout=10)
    except Exception as exc:  # the backend being down is what this endpoint reports
        model = {"ok": False, "error": type(exc).__name__}
    return model, await off_loop(services, _storage_writable, services.settings.data_dir)


async def cached_probe(services: Services) -> tuple[dict[str, Any], dict[str, Any]]:
    """The model and storage checks, reused for ``HEALTH_CACHE_S``; concurrent callers share one."""
    state = services.health_probe

    def fresh() -> bool:
        if state.value is None:
            return False
        ok = state.value[0].get("ok") and state.value[1].get("ok")
        ttl = services.settings.health_cache_s if ok else min(1.0, services.settings.health_cache_s)
        return time.monotonic() - state.at < ttl  # a failure is re-checked sooner: recovery shows

    if state.value is not None and fresh():
        return state.value
    async with state.lock:
        if state.value is None or not fresh():
            state.value = await _probe(services)
            state.at = time.monotonic()
        return state.value


@router.get("/health/detailed")
async def health_detailed(services: Services = Depends(get_services)) -> JSONResponse:
    model, storage = await cached_probe(services)
    queue = {"active": services.scheduler.active, "waiting": services.scheduler.waiting,
             "capacity": services.scheduler.capacity, "max_queue": services.scheduler.max_queue}
    shared = await _shared_state_health(services)
    ok = bool(model.get("ok")) and storage["ok"] and shared["ok"]
    from backend.tools.registry import available_tools, unavailable_tools

    tools: dict[str, Any] = {"available": list(available_tools(services.settings, services.mcp)),
             "unavailable": unavailable_tools(services.settings)}
    if services.mcp is not None:
        tools["mcp_servers"] = services.mcp.describe()
    body = {"status": "ok" if ok else "degraded", "model": model, "agent_model": await _agent_model_health(services),
            "storage": storage, "queue": queue, "provider": services.settings.llm_provider, "tools": tools,
            "shared_state": shared}
    return JSONResponse(body, status_code=200 if ok else 503)


async def _agent_model_health(services: Services) -> dict[str, Any]:
    """The model agent steps run on: the chat model, or another one and its state (it never degrades health:
    agents fall back to nothing else, but chat and routing still work)."""
    if services.agent_provider is None:
        info: dict[str, Any] = {"same_as_chat": True, "model": services.provider.model_id}
        if services.agent_model_note:
            info["note"] = services.agent_model_note
        return info
    try:
        health = await asyncio.wait_for(services.agent_provider.health(), timeout=10)
    except Exception as exc:
        health = {"ok": False, "error": type(exc).__name__}
    return {"same_as_chat": False, **health}


async def _shared_state_health(services: Services) -> dict[str, Any]:
    """Where limits, throttles and revocations live (scale-out): "memory", or "redis" and whether it answers."""
    state = services.shared
    if state.redis is None:
        return {"backend": "memory", "ok": True}
    return {"backend": "redis", "ok": await asyncio.to_thread(state.redis.ping)}


def _check_metrics_token(request: Request, services: Services) -> None:
    expected = services.settings.metrics_token
    if expected is None:
        return
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), expected.get_secret_value().encode()):
        raise AuthenticationError("GET /metrics needs 'Authorization: Bearer <METRICS_TOKEN>'.", code="invalid_metrics_token")


@router.get("/metrics", response_class=Response)
async def metrics(request: Request, services: Services = Depends(get_services)) -> Response:
    _check_metrics_token(request, services)
    services.metrics.queue_depth.set(services.scheduler.waiting)
    services.metrics.queue_active.set(services.scheduler.active)
    return Response(services.metrics.render(), media_type=services.metrics.content_type)
