"""Run document parsing in a separate process that is killed when it passes its deadline.

A hostile or pathological file (a PDF with a content stream that takes minutes, a decompression
bomb) cannot be stopped inside a thread, so parsing happens in small long-lived worker processes
(``python -m backend.rag.parse_worker``, memory-capped with ``RLIMIT_AS``). Messages are
length-prefixed frames on stdin/stdout with a JSON header: no pickle crosses the pipe.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import selectors
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO

from backend.errors import APIError, UnprocessableError
from backend.rag.loaders import ParsedDocument, ParseLimits, parse_document

log = logging.getLogger("backend.rag.parse_worker")

WORKER_MEMORY_BYTES = 2 * 1024 * 1024 * 1024
_PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _read_exact(stream: BinaryIO, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        part = stream.read(n - len(buf))
        if not part:
            raise EOFError("pipe closed")
        buf += part
    return bytes(buf)


def _read_frame(stream: BinaryIO) -> bytes:
    (size,) = struct.unpack(">Q", _read_exact(stream, 8))
    return _read_exact(stream, size)


def _write_frame(stream: BinaryIO, payload: bytes) -> None:
    stream.write(struct.pack(">Q", len(payload)) + payload)
    stream.flush()


def _handle(message: bytes) -> dict[str, Any]:
    header_raw, _, data = message.partition(b"\n")
    header = json.loads(header_raw)
    try:
        limits = ParseLimits(**header["limits"])
        doc = parse_document(data, header["filename"], header["kind"], limits)
        return {"ok": doc.to_json()}
    except APIError as exc:
        return {"error": {"status": exc.status_code, "message": exc.message, "code": exc.code}}
    except MemoryError:
        return {"error": {"status": 422, "message": f"'{header['filename']}' needs too much memory to parse.",
                          "code": "parse_memory_limit"}}
    except Exception as exc:  # noqa: BLE001 - any parser failure is the file's fault here
        return {"error": {"status": 422, "code": "malformed_file",
                          "message": f"'{header['filename']}' could not be parsed ({type(exc).__name__})."}}


def main() -> None:  # pragma: no cover - runs in the child process
    """Worker loop: frames in on stdin, frames out on the original stdout; prints go to stderr."""
    channel_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    channel_in = sys.stdin.buffer
    memory = int(os.environ.get("RAG_PARSE_MEMORY_BYTES", WORKER_MEMORY_BYTES))
    with contextlib.suppress(Exception):
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    logging.basicConfig(level=logging.ERROR)
    while True:
        try:
            message = _read_frame(channel_in)
        except (EOFError, OSError):
            return
        try:
            _write_frame(channel_out, json.dumps(_handle(message)).encode("utf-8"))
        except (BrokenPipeError, OSError):
            return


class _Worker:
    def __init__(self, memory_bytes: int) -> None:
        self._memory_bytes = memory_bytes
        self._proc: subprocess.Popen[bytes] | None = None

    def _ensure(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            self.kill()
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_PROJECT_ROOT), env.get("PYTHONPATH")]))
            env["RAG_PARSE_MEMORY_BYTES"] = str(self._memory_bytes)
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "backend.rag.parse_worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=env,
                cwd=str(_PROJECT_ROOT),
            )
        return self._proc

    def kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(Exception):
                proc.kill()
                proc.wait(timeout=5)
            for stream in (proc.stdin, proc.stdout):
                with contextlib.suppress(Exception):
                    stream.close()  # type: ignore[union-attr]

    def parse(self, data: bytes, filename: str, kind: str, limits: ParseLimits, timeout_s: float) -> ParsedDocument:
        proc = self._ensure()
        assert proc.stdin is not None and proc.stdout is not None
        header = {"filename": filename, "kind": kind, "limits": limits.__dict__}
        deadline = time.monotonic() + timeout_s
        try:
            _write_frame(proc.stdin, json.dumps(header).encode("utf-8") + b"\n" + data)
            with selectors.DefaultSelector() as selector:
                selector.register(proc.stdout, selectors.EVENT_READ)
                ready = selector.select(max(0.0, deadline - time.monotonic()))
            if not ready:
                self.kill()
                raise UnprocessableError(
                    f"Parsing '{filename}' took longer than {timeout_s:g} s and was stopped.", code="parse_timeout"
                )
            reply = json.loads(_read_frame(proc.stdout))
        except (EOFError, OSError, ValueError) as exc:  # the child died (e.g. killed for memory)
            self.kill()
            raise UnprocessableError(f"'{filename}' crashed the document parser.", code="parse_failed") from exc
        if "error" in reply:
            err = reply["error"]
            cls = _error_class(int(err["status"]))
            raise cls(err["message"], code=err.get("code"))
        return ParsedDocument.from_json(reply["ok"])


def _error_class(status: int) -> type[APIError]:
    from backend.errors import PayloadTooLargeError

    return PayloadTooLargeError if status == 413 else UnprocessableError


class ParsePool:
    """A few worker processes, started on first use; thread-safe."""

    def __init__(self, size: int = 2, memory_bytes: int = WORKER_MEMORY_BYTES) -> None:
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._all: list[_Worker] = []
        for _ in range(max(1, size)):
            worker = _Worker(memory_bytes)
            self._all.append(worker)
            self._idle.put(worker)

    def parse(self, data: bytes, filename: str, kind: str, limits: ParseLimits, timeout_s: float) -> ParsedDocument:
        worker = self._idle.get()
        try:
            return worker.parse(data, filename, kind, limits, timeout_s)
        finally:
            self._idle.put(worker)

    def close(self) -> None:
        for worker in self._all:
            worker.kill()


_pool: ParsePool | None = None
_pool_lock = threading.Lock()


def get_pool() -> ParsePool:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ParsePool()
        return _pool


if __name__ == "__main__":  # pragma: no cover
    main()
