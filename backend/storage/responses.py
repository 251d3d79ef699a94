"""Stored Responses (``/v1/responses`` with ``store``): one JSON file each, a directory per user.

``{responses_dir}/{user_id}/{resp_id}.json`` holds the response object, this request's input items
and the transcript before it (``history``), so ``previous_response_id`` continues a conversation even
after an earlier link of the chain was deleted or evicted. Another user's id is simply not found.
Each user keeps at most ``max_per_user`` responses: saving one more evicts that user's oldest.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from backend.errors import NotFoundError
from backend.storage.ids import require_id
from backend.storage.jsonstore import atomic_write_json, file_lock, read_json

PREFIX = "resp"


class ResponseStore:
    def __init__(self, root: Path, max_per_user: int) -> None:
        self._root = Path(root)
        self.max_per_user = max_per_user

    def _user_dir(self, user_id: str) -> Path:
        require_id(user_id, "u", what="user")
        return self._root / user_id

    def _path(self, user_id: str, resp_id: str) -> Path:
        require_id(resp_id, PREFIX, what="response")
        return self._user_dir(user_id) / f"{resp_id}.json"

    def _files(self, directory: Path) -> list[Path]:
        return [p for p in directory.glob(f"{PREFIX}_*.json") if p.is_file()]

    def save(self, user_id: str, record: dict[str, Any]) -> list[str]:
        """Write ``record`` (it carries ``id``); returns the ids evicted to respect the cap."""
        path = self._path(user_id, record["id"])
        directory = path.parent
        directory.mkdir(parents=True, exist_ok=True)
        record = {**record, "user_id": user_id, "stored_at": time.time()}
        evicted: list[str] = []
        with file_lock(directory / "store"):  # one writer per user: save + evict is atomic to others
            atomic_write_json(path, record)
            files = self._files(directory)
            if len(files) > self.max_per_user:
                files.sort(key=lambda p: (_mtime(p), p.name))
                for old in files[: len(files) - self.max_per_user]:
                    if old != path:
                        old.unlink(missing_ok=True)
                        evicted.append(old.stem)
        return evicted

    def get(self, user_id: str, resp_id: str, *, param: str | None = None) -> dict[str, Any]:
        try:
            path = self._path(user_id, resp_id)
        except NotFoundError:
            raise NotFoundError(f"Response with id '{str(resp_id)[:64]}' not found.", param=param) from None
        record = read_json(path)
        if not isinstance(record, dict) or record.get("user_id") != user_id:
            raise NotFoundError(f"Response with id '{resp_id}' not found.", param=param)
        return record

    def delete(self, user_id: str, resp_id: str) -> None:
        self.get(user_id, resp_id)
        path = self._path(user_id, resp_id)
        with file_lock(path.parent / "store"):
            path.unlink(missing_ok=True)

    def count(self, user_id: str) -> int:
        directory = self._user_dir(user_id)
        return len(self._files(directory)) if directory.is_dir() else 0

    def export_user(self, user_id: str) -> list[dict[str, Any]]:
        directory = self._user_dir(user_id)
        out = []
        if directory.is_dir():
            for path in sorted(self._files(directory), key=lambda p: (_mtime(p), p.name)):
                record = read_json(path)
                if record and record.get("user_id") == user_id:
                    out.append({"response": record.get("response"), "input_items": record.get("input_items", [])})
        return out

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


def _mtime(path: Path) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except FileNotFoundError:
        return 0
