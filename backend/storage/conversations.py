"""Conversations: one JSON file each, under a directory per user.

``{conversations_dir}/{user_id}/{conv_id}.json``: listing a user's conversations never reads
another user's files, and another user's id simply is not found (404).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from backend.errors import NotFoundError
from backend.storage.ids import new_id, require_id
from backend.storage.jsonstore import JsonFile, file_lock, read_json

MAX_IDEMPOTENCY_KEYS = 50
TITLE_CHARS = 80


def summary(conv: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": conv["id"],
        "title": conv.get("title") or "New conversation",
        "created_at": conv["created_at"],
        "updated_at": conv["updated_at"],
        "message_count": len(conv.get("messages", [])),
    }


def title_from(text: str) -> str:
    line = " ".join(text.split())
    return line[: TITLE_CHARS - 1] + "…" if len(line) > TITLE_CHARS else line


class ConversationStore:
    def __init__(self, root: Path) -> None:
        self._root = Path(root)

    def _user_dir(self, user_id: str) -> Path:
        require_id(user_id, "u", what="user")
        return self._root / user_id

    def _file(self, user_id: str, conv_id: str) -> JsonFile:
        require_id(conv_id, "conv", what="conversation")
        return JsonFile(self._user_dir(user_id) / f"{conv_id}.json")

    def create(self, user_id: str, title: str | None = None) -> dict[str, Any]:
        now = time.time()
        conv = {
            "id": new_id("conv"),
            "user_id": user_id,
            "title": title_from(title) if title else None,
            "created_at": int(now),
            "updated_at": int(now),
            "messages": [],
            "idempotency": {},
        }
        f = self._file(user_id, conv["id"])
        with f.update() as data:
            data.update(conv)
        return conv

    def get(self, user_id: str, conv_id: str) -> dict[str, Any]:
        f = self._file(user_id, conv_id)
        conv = read_json(f.path)
        if not conv or conv.get("user_id") != user_id:
            raise NotFoundError(f"No conversation found with id '{conv_id}'.", param="conversation_id")
        return conv

    def list(self, user_id: str, limit: int = 20, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        directory = self._user_dir(user_id)
        if not directory.is_dir():
            return [], 0
        items = []
        for path in directory.glob("conv_*.json"):
            conv = read_json(path)
            if conv and conv.get("user_id") == user_id:
                items.append(summary(conv))
        items.sort(key=lambda c: (c["updated_at"], c["id"]), reverse=True)
        return items[offset : offset + limit], len(items)

    def rename(self, user_id: str, conv_id: str, title: str) -> dict[str, Any]:
        self.get(user_id, conv_id)
        with self._file(user_id, conv_id).update() as conv:
            conv["title"] = title_from(title)
            conv["updated_at"] = int(time.time())
            return summary(conv)

    def delete(self, user_id: str, conv_id: str) -> None:
        self.get(user_id, conv_id)
        f = self._file(user_id, conv_id)
        f.delete()
        lock = Path(str(f.path) + ".lock")
        lock.unlink(missing_ok=True)

    def delete_user(self, user_id: str) -> int:
        directory = self._user_dir(user_id)
        count = 0
        if directory.is_dir():
            for path in directory.iterdir():
                if path.name.endswith(".json"):
                    count += 1
                path.unlink(missing_ok=True)
            directory.rmdir()
        return count

    def export_user(self, user_id: str) -> list[dict[str, Any]]:
        directory = self._user_dir(user_id)
        out = []
        if directory.is_dir():
            for path in sorted(directory.glob("conv_*.json")):
                conv = read_json(path)
                if conv and conv.get("user_id") == user_id:
                    conv.pop("idempotency", None)
                    out.append(conv)
        return out

    def replay(self, user_id: str, conv_id: str, idempotency_key: str | None) -> dict[str, Any] | None:
        """The stored response of an already-applied request with this idempotency key."""
        if not idempotency_key:
            return None
        conv = self.get(user_id, conv_id)
        return conv.get("idempotency", {}).get(idempotency_key)

    def append_exchange(
        self,
        user_id: str,
        conv_id: str,
        new_messages: list[dict[str, Any]],
        reply: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        response: dict[str, Any] | None = None,
        dedupe: bool = True,
    ) -> bool:
        """Append the new request messages and the reply in one atomic write.

        With ``dedupe``, returns False (and changes nothing) if ``idempotency_key`` was already
        applied; without it the key is only recorded (a deliberate repeat of the same turn).
        """
        self.get(user_id, conv_id)
        now = int(time.time())
        with file_lock(self._file(user_id, conv_id).path):
            pass  # make sure the directory and lock exist before update() takes it
        with self._file(user_id, conv_id).update() as conv:
            keys = conv.setdefault("idempotency", {})
            if dedupe and idempotency_key and idempotency_key in keys:
                return False
            for msg in new_messages:
                conv["messages"].append({**msg, "created_at": now})
            conv["messages"].append({**reply, "created_at": now})
            if not conv.get("title"):
                first_user = next((m for m in conv["messages"] if m.get("role") == "user"), None)
                if first_user and isinstance(first_user.get("content"), str):
                    conv["title"] = title_from(first_user["content"])
            conv["updated_at"] = now
            if idempotency_key:
                keys.pop(idempotency_key, None)  # re-insert: the newest keys are kept
                keys[idempotency_key] = response or {}
                while len(keys) > MAX_IDEMPOTENCY_KEYS:
                    keys.pop(next(iter(keys)))
        return True
