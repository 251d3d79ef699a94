"""Document upload, listing, download, deletion and search for RAG (``/api/files``).

Every route is scoped to the caller: another user's ``file_id`` or ``job_id`` is a 404.
Upload size is enforced while the body streams in (``Content-Length`` first, then a byte count
on the ASGI receive channel), so an oversized upload is refused before it is stored.

Bounded per user: uploads and searches have their own per-minute rate limits (429 with
``Retry-After``, like chat), the document and storage quotas are checked before the body is read
and again under the user's ingestion lock (403), and async jobs are capped (429). Uploaded files
are spooled to disk (under the jobs directory) while they wait, never held in memory.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import UploadFile

from backend.api.deps import current_user, get_services, off_loop
from backend.errors import APIError, BadRequestError, PayloadTooLargeError
from backend.rag.jobs import IngestJobs
from backend.rag.service import IngestItem, RagService
from backend.ratelimit import RateLimiter
from backend.services import Principal, Services

log = logging.getLogger("backend.api.files")

router = APIRouter(prefix="/api/files", tags=["files"])

CurrentUser = Annotated[Principal, Depends(current_user)]
ServicesDep = Annotated[Services, Depends(get_services)]

MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers on top of the file bytes
_SAFE_DOWNLOAD_TYPES = {
    "application/pdf",
    "application/json",
    "text/plain",
    "text/csv",
    "text/markdown",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
}


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=4000)
    top_k: int = Field(5, ge=1, le=50)
    file_ids: list[str] | None = Field(None, max_length=200)
    mode: Literal["hybrid", "dense", "bm25"] = "hybrid"


async def _rag(services: Services) -> RagService:
    return await services.rag()


def _jobs(services: Services) -> IngestJobs:
    jobs = services.extras.get("rag_jobs")
    if jobs is None:
        settings = services.settings
        jobs = services.extras.setdefault(
            "rag_jobs",
            IngestJobs(settings.jobs_path, settings.rag_max_jobs_per_user, settings.rag_finished_jobs_kept),
        )
    return jobs


def _limiter(services: Services, name: str, rpm: int) -> RateLimiter:
    limiter = services.extras.get(name)
    if limiter is None:
        limiter = services.extras.setdefault(name, RateLimiter(rpm, 0))
    return limiter


def _rate_limit(services: Services, principal: Principal, name: str, rpm: int) -> dict[str, str]:
    """Count one request against the per-user limit ``name`` (0 = unlimited); 429 past it.

    Returns the ``x-ratelimit-*`` request headers for the response, as chat sends them.
    """
    if rpm <= 0 or (principal.is_admin and services.settings.rate_limit_admin_exempt):
        return {}
    state = _limiter(services, name, rpm).check(principal.user_id)
    return {k: v for k, v in state.headers().items() if "-requests" in k}


async def _read_limited_form(request: Request, limit: int, max_files: int) -> Any:
    """Parse the multipart body, refusing it (413) as soon as more than ``limit`` bytes arrive."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            too_big = int(declared) > limit
        except ValueError as exc:
            raise BadRequestError("Invalid Content-Length header.") from exc
        if too_big:
            raise PayloadTooLargeError(f"The upload is larger than the limit of {limit} bytes.", param="files")
    received = 0
    upstream = request.receive

    async def limited_receive() -> dict[str, Any]:
        nonlocal received
        message = await upstream()
        if message.get("type") == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise PayloadTooLargeError(f"The upload is larger than the limit of {limit} bytes.", param="files")
        return message

    limited = Request(request.scope, limited_receive)
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise BadRequestError("Send the files as multipart/form-data in a field named 'files'.", param="files")
    return await limited.form(max_files=max_files, max_fields=20)


SPOOL_BLOCK = 1024 * 1024


async def _collect_items(request: Request, settings: Any, spool: Path) -> list[IngestItem]:
    """Read the uploaded files into ``spool`` (one file each, streamed in blocks): nothing stays in memory."""
    limit = settings.max_upload_bytes
    form = await _read_limited_form(request, limit + MULTIPART_OVERHEAD, settings.rag_max_files_per_upload)
    try:
        uploads = [f for f in form.getlist("files") if isinstance(f, UploadFile)]
        if not uploads:
            raise BadRequestError("No files were sent: use the multipart field name 'files'.", param="files")
        items: list[IngestItem] = []
        total = 0
        for n, upload in enumerate(uploads):
            path = spool / f"{n:03d}.upload"
            with path.open("wb") as out:
                while block := await upload.read(SPOOL_BLOCK):
                    total += len(block)
                    if total > limit:
                        raise PayloadTooLargeError(
                            f"'{upload.filename}' takes the upload past the limit of {limit} bytes.", param="files"
                        )
                    await asyncio.to_thread(out.write, block)
            items.append(IngestItem(upload.filename or "document", path, upload.content_type))
        return items
    finally:
        await form.close()


def _result_entry(item: IngestItem, result: dict[str, Any] | APIError) -> dict[str, Any]:
    if isinstance(result, APIError):
        return {"filename": item.filename, "status": "failed", "error": result.body()["error"]}
    return result


_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "PDF, DOCX, Markdown or text documents (repeat the field for several).",
                        }
                    },
                }
            }
        },
    }
}


@router.post("/upload", openapi_extra=_UPLOAD_BODY)
async def upload_files(
    request: Request,
    response: Response,
    principal: CurrentUser,
    services: ServicesDep,
    run_async: Annotated[bool, Query(alias="async")] = False,
) -> Any:
    """Upload one or more documents (field ``files``); ``?async=true`` answers 202 with a job id."""
    settings = services.settings
    user_id = principal.user_id
    limit_headers = _rate_limit(services, principal, "rag_upload_limiter", settings.rag_upload_rpm)
    response.headers.update(limit_headers)
    jobs = _jobs(services)
    if run_async:
        jobs.check_capacity(user_id)
    rag = await _rag(services)
    rag.check_ingest_capacity()
    await asyncio.to_thread(rag.check_quota, user_id, 1, 0)  # refuse before reading the body
    spool = await asyncio.to_thread(jobs.spool_dir, user_id)
    try:
        items = await _collect_items(request, settings, spool)
        names = [i.filename for i in items]

        async def work(progress: Any) -> dict[str, Any]:
            results = await rag.ingest_many(user_id, items, progress)
            entries = [_result_entry(i, r) for i, r in zip(items, results, strict=False)]
            if all(isinstance(r, APIError) for r in results):
                raise next(r for r in results if isinstance(r, APIError))
            return {"object": "list", "data": entries}

        if run_async:
            job = jobs.start(user_id, names, work, spool=spool)
            spool = None  # the job owns it now and removes it when it ends
            headers = {"Location": f"/api/files/jobs/{job['id']}", **limit_headers}
            return JSONResponse(job, status_code=202, headers=headers)
        return await work(None)
    finally:
        if spool is not None:
            await asyncio.to_thread(shutil.rmtree, spool, True)


@router.get("/jobs/{job_id}")
async def get_job(
    job_id: str, principal: CurrentUser, services: ServicesDep
) -> dict[str, Any]:
    return _jobs(services).get(principal.user_id, job_id)


@router.get("/documents")
async def list_documents(
    principal: CurrentUser,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    page = await (await _rag(services)).list_documents(principal.user_id, limit, offset)
    cited = await off_loop(services, services.conversations.citations, principal.user_id)
    page["data"] = [_with_citations(doc, cited) for doc in page["data"]]
    return page


def _with_citations(doc: dict[str, Any], cited: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The document plus ``cited_in``: this user's conversations whose answers cite it, newest first."""
    return {**doc, "cited_in": cited.get(doc["file_id"], [])}


@router.get("/documents/{file_id}")
async def get_document(
    file_id: str, principal: CurrentUser, services: ServicesDep
) -> dict[str, Any]:
    doc = await (await _rag(services)).get_document(principal.user_id, file_id)
    return _with_citations(doc, await off_loop(services, services.conversations.citations, principal.user_id))


@router.get("/documents/{file_id}/content")
async def download_document(
    file_id: str, principal: CurrentUser, services: ServicesDep
) -> FileResponse:
    path, record = await (await _rag(services)).document_path(principal.user_id, file_id)
    media_type = record.get("content_type") if record.get("content_type") in _SAFE_DOWNLOAD_TYPES else None
    return FileResponse(
        path,
        media_type=media_type or "application/octet-stream",
        filename=record["filename"],
        content_disposition_type="attachment",
        headers={
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
            "Cache-Control": "private, no-store",
        },
    )


@router.delete("/documents/{file_id}")
async def delete_document(
    file_id: str, principal: CurrentUser, services: ServicesDep
) -> dict[str, Any]:
    return await (await _rag(services)).delete_document(principal.user_id, file_id)


@router.post("/search")
async def search_documents(
    body: SearchRequest, response: Response, principal: CurrentUser, services: ServicesDep
) -> dict[str, Any]:
    response.headers.update(_rate_limit(services, principal, "rag_search_limiter", services.settings.rag_search_rpm))
    hits = await (await _rag(services)).search(principal.user_id, body.query, body.top_k, body.file_ids, mode=body.mode)
    return {"object": "list", "data": [h.to_dict() for h in hits]}
