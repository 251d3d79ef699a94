"""Liveness, readiness details and Prometheus metrics (no secrets in any of them)."""

from __future__ import annotations

import os
import tempfile
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response

from backend.api.deps import get_services
from backend.services import Services

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


def _storage_writable(services: Services) -> dict[str, Any]:
    try:
        fd, name = tempfile.mkstemp(prefix=".~health.", suffix=".tmp", dir=services.settings.data_dir)
        os.close(fd)
        os.unlink(name)
        return {"ok": True}
    except OSError as exc:
        return {"ok": False, "error": exc.strerror or "not writable"}


@router.get("/health/detailed")
async def health_detailed(services: Services = Depends(get_services)) -> JSONResponse:
    try:
        model = await services.provider.health()
    except Exception as exc:  # the backend being down is what this endpoint reports
        model = {"ok": False, "error": type(exc).__name__}
    storage = _storage_writable(services)
    queue = {"active": services.scheduler.active, "waiting": services.scheduler.waiting,
             "capacity": services.scheduler.capacity, "max_queue": services.scheduler.max_queue}
    ok = bool(model.get("ok")) and storage["ok"]
    from backend.tools.registry import available_tools, unavailable_tools

    tools = {"available": list(available_tools(services.settings, services)),
             "unavailable": unavailable_tools(services.settings)}
    if services.mcp is not None:
        tools["mcp_servers"] = services.mcp.describe()
    body = {"status": "ok" if ok else "degraded", "model": model, "storage": storage, "queue": queue,
            "provider": services.settings.llm_provider, "tools": tools}
    return JSONResponse(body, status_code=200 if ok else 503)


@router.get("/metrics", response_class=Response)
async def metrics(services: Services = Depends(get_services)) -> Response:
    services.metrics.queue_depth.set(services.scheduler.waiting)
    services.metrics.queue_active.set(services.scheduler.active)
    return Response(services.metrics.render(), media_type=services.metrics.content_type)
