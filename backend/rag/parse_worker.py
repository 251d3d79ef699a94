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
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from backend.errors import APIError, PayloadTooLargeError, UnprocessableError
from backend.rag.loaders import ParsedDocument, ParseLimits, parse_document

log = logging.getLogger("backend.rag.parse_worker")

WORKER_MEMORY_BYTES = 2 * 1024 * 1024 * 1024
_PROJECT_ROOT = Path(__file__).resolve().parents[2]
#: the only variables the worker inherits: no JWT_SECRET, API keys or anything else of the server's
_ENV_KEEP = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "HOME", "VIRTUAL_ENV", "SYSTEMROOT")


@dataclass
class ParsedChunks:
    """What the worker sends back for an upload: sizes and the chunks, never the whole text."""

    kind: str
    page_count: int | None
    char_count: int
    chunks: list[tuple[str, int | None, int, int]]  # text, page, start, end


def worker_env() -> dict[str, str]:
    """A scrubbed environment for the parse worker (it parses hostile files; it needs no secrets)."""
    env = {k: v for k, v in os.environ.items() if k in _ENV_KEEP}
    env["PYTHONPATH"] = str(_PROJECT_ROOT)
    env["PYTHONNOUSERSITE"] = "1"
    return env


def _read_exact(stream: IO[bytes], n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        part = stream.read(n - len(buf))
        if not part:
            raise EOFError("pipe closed")
        buf += part
    return bytes(buf)


def _read_frame(stream: IO[bytes]) -> bytes:
    (size,) = struct.unpack(">Q", _read_exact(stream, 8))
    return _read_exact(stream, size)


def _write_frame(stream: IO[bytes], payload: bytes) -> None:
    stream.write(struct.pack(">Q", len(payload)) + payload)
    stream.flush()


def _chunked(doc: ParsedDocument, filename: str, limits: ParseLimits, chunking: dict[str, int]) -> dict[str, Any]:
    """Chunk here, in the worker, so an oversized document never reaches the server as text."""
    from backend.rag.chunking import TooManyChunks, chunk_document

    try:
        chunks = chunk_document(doc, "file", chunking["size"], chunking["overlap"], max_chunks=limits.max_chunks)
    except TooManyChunks:
        raise PayloadTooLargeError(
            f"'{filename}' splits into more than {limits.max_chunks} chunks; the limit per document is "
            f"{limits.max_chunks}. Split it into smaller files.",
            code="too_many_chunks",
        ) from None
    return {
        "kind": doc.kind,
        "page_count": doc.page_count,
        "char_count": doc.char_count,
        "chunks": [[c.text, c.page, c.start, c.end] for c in chunks],
    }


def _handle(message: bytes) -> dict[str, Any]:
    header_raw, _, data = message.partition(b"\n")
    header = json.loads(header_raw)
    try:
        limits = ParseLimits(**header["limits"])
        doc = parse_document(data, header["filename"], header["kind"], limits)
        if header.get("chunk"):
            return {"ok": _chunked(doc, header["filename"], limits, header["chunk"])}
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
            env = worker_env()
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

    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def parse(self, data: bytes, filename: str, kind: str, limits: ParseLimits, timeout_s: float) -> ParsedDocument:
        return ParsedDocument.from_json(self._request(data, filename, kind, limits, timeout_s, None))

    def parse_chunks(
        self, data: bytes, filename: str, kind: str, limits: ParseLimits, timeout_s: float, size: int, overlap: int
    ) -> ParsedChunks:
        reply = self._request(data, filename, kind, limits, timeout_s, {"size": size, "overlap": overlap})
        chunks = [(str(t), p, int(s), int(e)) for t, p, s, e in reply["chunks"]]
        return ParsedChunks(reply["kind"], reply["page_count"], int(reply["char_count"]), chunks)

    def _request(
        self, data: bytes, filename: str, kind: str, limits: ParseLimits, timeout_s: float, chunk: dict[str, int] | None
    ) -> dict[str, Any]:
        proc = self._ensure()
        assert proc.stdin is not None and proc.stdout is not None
        header: dict[str, Any] = {"filename": filename, "kind": kind, "limits": limits.__dict__, "chunk": chunk}
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
        result: dict[str, Any] = reply["ok"]
        return result


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

    def parse_chunks(
        self, data: bytes, filename: str, kind: str, limits: ParseLimits, timeout_s: float, size: int, overlap: int
    ) -> ParsedChunks:
        """Parse and chunk in a worker; text and chunk counts are capped there (413 past the caps)."""
        worker = self._idle.get()
        try:
            return worker.parse_chunks(data, filename, kind, limits, timeout_s, size, overlap)
        finally:
            self._idle.put(worker)

    def worker_pids(self) -> list[int]:
        return [pid for w in self._all if (pid := w.pid()) is not None]

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
