"""A full disk: writes fail with a clear 507 in OpenAI's error shape, the data already stored stays
intact, reads and logins keep working, and writing works again once space is freed.

The state directory lives on a small tmpfs (root in this container); where mounting is not
permitted, the filesystem's ENOSPC is simulated at the one place every write goes through.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import PASSWORD
from tests.fakes import ScriptedProvider
from tests.reliability.conftest import assert_openai_error, reliability_settings, sse_data


@contextlib.contextmanager
def small_disk(path: Path, size: str = "4m") -> Iterator[bool]:
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True).returncode == 0
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _fill(directory: Path) -> Path:
    ballast = directory / "ballast.bin"
    with open(ballast, "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return ballast


@pytest.fixture
def full_disk_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with small_disk(tmp_path / "disk") as mounted:
        settings = reliability_settings(tmp_path / "disk" / "data")
        provider = ScriptedProvider()
        with TestClient(__import__("backend.app", fromlist=["create_app"]).create_app(settings, provider=provider),
                        raise_server_exceptions=False) as client:
            services = client.app.state.services
            services.users.create("bob", PASSWORD)
            token = client.post("/api/auth/login", json={"username": "bob", "password": PASSWORD}).json()["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            state: dict = {"ballast": None}

            def fill() -> None:
                if mounted:
                    state["ballast"] = _fill(tmp_path / "disk")
                else:  # simulate ENOSPC where tmpfs cannot be mounted
                    import backend.storage.jsonstore as js

                    def no_space(*a, **kw):
                        raise OSError(errno.ENOSPC, "No space left on device")

                    monkeypatch.setattr(js.os, "fsync", no_space)

            def free() -> None:
                if state["ballast"] is not None:
                    state["ballast"].unlink()
                monkeypatch.undo()

            yield client, headers, settings, fill, free


def test_disk_full_is_a_clear_507_and_old_data_survives(full_disk_app):
    client, headers, settings, fill, free = full_disk_app
    conv = client.post("/api/conversations", json={"title": "before"}, headers=headers).json()["id"]
    body = {"model": "scripted-model:chat", "conversation_id": conv, "messages": [{"role": "user", "content": "first"}]}
    assert client.post("/v1/chat/completions", json=body, headers=headers).status_code == 200
    users_before = settings.users_path.read_bytes()
    conv_path = settings.conversations_path / client.app.state.services.users.by_username("bob")["id"] / f"{conv}.json"
    conv_before = conv_path.read_bytes()

    fill()
    err = assert_openai_error(client.post("/api/conversations", json={"title": "new"}, headers=headers), 507, "storage_unavailable")
    assert err["type"] == "server_error"
    assert_openai_error(client.patch(f"/api/conversations/{conv}", json={"title": "renamed"}, headers=headers), 507)
    assert_openai_error(client.post("/api/keys", json={"name": "k"}, headers=headers), 507)
    assert_openai_error(client.post("/v1/chat/completions", json=body | {"messages": [{"role": "user", "content": "2nd"}]},
                                    headers=headers), 507)
    streamed = client.post("/v1/chat/completions", json=body | {"stream": True}, headers=headers)
    events = sse_data(streamed.text)
    assert events[-1] == "[DONE]" and any(isinstance(e, dict) and e.get("error", {}).get("code") == "storage_unavailable"
                                           for e in events)
    # what was stored before is intact, and reads and logins still work
    assert settings.users_path.read_bytes() == users_before
    assert conv_path.read_bytes() == conv_before
    assert client.get(f"/api/conversations/{conv}", headers=headers).json()["message_count"] == 2
    for _ in range(60):  # each login appends to the audit log: past the last free page of the disk
        login = client.post("/api/auth/login", json={"username": "bob", "password": PASSWORD})
        assert login.status_code == 200, login.text
    assert not list(settings.data_dir.rglob(".~*.tmp"))  # failed writes leave no temp files

    free()
    assert client.post("/api/conversations", json={"title": "after"}, headers=headers).status_code == 201
    assert client.post("/v1/chat/completions", json=body, headers=headers).status_code == 200
    assert client.get(f"/api/conversations/{conv}", headers=headers).json()["message_count"] == 4
    assert os.statvfs(settings.data_dir).f_bavail > 0
