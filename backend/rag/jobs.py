"""Background ingestion jobs with progress, scoped to the user who started them.

The live state is in memory (progress updates are frequent); every status change is also
written atomically to ``jobs_path/rag/<user_id>/<job_id>.json`` so a finished job can still be
read after a restart. A job that was running when the process died reads as ``failed``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from backend.errors import APIError, NotFoundError
from backend.rag.store import user_dir_name
from backend.storage.ids import new_id, require_id
from backend.storage.jsonstore import atomic_write_json, read_json

log = logging.getLogger("backend.rag.jobs")

JobFn = Callable[[Callable[[str, float], None]], Awaitable[dict[str, Any]]]


class IngestJobs:
    def __init__(self, root: Path) -> None:
        self.root = Path(root) / "rag"
        self._jobs: dict[str, dict[str, Any]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._lock = threading.Lock()

    def _path(self, user_id: str, job_id: str) -> Path:
        return self.root / user_dir_name(user_id) / f"{job_id}.json"

    def _save(self, job: dict[str, Any]) -> None:
        try:
            atomic_write_json(self._path(job["user_id"], job["id"]), job)
        except APIError:  # storage trouble must not kill the job; the in-memory state stays right
            log.warning("could not persist job %s", job["id"])

    @staticmethod
    def public(job: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in job.items() if k != "user_id"}

    def start(self, user_id: str, filenames: list[str], fn: JobFn) -> dict[str, Any]:
        job = {
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
        task = asyncio.get_running_loop().create_task(self._run(job, fn))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return self.public(job)

    async def _run(self, job: dict[str, Any], fn: JobFn) -> None:
        def progress(stage: str, fraction: float) -> None:
            with self._lock:
                if job["stage"] != stage:
                    job["stage"] = stage
                job["progress"] = round(max(job["progress"], min(1.0, fraction)), 3)

        job["status"] = "running"
        self._save(job)
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
        job["finished_at"] = int(time.time())
        self._save(job)

    def get(self, user_id: str, job_id: str) -> dict[str, Any]:
        job_id = require_id(job_id, "job", what="job")
        with self._lock:
            job = self._jobs.get(job_id)
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
