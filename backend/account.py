"""A user's data rights: export everything as one archive; delete the account and all it holds.

Reading every conversation, zipping and deleting files is blocking work: it runs in a thread, so
an export of a big account delays that request only.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
import zipfile
from typing import Any

from backend.services import Services
from backend.storage.keys import public_key
from backend.storage.users import public_user


async def export_user(services: Services, user_id: str) -> bytes:
    await asyncio.to_thread(services.users.require, user_id)
    documents: list[dict[str, Any]] = []
    rag = await services.rag()
    if hasattr(rag, "export_user"):
        documents = await rag.export_user(user_id)
    elif hasattr(rag, "list_documents"):  # the documents' metadata, page by page
        while True:
            page = await rag.list_documents(user_id, 100, len(documents))
            documents.extend(page.get("data", []))
            if not page.get("has_more") or not page.get("data"):
                break
    return await asyncio.to_thread(_archive, services, user_id, documents)


def _archive(services: Services, user_id: str, documents: list[dict[str, Any]]) -> bytes:
    user = services.users.require(user_id)
    parts = {
        "user.json": public_user(user),
        "api_keys.json": [public_key(k) for k in services.keys.list_for(user_id)],
        "documents.json": documents,
        "conversations.json": services.conversations.export_user(user_id),
        "responses.json": services.responses.export_user(user_id),
        "usage.json": services.usage.get(user_id),
        "export.json": {"exported_at": int(time.time()), "format": 1},
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, value in parts.items():
            zf.writestr(name, json.dumps(value, ensure_ascii=False, indent=1))
    return buf.getvalue()


async def delete_user(services: Services, user_id: str) -> dict[str, int]:
    await asyncio.to_thread(services.users.require, user_id)
    rag = await services.rag()
    documents = 0
    if hasattr(rag, "delete_user"):
        result = await rag.delete_user(user_id)
        documents = result if isinstance(result, int) else 0
    return await asyncio.to_thread(_delete_records, services, user_id, documents)


def _delete_records(services: Services, user_id: str, documents: int) -> dict[str, int]:
    counts = {
        "conversations": services.conversations.delete_user(user_id),
        "api_keys": services.keys.delete_user(user_id),
        "responses": services.responses.delete_user(user_id),
        "documents": documents,
    }
    services.usage.delete_user(user_id)
    services.users.delete(user_id)  # last: a crash midway leaves a user who can retry
    return counts
