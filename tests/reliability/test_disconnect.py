"""A client that goes away mid-request: the generation is cancelled within about a second, the
model slot is freed for the next caller, and a running python_code sandbox is killed."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

import httpx

from tests.fakes import ScriptedProvider
from tests.reliability.conftest import wait_until

LONG = " ".join(f"w{i}" for i in range(200))  # 200 words x 0.1 s: 20 s if nobody cancels it


def _raw_request(app, body: dict, who: str = "bob") -> socket.socket:
    """Send a request on a raw socket (so the test decides exactly when the connection dies)."""
    payload = json.dumps(body).encode()
    sock = socket.create_connection(("127.0.0.1", app.port))
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {app.tokens[who]}\r\nContent-Length: {len(payload)}\r\n\r\n"
    ).encode()
    sock.sendall(head + payload)
    return sock


def _read_until(sock: socket.socket, marker: bytes, timeout: float = 10) -> bytes:
    sock.settimeout(timeout)
    buf = b""
    while marker not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            break
        buf += chunk
    return buf


def test_stream_disconnect_cancels_generation_and_frees_the_slot(threaded_app):
    provider = ScriptedProvider(delay_s=0.1)
    provider.default = LONG
    with threaded_app(provider) as app:
        sched = app.services.scheduler
        sock = _raw_request(app, {"model": "scripted-model:chat", "stream": True,
                                  "messages": [{"role": "user", "content": "talk a lot"}]})
        assert b'"content":" w1"' in _read_until(sock, b'"content":" w1"')  # it is generating
        closed_at = time.monotonic()
        sock.close()
        assert wait_until(lambda: provider.cancelled == 1, timeout=3)
        assert time.monotonic() - closed_at < 1.5
        assert wait_until(lambda: sched.active == 0, timeout=1)
        provider.default = "next"
        started = time.monotonic()
        r = app.chat("carol")
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "next"
        assert time.monotonic() - started < 1.0  # served at once: nobody holds the slot
        assert 'outcome="ok"' in httpx.get(app.base_url + "/metrics").text


def test_non_stream_disconnect_cancels_generation(threaded_app):
    provider = ScriptedProvider(delay_s=0.1)
    provider.default = LONG
    with threaded_app(provider) as app:
        sock = _raw_request(app, {"model": "scripted-model:chat", "messages": [{"role": "user", "content": "x"}]})
        assert wait_until(lambda: len(provider.calls) == 1 and app.services.scheduler.active == 1)
        time.sleep(0.3)
        closed_at = time.monotonic()
        sock.close()
        assert wait_until(lambda: provider.cancelled == 1, timeout=5)
        assert time.monotonic() - closed_at < 2.5  # the disconnect watcher polls every 0.25 s
        assert wait_until(lambda: app.services.scheduler.active == 0, timeout=1)
        assert app.chat("carol", "again").status_code == 200


def test_disconnect_while_queued_leaves_the_queue(threaded_app):
    provider = ScriptedProvider(delay_s=0.1)
    provider.default = " ".join(["x"] * 15)  # 1.5 s
    with threaded_app(provider, keepalive_interval_s=0.2) as app:
        sched = app.services.scheduler
        holder = threading.Thread(target=app.chat, args=("alice",), daemon=True)
        holder.start()
        assert wait_until(lambda: sched.active == 1)
        sock = _raw_request(app, {"model": "scripted-model:chat", "stream": True,
                                  "messages": [{"role": "user", "content": "queued"}]})
        assert wait_until(lambda: sched.waiting == 1)
        assert b": keep-alive" in _read_until(sock, b": keep-alive")
        sock.close()
        assert wait_until(lambda: sched.waiting == 0, timeout=2)
        holder.join(10)
        assert len(provider.calls) == 1  # the abandoned request never reached the model


def _descendants(pid: int) -> list[tuple[int, str]]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    out, frontier = [], {pid}
    while frontier:
        children = {p for p, pp in parents.items() if pp in frontier}
        for child in children:
            try:
                cmd = (Path("/proc") / str(child) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                cmd = ""
            out.append((child, cmd))
        frontier = children
    return out


def _sandboxes() -> list[tuple[int, str]]:
    return [(p, c) for p, c in _descendants(os.getpid()) if "main.py" in c or "bwrap" in c]


def test_disconnect_kills_the_python_code_sandbox(threaded_app):
    from backend.tools.sandbox import sandbox_available

    ok, reason = sandbox_available()
    if not ok:
        import pytest

        pytest.skip(f"sandbox unavailable here: {reason}")
    code = "import time\nprint('started', flush=True)\ntime.sleep(60)"
    call = json.dumps({"name": "python_code", "arguments": {"code": code}})
    provider = ScriptedProvider([call, "done"])
    with threaded_app(provider, sandbox_timeout_s=60) as app:
        assert _sandboxes() == []
        sock = _raw_request(app, {"model": "scripted-model:react", "stream": True,
                                  "messages": [{"role": "user", "content": "run a slow script"}]})
        assert wait_until(lambda: any("/sandbox/" in c for _, c in _sandboxes()), timeout=15), _descendants(os.getpid())
        closed_at = time.monotonic()
        sock.close()
        assert wait_until(lambda: _sandboxes() == [], timeout=5), _sandboxes()
        assert time.monotonic() - closed_at < 2.5
        assert app.services.scheduler.active == 0
