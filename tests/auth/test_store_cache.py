"""Users and API keys are cached per process, yet a change made elsewhere is seen on the next request.

Two things write the same data directory here: a second ``Services`` over it (what another worker
or replica is) and a separate Python process. The API under test keeps serving from its cache;
each change must show on its very next request.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from backend.app import build_services
from tests.conftest import PASSWORD
from tests.fakes import ScriptedProvider

REPO = Path(__file__).resolve().parents[2]


def _other(api):
    """Another Services instance over the same data directory (another worker or replica)."""
    return build_services(api.services.settings, ScriptedProvider())


def _me(api, token: str):
    return api.client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})


def _models(api, key: str):
    return api.client.get("/v1/models", headers={"Authorization": f"Bearer {key}"})


def test_reads_come_from_the_cache_while_the_file_is_unchanged(api):
    users = api.services.users
    assert _me(api, api.tokens["bob"]).status_code == 200
    before = users._file.reloads
    for _ in range(5):
        assert _me(api, api.tokens["bob"]).status_code == 200
    assert users._file.reloads == before  # five requests, no re-read of users.json


def test_disable_by_another_instance_is_seen_on_the_next_request(api):
    assert _me(api, api.tokens["bob"]).status_code == 200  # cache warm
    other = _other(api)
    other.users.set_disabled(api.users["bob"]["id"], True)
    r = _me(api, api.tokens["bob"])
    assert r.status_code == 401 and r.json()["error"]["code"] in ("account_disabled", "token_revoked")
    other.users.set_disabled(api.users["bob"]["id"], False)
    # re-enabling bumps the password version: the old token stays dead, a new login works
    assert _me(api, api.tokens["bob"]).status_code == 401
    r = api.client.post("/api/auth/login", json={"username": "bob", "password": PASSWORD})
    assert r.status_code == 200 and _me(api, r.json()["access_token"]).status_code == 200


def test_user_created_by_another_instance_can_log_in_at_once(api):
    assert _me(api, api.tokens["alice"]).status_code == 200
    _other(api).users.create("carol", PASSWORD, "user")
    r = api.client.post("/api/auth/login", json={"username": "carol", "password": PASSWORD})
    assert r.status_code == 200
    assert _me(api, r.json()["access_token"]).json()["username"] == "carol"


def test_key_revoked_by_another_instance_is_refused_on_the_next_request(api):
    r = api.client.post("/api/keys", headers=api.auth("bob"), json={"name": "ci"})
    assert r.status_code in (200, 201), r.text
    key, key_id = r.json()["key"], r.json()["id"]
    assert _models(api, key).status_code == 200  # cached now
    _other(api).keys.revoke(api.users["bob"]["id"], key_id)
    r = _models(api, key)
    assert r.status_code == 401 and r.json()["error"]["message"] == "Incorrect API key provided."


def test_a_change_by_another_process_is_seen_on_the_next_request(api):
    """A separate Python process (another replica on a shared volume) deletes a user's keys and
    disables the account, through the same store code; this process's cache notices both."""
    r = api.client.post("/api/keys", headers=api.auth("bob"), json={"name": "ci"})
    key = r.json()["key"]
    assert _models(api, key).status_code == 200 and _me(api, api.tokens["bob"]).status_code == 200
    settings = api.services.settings
    code = (
        "import json, sys\n"
        "from backend.storage.keys import ApiKeyStore\n"
        "from backend.storage.users import UserStore\n"
        "spec = json.loads(sys.argv[1])\n"
        "print(ApiKeyStore(spec['keys']).delete_user(spec['user']))\n"
        "UserStore(spec['users']).set_disabled(spec['user'], True)\n"
    )
    spec = json.dumps({"keys": str(settings.keys_path), "users": str(settings.users_path), "user": api.users["bob"]["id"]})
    out = subprocess.run([sys.executable, "-c", code, spec], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1"
    assert _models(api, key).status_code == 401
    assert _me(api, api.tokens["bob"]).status_code == 401
    assert _me(api, api.tokens["alice"]).status_code == 200  # others unaffected


def test_records_handed_out_are_copies(api):
    users = api.services.users
    record = users.get(api.users["bob"]["id"])
    record["role"] = "admin"
    assert users.get(api.users["bob"]["id"])["role"] == "user"
    r = api.client.get("/api/admin/users", headers=api.auth("bob"))
    assert r.status_code == 403


def test_key_use_is_recorded_once_a_minute(api):
    r = api.client.post("/api/keys", headers=api.auth("bob"), json={"name": "ci"})
    key, key_id = r.json()["key"], r.json()["id"]
    listed = {k["id"]: k for k in api.client.get("/api/keys", headers=api.auth("bob")).json()["data"]}
    assert listed[key_id]["last_used_at"] is None
    assert _models(api, key).status_code == 200
    first = api.services.keys._file.read()["keys"][key_id]["last_used_at"]
    assert first is not None  # recorded on the first use (off the event loop)
    path = api.services.settings.keys_path
    version = path.stat().st_ino  # every write replaces the file (a new inode)
    for _ in range(3):
        assert _models(api, key).status_code == 200
    assert path.stat().st_ino == version  # no further write within the minute
