"""Logs: JSON lines for machines, plain lines for a person at a terminal; both carry the request id.

``LOG_JSON`` unset: JSON unless stderr is a terminal. ``LOG_JSON=true``/``false`` forces one or the other
(the compose file sets ``true``).
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(time.time(), 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = request_id_var.get()
        if rid:
            entry["request_id"] = rid
        for key in ("route", "status", "duration_ms", "method", "model", "mode", "user"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class HumanFormatter(logging.Formatter):
    """``12:00:01 INFO backend.access: POST /v1/chat/completions 200 [req_…]`` for reading in a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        rid = request_id_var.get()
        return f"{line} [{rid}]" if rid else line


def use_json(json_logs: bool | None, stream: object = None) -> bool:
    """The explicit choice, else JSON unless the log stream is a terminal."""
    if json_logs is not None:
        return json_logs
    isatty = getattr(stream if stream is not None else sys.stderr, "isatty", None)
    return not (isatty and isatty())


def configure_logging(level: str = "info", json_logs: bool | None = None) -> None:
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if use_json(json_logs, sys.stderr) else HumanFormatter())
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore", "chromadb", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
