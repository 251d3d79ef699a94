"""Background ingestion jobs with progress, scoped to the user who started them.

The live state is in memory (progress updates are frequent); every status change is also
written atomically to ``jobs_path/rag/<user_id>/<job_id>.json`` so a finished job can still be
read after a restart. A job that was running when the process died reads as ``failed``.

Bounded per user: at most ``max_active_per_user`` jobs queued or running (429 beyond, with
``Retry-After``), and only the last ``keep_finished`` finished jobs stay in memory (older ones
are read back from disk). A job's uploaded bytes wait in a spool directory on disk
(``spool_dir``), not in memory, and the directory is removed when the job ends.

Replicas (``REDIS_URL``): a ``JobBoard`` makes the live state visible to every replica. The
``RedisJobBoard`` keeps each job's record under a key that, while the job runs, expires unless the
replica running it refreshes it (a heartbeat): a replica that dies leaves a record that lapses, and
the job then reads as failed from the disk record, as after a restart. The per-user count of
active jobs is shared the same way (a sorted set of job ids by lease deadline).
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from backend.errors import APIError, NotFoundError, RateLimitError
from backend.rag.store import user_dir_name
from backend.storage.ids import new_id, require_id
from backend.storage.jsonstore import atomic_write_json, read_json

if TYPE_CHECKING:
    from backend.shared_state import RedisConnection

log = logging.getLogger("backend.rag.jobs")

KEEP_ON_DISK = 200  # finished job records kept per user
JobFn = Callable[[Callable[[str, float], None]], Awaitable[dict[str, Any]]]
LIVE = ("queued", "running")


class JobBoard(Protocol):
    """Live job records shared by replicas."""

    lease_s: float

    def publish(self, job: dict[str, Any]) -> None: ...

    def lookup(self, job_id: str) -> dict[str, Any] | None: ...

    def active(self, user_id: str) -> int: ...


class RedisJobBoard:
    lease_s = 30.0  # a running job's record lapses this long after its replica stopped refreshing it
    finished_ttl_s = 86_400  # finished records stay on disk as well

    def __init__(self, redis: RedisConnection) -> None:
        self._redis = redis

    def _job_key(self, job_id: str) -> str:
        return self._redis.key("job", job_id)

    def _active_key(self, user_id: str) -> str:
        return self._redis.key("jobs-active", user_id)

    def publish(self, job: dict[str, Any]) -> None:
        live = job["status"] in LIVE
        pipe = self._redis.client.pipeline(transaction=True)
        pipe.set(self._job_key(job["id"]), json.dumps(job), ex=int(self.lease_s if live else self.finished_ttl_s))
        active = self._active_key(job["user_id"])
        if live:
            pipe.zadd(active, {job["id"]: time.time() + self.lease_s})
            pipe.expire(active, int(self.lease_s) + 5)
        else:
            pipe.zrem(active, job["id"])
        self._redis.call(pipe.execute)

    def lookup(self, job_id: str) -> dict[str, Any] | None:
        raw = self._redis.call(self._redis.client.get, self._job_key(job_id))
        if raw is None:
            return None
        record = json.loads(raw)
        return record if isinstance(record, dict) else None

    def active(self, user_id: str) -> int:
        key = self._active_key(user_id)
        pipe = self._redis.client.pipeline(transaction=True)
        pipe.zremrangebyscore(key, "-inf", time.time())
        pipe.zcard(key)
        return int(self._redis.call(pipe.execute)[1])


class IngestJobs:
    def __init__(self, root: Path, max_active_per_user: int = 0, keep_finished: int = 50,
                 board: JobBoard | None = None) -> None:
        self.root = Path(root) / "rag"
        self.board = board
        self.max_active_per_user = max_active_per_user
        self.keep_finished = max(0, keep_finished)
        self._jobs: dict[str, dict[str, Any]] = {}
        self._finished: dict[str, deque[str]] = {}  # user -> finished job ids still in memory
        self._tasks: set[asyncio.Task[None]] = set()
        self._lock = threading.Lock()
        self._swept = False

    def sweep_spools(self, older_than_s: float = 3600.0) -> int:
        """Remove spool directories older than ``older_than_s`` (no live job is that old); returns how many."""
        cutoff = time.time() - older_than_s
        removed = 0
        for spool in self.root.glob("*/spool/spool_*"):
            try:
                if spool.stat().st_mtime < cutoff:
                    shutil.rmtree(spool, ignore_errors=True)
                    removed += 1
            except OSError:
                continue
        return removed

    def spool_dir(self, user_id: str) -> Path:
        """A fresh directory for one upload's files while they wait for ingestion (blocking).

        The first call also sweeps spools left behind by a previous process (a crash mid-upload).
        """
        if not self._swept:
            self._swept = True
            self.sweep_spools()
        path = self.root / user_dir_name(user_id) / "spool" / new_id("spool")
        path.mkdir(parents=True, exist_ok=True)
        return path

    def active(self, user_id: str) -> int:
        if self.board is not None:  # every replica's jobs (503 if the shared state is down)
            return self.board.active(user_id)
        with self._lock:
            return sum(
                1 for j in self._jobs.values() if j["user_id"] == user_id and j["status"] in ("queued", "running")
            )

    def check_capacity(self, user_id: str) -> None:
        """429 when the user already has ``max_active_per_user`` jobs queued or running."""
        if self.max_active_per_user and self.active(user_id) >= self.max_active_per_user:
            raise RateLimitError(
                f"You already have {self.max_active_per_user} ingestion jobs queued or running; "
                "wait for one to finish before starting another.",
                code="too_many_jobs",
                headers={"Retry-After": "5"},
            )

    def in_memory(self) -> int:
        with self._lock:
            return len(self._jobs)

    def _path(self, user_id: str, job_id: str) -> Path:
        return self.root / user_dir_name(user_id) / f"{job_id}.json"

    def _save(self, job: dict[str, Any]) -> None:
        try:
            atomic_write_json(self._path(job["user_id"], job["id"]), job)
        except APIError:  # storage trouble must not kill the job; the in-memory state stays right
            log.warning("could not persist job %s", job["id"])
        self._publish(job)

    def _publish(self, job: dict[str, Any]) -> None:
        if self.board is None:
            return
        with self._lock:
            snapshot = dict(job)
        try:
            self.board.publish(snapshot)
        except APIError:  # shared state down: the job goes on; other replicas see it once it is back
            log.warning("could not publish job %s to the shared state", job["id"])

    async def _heartbeat(self, job: dict[str, Any]) -> None:
        """Keep a live job's shared record from lapsing (progress is published too, at most twice a second)."""
        assert self.board is not None
        while True:
            await asyncio.sleep(self.board.lease_s / 3)
            self._publish(job)  # on the loop, so it cannot land after the final record

    @staticmethod
    def public(job: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in job.items() if k != "user_id"}

    def start(self, user_id: str, filenames: list[str], fn: JobFn, spool: Path | None = None) -> dict[str, Any]:
        self.check_capacity(user_id)
        job: dict[str, Any] = {
            "id": new_id("job"),
            "object": "ingest.job",
            "user_id": user_id,
            "status": "queued",
            "stage": "queued",
            "progress": 0.0,
            "filenames": filenames,
            "created_at": int(time.time()),
            "finished_at": None,
            "result": None,
            "error": None,
        }
        with self._lock:
            self._jobs[job["id"]] = job
        self._save(job)
        task = asyncio.get_running_loop().create_task(self._run(job, fn, spool))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return self.public(job)

    async def _run(self, job: dict[str, Any], fn: JobFn, spool: Path | None = None) -> None:
        published = [0.0]

        def progress(stage: str, fraction: float) -> None:
            with self._lock:
                changed = job["stage"] != stage
                if changed:
                    job["stage"] = stage
                job["progress"] = round(max(job["progress"], min(1.0, fraction)), 3)
            if self.board is not None and (changed or time.monotonic() - published[0] >= 0.5):
                published[0] = time.monotonic()
                self._publish(job)

        job["status"] = "running"
        self._save(job)
        beat = asyncio.get_running_loop().create_task(self._heartbeat(job)) if self.board is not None else None
        try:
            await self._execute(job, fn, progress)
        finally:
            if beat is not None:
                beat.cancel()
        job["finished_at"] = int(time.time())
        self._save(job)
        if spool is not None:
            await asyncio.to_thread(shutil.rmtree, spool, True)
        self._evict(job)
        await asyncio.to_thread(self._prune_disk, job["user_id"])

    @staticmethod
    async def _execute(job: dict[str, Any], fn: JobFn, progress: Callable[[str, float], None]) -> None:
        try:
            job["result"] = await fn(progress)
            job["status"], job["stage"], job["progress"] = "succeeded", "done", 1.0
        except APIError as exc:
            job["status"], job["error"] = "failed", exc.body()["error"]
        except Exception:
            log.exception("ingestion job %s failed", job["id"])
            job["status"] = "failed"
            job["error"] = {"message": "Ingestion failed unexpectedly.", "type": "server_error", "param": None,
                            "code": None}

    def _prune_disk(self, user_id: str) -> None:
        """Keep the newest ``KEEP_ON_DISK`` job records of a user on disk (older ones read as 404)."""
        folder = self.root / user_dir_name(user_id)
        try:
            records = sorted(folder.glob("job_*.json"), key=lambda p: p.stat().st_mtime_ns)
        except OSError:
            return
        with self._lock:
            live = {jid for jid, j in self._jobs.items() if j["status"] in LIVE}
        for old in records[: max(0, len(records) - KEEP_ON_DISK)]:
            if old.stem not in live:
                old.unlink(missing_ok=True)

    def _evict(self, job: dict[str, Any]) -> None:
        """Keep only the last ``keep_finished`` finished jobs of this user in memory."""
        with self._lock:
            done = self._finished.setdefault(job["user_id"], deque())
            done.append(job["id"])
            while len(done) > self.keep_finished:
                self._jobs.pop(done.popleft(), None)
            if not done:
                self._finished.pop(job["user_id"], None)

    def get(self, user_id: str, job_id: str) -> dict[str, Any]:
        job_id = require_id(job_id, "job", what="job")
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None and self.board is not None:  # a job another replica runs (or ran)
            job = self.board.lookup(job_id)
        if job is None:
            job = read_json(self._path(user_id, job_id))
            if job is not None and job.get("status") in ("queued", "running"):
                job = {**job, "status": "failed", "error": {"message": "The server restarted during this job.",
                                                            "type": "server_error", "param": None, "code": None}}
        if job is None or job.get("user_id") != user_id:
            raise NotFoundError(f"No job found with id '{job_id}'.", param="job_id")
        return self.public(dict(job))

    async def drain(self) -> None:
        """Wait for running jobs (for shutdown and tests)."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
