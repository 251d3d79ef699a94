"""/v1/responses and a client that goes away: the generation is cancelled at once (stream or not),
the model slot is freed, and the abandoned response is not stored."""

from __future__ import annotations

import json
import socket
import time

import pytest

from tests.fakes import ScriptedProvider
from tests.reliability.conftest import wait_until

LONG = " ".join(f"w{i}" for i in range(200))  # 200 words x 0.1 s: 20 s if nobody cancels it


def _raw_post(app, body: dict, who: str = "bob") -> socket.socket:
    payload = json.dumps(body).encode()
    sock = socket.create_connection(("127.0.0.1", app.port))
    head = (
        f"POST /v1/responses HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
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


@pytest.mark.parametrize("stream", [True, False])
def test_disconnect_cancels_the_response_and_stores_nothing(threaded_app, stream):
    provider = ScriptedProvider(delay_s=0.1)
    provider.default = LONG
    with threaded_app(provider) as app:
        sock = _raw_post(app, {"model": "scripted-model:chat", "input": "talk a lot", "stream": stream})
        if stream:
            assert b'"delta":" w1"' in _read_until(sock, b'"delta":" w1"')  # it is generating
        else:
            assert wait_until(lambda: len(provider.calls) == 1 and app.services.scheduler.active == 1)
            time.sleep(0.3)
        closed_at = time.monotonic()
        sock.close()
        assert wait_until(lambda: provider.cancelled == 1, timeout=5)
        assert time.monotonic() - closed_at < 2.5
        assert wait_until(lambda: app.services.scheduler.active == 0, timeout=1)
        assert app.services.responses.count(app.user_ids["bob"]) == 0
