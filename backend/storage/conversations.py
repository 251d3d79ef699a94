"""Conversations: one JSON file each, under a directory per user.

``{conversations_dir}/{user_id}/{conv_id}.json``: listing a user's conversations never reads
another user's files, and another user's id simply is not found (404).

``{conversations_dir}/{user_id}/index.json`` caches each conversation's summary and the documents
it cites, keyed by the file's ``(inode, mtime_ns, size)``. Listing stats the files and re-reads
only those that changed since the index was written (a write from another process, or one a crash
interrupted, changes the stamp), so a list reads one small file instead of every conversation.
The index is only a cache: deleting it loses nothing, the next listing rebuilds it.

Search (``search``) reads conversations newest first and stops after ``max_bytes`` of stored JSON:
a user with many large conversations gets a ``truncated`` answer, never a request that runs on.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.errors import NotFoundError, StorageError
from backend.storage.ids import is_valid_id, new_id, require_id
from backend.storage.jsonstore import JsonFile, atomic_write_json, file_lock, read_json

MAX_IDEMPOTENCY_KEYS = 50
TITLE_CHARS = 80
SNIPPET_CHARS = 160
INDEX_NAME = "index.json"
INDEX_VERSION = 2  # 2: entries carry ``order`` (nanosecond update time)
#: the keys a conversation's ``settings`` object may hold (validated by the API layer)
SETTING_KEYS = ("system_prompt", "temperature", "model", "mode")
# characters JSON escapes: a query holding one cannot be pre-checked against the raw file text
_ESCAPED_RE = re.compile(r'["\\\x00-\x1f]')
Records = list[dict[str, Any]]  # (the store's ``list`` method shadows the builtin in its class)


def summary(conv: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": conv["id"],
        "title": conv.get("title") or "New conversation",
        "created_at": conv["created_at"],
        "updated_at": conv["updated_at"],
        "message_count": len(conv.get("messages", [])),
        "settings": dict(conv.get("settings") or {}),
    }


def _touch(conv: dict[str, Any], now: float | None = None) -> None:
    """Mark ``conv`` updated: ``updated_at`` in whole seconds (as the API shows it) and ``updated_ns``,
    which orders conversations updated within the same second."""
    ns = time.time_ns() if now is None else int(now * 1_000_000_000)
    conv["updated_at"] = ns // 1_000_000_000
    conv["updated_ns"] = ns


def _order(conv: dict[str, Any]) -> int:
    return int(conv.get("updated_ns") or int(conv["updated_at"]) * 1_000_000_000)


def title_from(text: str) -> str:
    line = " ".join(text.split())
    return line[: TITLE_CHARS - 1] + "…" if len(line) > TITLE_CHARS else line


def message_text(message: dict[str, Any]) -> str:
    """The text of a message: its string content, or the text parts of a content list."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def cited_files(conv: dict[str, Any]) -> list[str]:
    """The document ids the conversation's messages cite (their stored ``sources``), first citation first."""
    seen: dict[str, None] = {}
    for message in conv.get("messages", []):
        for source in message.get("sources") or []:
            file_id = source.get("file_id") if isinstance(source, dict) else None
            if isinstance(file_id, str):
                seen.setdefault(file_id, None)
    return list(seen)


def find_folded(text: str, folded: str) -> tuple[int, int] | None:
    """``(start, end)`` in ``text`` of the first match of ``folded`` (a casefolded query) under
    Unicode case folding — "strasse" finds "Straße", "ΣΟΦΙΑ" finds "σοφια" — or ``None``."""
    haystack = text.casefold()
    pos = haystack.find(folded)
    if pos < 0:
        return None
    if len(haystack) == len(text):  # every character folded to one: positions line up
        return pos, pos + len(folded)
    starts = []  # the folded position where each original character begins
    at = 0
    for ch in text:
        starts.append(at)
        at += len(ch.casefold())
    start = max(i for i, s in enumerate(starts) if s <= pos)
    end = next((i for i, s in enumerate(starts) if s >= pos + len(folded)), len(text))
    return start, end


def snippet(text: str, start: int, end: int, width: int = SNIPPET_CHARS) -> str:
    """At most ``width`` characters of ``text`` around ``text[start:end]``, whitespace collapsed,
    with "…" where the text goes on."""
    span = width - 2  # room for an ellipsis on each side
    lo = max(0, start - max(0, span - (end - start)) // 2)
    hi = min(len(text), lo + span)
    lo = max(0, hi - span)
    piece = " ".join(text[lo:hi].split())
    return ("…" if lo > 0 else "") + piece + ("…" if hi < len(text) else "")


@dataclass
class SearchPage:
    items: list[dict[str, Any]]
    total: int
    truncated: bool  # the byte budget ran out before every conversation was read


class ConversationStore:
    def __init__(self, root: Path) -> None:
        self._root = Path(root)
        # conversations this process wrote since the index last looked (a stamp can repeat when a
        # same-size rewrite reuses the inode within one clock tick)
        self._dirty: set[tuple[str, str]] = set()
        self._dirty_lock = threading.Lock()
        # per user: (stamp of index.json, its entries) as last read or written here (entries are never mutated)
        self._memo: dict[str, tuple[tuple[int, int, int], dict[str, dict[str, Any]]]] = {}

    def _user_dir(self, user_id: str) -> Path:
        require_id(user_id, "u", what="user")
        return self._root / user_id

    def _file(self, user_id: str, conv_id: str) -> JsonFile:
        require_id(conv_id, "conv", what="conversation")
        return JsonFile(self._user_dir(user_id) / f"{conv_id}.json")

    @contextlib.contextmanager
    def _update(self, user_id: str, conv_id: str) -> Iterator[Any]:
        """Locked read-modify-write of one conversation; the index learns it changed."""
        try:
            with self._file(user_id, conv_id).update() as conv:
                yield conv
        finally:
            with self._dirty_lock:
                self._dirty.add((user_id, conv_id))

    # ------------------------------------------------------------------ index
    def _entries(self, user_id: str) -> dict[str, dict[str, Any]]:
        """``{conv_id: {"stamp", "summary", "cited"}}`` for every conversation of the user, fresh."""
        directory = self._user_dir(user_id)
        if not directory.is_dir():
            return {}
        index_path = directory / INDEX_NAME
        index_stamp = _stamp(index_path)
        memo = self._memo.get(user_id)
        if memo is not None and index_stamp is not None and memo[0] == index_stamp:
            old = memo[1]  # the index as this process last read or wrote it: no need to parse it again
        else:
            try:
                cached = read_json(index_path, {}) or {}
            except ValueError:  # a damaged cache: rebuild it
                cached = {}
            old = cached.get("entries", {}) if cached.get("version") == INDEX_VERSION else {}
        with self._dirty_lock:
            dirty = {c for (u, c) in self._dirty if u == user_id}
            self._dirty -= {(user_id, c) for c in dirty}
        fresh: dict[str, dict[str, Any]] = {}
        changed = False
        with os.scandir(directory) as it:
            for de in it:
                conv_id = de.name[:-5] if de.name.endswith(".json") else ""
                if not is_valid_id(conv_id, "conv"):
                    continue
                try:
                    st = de.stat()
                except FileNotFoundError:
                    continue
                stamp = [st.st_ino, st.st_mtime_ns, st.st_size]
                entry = old.get(conv_id)
                if entry is None or entry.get("stamp") != stamp or conv_id in dirty:
                    conv = _read_quietly(Path(de.path))
                    if not conv or conv.get("user_id") != user_id:
                        continue
                    entry = {"stamp": stamp, "summary": summary(conv), "cited": cited_files(conv), "order": _order(conv)}
                    changed = True
                fresh[conv_id] = entry
        if (changed or len(fresh) != len(old)) and directory.is_dir():
            with contextlib.suppress(OSError, StorageError):  # a cache: a failed write costs a re-read later
                atomic_write_json(index_path, {"version": INDEX_VERSION, "entries": fresh})
                index_stamp = _stamp(index_path)
        if index_stamp is not None:
            self._memo[user_id] = (index_stamp, fresh)
        return fresh

    def _newest_first(self, user_id: str) -> list[dict[str, Any]]:
        entries = list(self._entries(user_id).values())
        entries.sort(key=lambda e: (e["order"], e["summary"]["id"]), reverse=True)
        return entries

    # ------------------------------------------------------------------ CRUD
    def create(self, user_id: str, title: str | None = None) -> dict[str, Any]:
        now = time.time()
        conv: dict[str, Any] = {
            "id": new_id("conv"),
            "user_id": user_id,
            "title": title_from(title) if title else None,
            "created_at": int(now),
            "updated_at": int(now),
            "updated_ns": int(now * 1_000_000_000),
            "messages": [],
            "settings": {},
            "idempotency": {},
        }
        with self._update(user_id, str(conv["id"])) as data:
            data.update(conv)
        return conv

    def get(self, user_id: str, conv_id: str) -> dict[str, Any]:
        f = self._file(user_id, conv_id)
        conv: dict[str, Any] | None = read_json(f.path)
        if not conv or conv.get("user_id") != user_id:
            raise NotFoundError(f"No conversation found with id '{conv_id}'.", param="conversation_id")
        return conv

    def list(self, user_id: str, limit: int = 20, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        entries = self._newest_first(user_id)
        return [dict(e["summary"]) for e in entries[offset : offset + limit]], len(entries)

    def update(
        self, user_id: str, conv_id: str, *, title: str | None = None, settings: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Rename and/or merge ``settings`` (a ``None`` value removes that setting); the new summary."""
        self.get(user_id, conv_id)
        with self._update(user_id, conv_id) as conv:
            if title is not None:
                conv["title"] = title_from(title)
            if settings:
                stored = dict(conv.get("settings") or {})
                for key, value in settings.items():
                    if value is None:
                        stored.pop(key, None)
                    else:
                        stored[key] = value
                conv["settings"] = stored
            _touch(conv)
            return summary(conv)

    def rename(self, user_id: str, conv_id: str, title: str) -> dict[str, Any]:
        return self.update(user_id, conv_id, title=title)

    def truncate(self, user_id: str, conv_id: str, index: int) -> dict[str, Any]:
        """Remove message ``index`` and every later one (404 past the end); the conversation after it.

        Stored idempotency replies go too: they answered turns that no longer exist, so a resent
        question is answered afresh instead of replaying the removed answer."""
        self.get(user_id, conv_id)
        with self._update(user_id, conv_id) as conv:
            messages = conv.setdefault("messages", [])
            if not 0 <= index < len(messages):
                raise NotFoundError(
                    f"This conversation has {len(messages)} message{'' if len(messages) == 1 else 's'}: "
                    f"there is no message at index {index}.",
                    param="index",
                )
            del messages[index:]
            conv["idempotency"] = {}
            _touch(conv)
            return copy.deepcopy(conv)

    def delete(self, user_id: str, conv_id: str) -> None:
        self.get(user_id, conv_id)
        f = self._file(user_id, conv_id)
        f.delete()
        lock = Path(str(f.path) + ".lock")
        lock.unlink(missing_ok=True)
        with self._dirty_lock:
            self._dirty.add((user_id, conv_id))

    def delete_user(self, user_id: str) -> int:
        directory = self._user_dir(user_id)
        if not directory.is_dir():
            return 0
        count = sum(1 for p in directory.iterdir() if is_valid_id(p.name.removesuffix(".json"), "conv")
                    and p.name.endswith(".json"))
        shutil.rmtree(directory, ignore_errors=True)
        return count

    def export(self, user_id: str, conv_id: str) -> dict[str, Any]:
        """One conversation as stored, without the replay cache."""
        conv = self.get(user_id, conv_id)
        conv.pop("idempotency", None)
        return conv

    def export_user(self, user_id: str) -> Records:
        directory = self._user_dir(user_id)
        out = []
        if directory.is_dir():
            for path in sorted(directory.glob("conv_*.json")):
                conv = read_json(path)
                if conv and conv.get("user_id") == user_id:
                    conv.pop("idempotency", None)
                    out.append(conv)
        return out

    # ------------------------------------------------------------------ search and citations
    def search(self, user_id: str, query: str, limit: int, offset: int, *, max_bytes: int) -> SearchPage:
        """Conversations whose title or message text contains ``query`` under Unicode case folding
        (case-insensitive: "strasse" finds "Straße"), newest first.

        Each item is a summary plus ``snippet``: up to 160 characters around the first match in the
        messages, or ``None`` when only the title matched. Reads at most ``max_bytes`` of stored JSON,
        newest conversations first; a conversation that no longer fits is skipped and the page says
        ``truncated``.
        """
        folded = query.casefold()
        precheck = not _ESCAPED_RE.search(query)  # then a match in a message is a match in the raw file
        matches: Records = []
        budget = max_bytes
        truncated = False
        for entry in self._newest_first(user_id):
            size = int(entry["stamp"][2])
            if size > budget:  # not read: the answer says it is incomplete
                truncated = True
                continue
            budget -= size
            item = self._match(user_id, entry, folded, precheck)
            if item is not None:
                matches.append(item)
        return SearchPage(matches[offset : offset + limit], len(matches), truncated)

    def _match(self, user_id: str, entry: dict[str, Any], folded: str, precheck: bool) -> dict[str, Any] | None:
        head = entry["summary"]
        title_hit = folded in str(head["title"]).casefold()
        path = self._user_dir(user_id) / f"{head['id']}.json"
        try:
            raw = path.read_text(encoding="utf-8")
        except FileNotFoundError:  # deleted since the listing
            return None
        text_hit = None
        if not precheck or folded in raw.casefold():  # most files that do not match stop here, unparsed
            conv = _parse_quietly(raw)
            if conv is not None and conv.get("user_id") == user_id:
                for message in conv.get("messages", []):
                    text = message_text(message)
                    found = find_folded(text, folded)
                    if found is not None:
                        text_hit = snippet(text, *found)
                        break
        if not title_hit and text_hit is None:
            return None
        return {**head, "snippet": text_hit}

    def citations(self, user_id: str) -> dict[str, Records]:
        """``{file_id: [{"conversation_id", "title"}, ...]}``: which conversations cite each document."""
        out: dict[str, Records] = {}
        if not is_valid_id(user_id, "u"):  # an id that can own no conversations cites nothing
            return out
        for entry in self._newest_first(user_id):
            head = entry["summary"]
            for file_id in entry.get("cited", []):
                out.setdefault(file_id, []).append({"conversation_id": head["id"], "title": head["title"]})
        return out

    # ------------------------------------------------------------------ chat pipeline
    def replay(self, user_id: str, conv_id: str, idempotency_key: str | None) -> dict[str, Any] | None:
        """The stored response of an already-applied request with this idempotency key."""
        if not idempotency_key:
            return None
        conv = self.get(user_id, conv_id)
        stored: dict[str, Any] | None = conv.get("idempotency", {}).get(idempotency_key)
        return stored

    def append_exchange(
        self,
        user_id: str,
        conv_id: str,
        new_messages: Records,
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
        with self._update(user_id, conv_id) as conv:
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
            _touch(conv)
            if idempotency_key:
                keys.pop(idempotency_key, None)  # re-insert: the newest keys are kept
                keys[idempotency_key] = response or {}
                while len(keys) > MAX_IDEMPOTENCY_KEYS:
                    keys.pop(next(iter(keys)))
        return True


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _parse_quietly(raw: str) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _read_quietly(path: Path) -> dict[str, Any] | None:
    try:
        return _parse_quietly(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
