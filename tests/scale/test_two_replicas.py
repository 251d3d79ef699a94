"""Two real server processes (``run_backend.py``) behind one ``REDIS_URL`` and one data directory,
on a fake OpenAI-compatible upstream — the scale-out profile, for real, on loopback:

* one user over the request limit on both replicas combined gets the 429 (OpenAI body) from either;
* a logout on one replica is honoured by the other;
* failed logins on both replicas add up to one lockout, seen by both;
* an ingest job started on one replica shows its live status on the other;
* concurrent appends to one conversation through both replicas lose nothing;
* Redis down at request time: a 503 ``shared_state_unavailable`` (no trace), ``/health`` still up,
  and service resumes once Redis is back.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import PASSWORD, REPO, create_user, free_port, server_env
from tests.fixtures.fake_openai_server import FakeOpenAIServer
from tests.reliability.conftest import assert_openai_error
from tests.scale.conftest import RedisProcess, needs_redis

pytestmark = [needs_redis, pytest.mark.timeout(600)]
RPM = 12
USERS = {"alice": True, "bob": False, "carol": False, "dave": False, "erin": False}


@dataclass
class Replica:
    base: str
    process: subprocess.Popen[bytes]
    log: Path

    def login(self, who: str, ip: str | None = None, password: str = PASSWORD) -> httpx.Response:
        headers = {"X-Forwarded-For": ip} if ip else {}
        return httpx.post(self.base + "/api/auth/login", json={"username": who, "password": password},
                          headers=headers, timeout=60)

    def token(self, who: str) -> dict[str, str]:
        r = self.login(who)
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    def chat(self, auth: dict[str, str], text: str = "hi", **extra: Any) -> httpx.Response:
        body = {"model": "fake-model:chat", "messages": [{"role": "user", "content": text}], **extra}
        return httpx.post(self.base + "/v1/chat/completions", json=body, headers=auth, timeout=60)


def spawn(data_dir: Path, env: dict[str, str]) -> Replica:
    port = free_port()
    log = data_dir.parent / f"replica-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, str(REPO / "run_backend.py"), "--host", "127.0.0.1", "--port", str(port)],
                                env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("replica exited early:\n" + log.read_text()[-3000:])
        try:
            if httpx.get(base + "/health", timeout=2).status_code == 200:
                return Replica(base, proc, log)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("replica did not start:\n" + log.read_text()[-3000:])


def stop(replica: Replica) -> None:
    replica.process.terminate()
    try:
        replica.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        replica.process.kill()


def replica_env(data_dir: Path, upstream: FakeOpenAIServer, redis_url: str) -> dict[str, str]:
    return server_env(
        data_dir, LLM_PROVIDER="openai", OPENAI_BASE_URL=upstream.base_url, OPENAI_MODEL="fake-model",
        ROUTER_USE_LLM="false", LOG_JSON="false", REDIS_URL=redis_url, RATE_LIMIT_RPM=str(RPM), RATE_LIMIT_TPM="0",
        LOGIN_MAX_FAILURES="3", LOGIN_WINDOW_S="300", FORWARDED_ALLOW_IPS="127.0.0.1", REDIS_RETRY_S="1",
    )


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(model="fake-model") as srv:
        yield srv


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisProcess,
         upstream: FakeOpenAIServer) -> Iterator[tuple[Replica, Replica]]:
    data_dir = tmp_path_factory.mktemp("scale") / "data"
    data_dir.mkdir()
    env = replica_env(data_dir, upstream, redis_server.url)
    for name, admin in USERS.items():
        create_user(env, name, admin=admin)
    a = spawn(data_dir, env)
    try:
        b = spawn(data_dir, env)
    except BaseException:
        stop(a)
        raise
    yield a, b
    stop(a)
    stop(b)
    for replica in (a, b):
        assert "Traceback" not in replica.log.read_text(errors="replace"), replica.log.read_text()[-3000:]


def test_one_budget_across_both_replicas(pair: tuple[Replica, Replica]) -> None:
    a, b = pair
    auth_a, auth_b = a.token("carol"), b.token("carol")
    for i in range(RPM):
        r = (a if i % 2 else b).chat(auth_a if i % 2 else auth_b)
        assert r.status_code == 200, r.text
    assert r.headers["x-ratelimit-remaining-requests"] == "0"
    for replica, auth in ((a, auth_a), (b, auth_b)):
        err = assert_openai_error(replica.chat(auth), 429, "rate_limit_exceeded")
        assert f"{RPM} requests per minute" in err["message"] and err["type"] == "rate_limit_error"
    limited = b.chat(auth_b)
    assert limited.status_code == 429 and 1 <= int(limited.headers["Retry-After"]) <= 60
    assert a.chat(a.token("bob")).status_code == 200  # another user's budget is their own


def test_logout_on_one_replica_is_honoured_by_the_other(pair: tuple[Replica, Replica]) -> None:
    a, b = pair
    auth = a.token("erin")
    assert httpx.get(b.base + "/api/auth/me", headers=auth).status_code == 200
    assert httpx.post(a.base + "/api/auth/logout", headers=auth).status_code == 204
    for replica in (b, a):
        err = assert_openai_error(httpx.get(replica.base + "/api/auth/me", headers=auth), 401, "token_revoked")
        assert "logged out" in err["message"]


def test_failed_logins_on_both_replicas_lock_out_on_both(pair: tuple[Replica, Replica]) -> None:
    a, b = pair
    ip = "203.0.113.50"
    for replica in (a, b, a):
        assert_openai_error(replica.login("dave", ip, password="wrong password"), 401, "invalid_credentials")
    for replica in (b, a):  # the right password no longer helps, from either replica
        r = replica.login("dave", ip)
        assert_openai_error(r, 429, "too_many_login_attempts")
        assert 250 <= int(r.headers["Retry-After"]) <= 300
    assert a.login("dave", "203.0.113.51").status_code == 429  # the name is locked, from any address
    assert b.login("bob", "203.0.113.52").status_code == 200  # others log in


def test_ingest_job_status_is_visible_from_the_other_replica(pair: tuple[Replica, Replica]) -> None:
    a, b = pair
    auth_a, auth_b = a.token("erin"), b.token("erin")
    text = "\n\n".join(f"Paragraph {i}: the replicas share their ingest-job status through Redis." for i in range(40))
    r = httpx.post(a.base + "/api/files/upload?async=true", headers=auth_a, timeout=120,
                   files={"files": ("shared.txt", text.encode(), "text/plain")})
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    seen: list[str] = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        status = httpx.get(b.base + f"/api/files/jobs/{job_id}", headers=auth_b, timeout=30)
        assert status.status_code == 200, status.text
        job = status.json()
        seen.append(job["status"])
        if job["status"] in ("succeeded", "failed"):
            break
        time.sleep(0.1)
    assert seen[-1] == "succeeded", (seen[-5:], job)
    assert set(seen) <= {"queued", "running", "succeeded"}  # never "failed: the server restarted"
    assert {"queued", "running"} & set(seen), seen  # B saw the job while A was still working on it
    assert job["result"]["data"][0]["filename"] == "shared.txt"
    other = httpx.get(b.base + f"/api/files/jobs/{job_id}", headers=b.token("bob"))
    assert_openai_error(other, 404)


def test_concurrent_appends_through_both_replicas_lose_nothing(pair: tuple[Replica, Replica]) -> None:
    a, b = pair
    auths = {a.base: a.token("bob"), b.base: b.token("bob")}
    conv = httpx.post(a.base + "/api/conversations", json={}, headers=auths[a.base]).json()["id"]
    n = RPM - 2  # bob chatted once in the budget test

    def send(i: int) -> int:
        replica = a if i % 2 else b
        return replica.chat(auths[replica.base], f"msg-{i}", conversation_id=conv).status_code

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(send, range(n)))
    assert codes == [200] * n
    for replica in (a, b):
        stored = httpx.get(replica.base + f"/api/conversations/{conv}", headers=auths[replica.base]).json()["messages"]
        assert sorted(m["content"] for m in stored if m["role"] == "user") == sorted(f"msg-{i}" for i in range(n))
        assert len(stored) == 2 * n


def test_redis_down_is_a_clean_503_and_service_resumes(tmp_path: Path, upstream: FakeOpenAIServer) -> None:
    redis = RedisProcess(free_port(), tmp_path)
    redis.start()
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    env = replica_env(data_dir, upstream, redis.url)
    create_user(env, "bob")
    replica = spawn(data_dir, env)
    try:
        auth = replica.token("bob")
        assert replica.chat(auth).status_code == 200
        redis.stop()
        for attempt in (replica.chat(auth), httpx.get(replica.base + "/api/auth/me", headers=auth),
                        replica.login("bob")):
            err = assert_openai_error(attempt, 503, "shared_state_unavailable")
            assert "Redis" in err["message"] and attempt.headers["Retry-After"] == "1"
        assert httpx.get(replica.base + "/health").status_code == 200  # the process itself is fine
        detailed = httpx.get(replica.base + "/health/detailed", timeout=30)
        assert detailed.status_code == 503 and detailed.json()["shared_state"] == {"backend": "redis", "ok": False}
        redis.start()  # same port, empty: service resumes after the retry interval
        time.sleep(1.2)
        assert replica.chat(auth).status_code == 200
        assert httpx.get(replica.base + "/health/detailed", timeout=30).json()["shared_state"]["ok"] is True
    finally:
        stop(replica)
        redis.stop()
    log = replica.log.read_text(errors="replace")
    assert "Traceback" not in log and "shared state unreachable" in log
