"""Per-user usage counters: answered requests and tokens, one small JSON file per user.

``{usage_dir}/{user_id}.json`` = ``{"requests", "prompt_tokens", "completion_tokens", "updated_at"}``.
``record_usage`` is a locked read-modify-write (``JsonFile.update``: ``flock`` plus an atomic
replace), so concurrent requests in threads or in other worker processes lose no count, and a
crash mid-write leaves the old or the new numbers. One file per user: one user's traffic never
waits on another's lock.

``count_later`` is the chat pipeline's path: it adds to in-memory pending counts and returns at once;
one writer thread per store folds everything pending into the files (one locked write per user per
round of ``GATHER_S``, however many requests arrived meanwhile), so an answer never waits on a write
and its fsyncs, and a busy user costs one write per round instead of one per request.
``get``, ``delete_user`` and ``flush`` (called at shutdown) first wait for the writer and write what is
still pending, so this process reads its own counts back exactly; other processes see them once the
round lands (about ``GATHER_S``). ``flush`` also runs at interpreter exit; a killed process loses the
counts of its last round.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from pathlib import Path
from typing import Any

from backend.storage.ids import require_id
from backend.storage.jsonstore import JsonFile

COUNTERS = ("requests", "prompt_tokens", "completion_tokens")
log = logging.getLogger(__name__)
GATHER_S = 0.05  #: how long the writer lets counts accumulate before a round of writes


def _flush_at_exit(ref: weakref.ref[UsageStore]) -> None:
    store = ref()
    if store is not None:
        try:
            store.flush()
        except Exception:
            log.exception("usage counters not written at exit")


def _empty() -> dict[str, Any]:
    return {key: 0 for key in COUNTERS}


class UsageStore:
    def __init__(self, root: Path) -> None:
        self._root = Path(root)
        self._pending: dict[str, list[int]] = {}  #: user id -> [requests, prompt, completion] not yet written
        self._pending_lock = threading.Lock()  # held only to touch ``_pending`` (never across a write)
        self._write_lock = threading.Lock()  # held by whoever writes pending counts to the files
        self._writer: threading.Thread | None = None  #: started with the first ``count_later``
        self._wake = threading.Event()

    def _file(self, user_id: str) -> JsonFile:
        require_id(user_id, "u", what="user")
        return JsonFile(self._root / f"{user_id}.json", _empty)

    def record_usage(self, user_id: str, prompt_tokens: int, completion_tokens: int) -> None:
        """Count one answered request and its tokens (negative numbers count as 0)."""
        self._add(self._file(user_id), 1, max(0, int(prompt_tokens)), max(0, int(completion_tokens)))

    @staticmethod
    def _add(file: JsonFile, requests: int, prompt_tokens: int, completion_tokens: int) -> None:
        with file.update() as counters:
            counters["requests"] = int(counters.get("requests", 0)) + requests
            counters["prompt_tokens"] = int(counters.get("prompt_tokens", 0)) + prompt_tokens
            counters["completion_tokens"] = int(counters.get("completion_tokens", 0)) + completion_tokens
            counters["updated_at"] = int(time.time())

    def count_later(self, user_id: str, prompt_tokens: int, completion_tokens: int) -> None:
        """``record_usage`` without waiting: counted now in memory, written by the writer thread
        (which gathers for ``GATHER_S`` first, so a burst of answers costs one write per user)."""
        require_id(user_id, "u", what="user")
        with self._pending_lock:
            counts = self._pending.setdefault(user_id, [0, 0, 0])
            counts[0] += 1
            counts[1] += max(0, int(prompt_tokens))
            counts[2] += max(0, int(completion_tokens))
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_rounds, name="usage-writer", daemon=True)
                self._writer.start()
                atexit.register(_flush_at_exit, weakref.ref(self))
        self._wake.set()

    def _write_rounds(self) -> None:
        while True:
            self._wake.wait()
            time.sleep(GATHER_S)
            self._wake.clear()
            try:
                with self._write_lock:
                    self._write_pending()
            except Exception:  # storage trouble: the counts stay pending for the next round or flush
                log.exception("usage counters not written; kept in memory for the next attempt")

    def _write_pending(self) -> None:
        """Write everything pending (the caller holds ``_write_lock``); what fails is put back."""
        with self._pending_lock:
            batch, self._pending = self._pending, {}
        items = list(batch.items())
        for i, (user_id, (requests, prompt, completion)) in enumerate(items):
            try:
                self._add(self._file(user_id), requests, prompt, completion)
            except BaseException:
                with self._pending_lock:
                    for uid, counts in items[i:]:
                        merged = self._pending.setdefault(uid, [0, 0, 0])
                        for k, n in enumerate(counts):
                            merged[k] += n
                raise

    def flush(self) -> None:
        """Wait for the writer and write whatever is still pending (shutdown; before a read)."""
        with self._write_lock:
            self._write_pending()

    def get(self, user_id: str) -> dict[str, int]:
        """``{"requests", "prompt_tokens", "completion_tokens"}`` so far (zeros for a user never counted)."""
        f = self._file(user_id)
        self.flush()
        stored = f.read()
        return {key: int(stored.get(key, 0)) for key in COUNTERS}

    def delete_user(self, user_id: str) -> bool:
        f = self._file(user_id)
        with self._pending_lock:
            self._pending.pop(user_id, None)
        self.flush()
        removed = f.delete()
        Path(str(f.path) + ".lock").unlink(missing_ok=True)
        return removed
