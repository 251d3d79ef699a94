"""Shared helpers for the benchmarks: machine facts, a real server subprocess, stats, tables, JSON.

Every benchmark is one command (``.venv/bin/python bench/<name>.py [--quick]``) that prints a table
and writes ``bench/results/<name>.json``. The server is always the real one (``run_backend.py``)
in a subprocess on 127.0.0.1, configured through the environment like a deployment would be.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
MODELS_DIR = Path(os.environ.get("BENCH_MODELS_DIR", REPO / "data" / "models"))
BENCH_DATA = REPO / "bench" / "data"  # small freely licensed sets; origins in bench/data/SOURCES.md
PASSWORD = "bench-password-123"
SECRET = secrets.token_urlsafe(48)  # per run: the server refuses well-known or weak secrets

SCIFACT_HELP = (
    "SciFact is CC BY-NC 2.0 (non-commercial), so it is not in the repository. Point the benchmark at a BEIR-layout "
    "copy (corpus.jsonl or corpus.jsonl.gz, queries.jsonl, qrels/test.tsv, qrels/train.tsv; e.g. BEIR's scifact.zip "
    "unpacked) with --data DIR or SCIFACT_DIR=DIR."
)


def scifact_dir(arg: Path | None) -> Path:
    """The SciFact folder from ``--data`` or ``SCIFACT_DIR``; exits with how to get it when neither is usable."""
    path = arg or (Path(os.environ["SCIFACT_DIR"]) if os.environ.get("SCIFACT_DIR") else None)
    if path is None or not ((path / "corpus.jsonl").exists() or (path / "corpus.jsonl.gz").exists()):
        where = f"{path} has no corpus.jsonl[.gz]. " if path else "No --data DIR and no SCIFACT_DIR. "
        raise SystemExit(where + SCIFACT_HELP)
    return path


if str(REPO) not in sys.path:  # `python bench/x.py` puts bench/ first, not the repo
    sys.path.insert(0, str(REPO))


# ----------------------------------------------------------------------------- machine
def load_avg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on (CPU model, cores, memory, load, versions)."""
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gib = None
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    versions: dict[str, str] = {}
    from importlib import metadata

    for dist in ("llama_cpp_python", "fastapi", "uvicorn", "httpx", "openai"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    commit = ""
    with contextlib.suppress(Exception):
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=5
        ).stdout.strip()
    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "mem_gib": mem_gib,
        "gpu": None,
        "python": platform.python_version(),
        "os": platform.platform(),
        "packages": versions,
        "git_commit": commit,
        "load_avg_start": load_avg(),
        "bench_embedded_threads": os.environ.get("BENCH_EMBEDDED_THREADS"),
    }


# ----------------------------------------------------------------------------- stats / output
def pct(values: Sequence[float], q: float) -> float | None:
    """Percentile (linear interpolation, like numpy's default); None for no data."""
    if not values:
        return None
    xs = sorted(values)
    if len(xs) == 1:
        return xs[0]
    k = (len(xs) - 1) * q / 100.0
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 2) -> str:
    """A GitHub-markdown table (also readable in a terminal)."""
    cells = [[fmt(c, digits) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = lambda parts: "| " + " | ".join(p.ljust(w) for p, w in zip(parts, widths, strict=True)) + " |"  # noqa: E731
    out = [line(list(headers)), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in cells]
    return "\n".join(out)


def write_results(name: str, payload: dict[str, Any], out: Path | None = None) -> Path:
    """Atomically write ``bench/results/<name>.json`` (or ``out``)."""
    path = out or RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload.setdefault("machine", machine_info())
    payload["machine"]["load_avg_end"] = load_avg()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(payload, fh, indent=2, ensure_ascii=False)
        fh.write("\n")
    os.replace(tmp, path)
    return path


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Per-problem results: one line each, flushed at once, so a long run can resume."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line:
            with contextlib.suppress(json.JSONDecodeError):  # a line cut by a kill is skipped
                out.append(json.loads(line))
    return out


# ----------------------------------------------------------------------------- server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class BenchServer:
    base_url: str
    process: subprocess.Popen[bytes]
    data_dir: Path
    log_path: Path
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def v1(self) -> str:
        return self.base_url + "/v1"

    def headers(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}

    def base_model(self) -> str:
        first = next(iter(self.tokens))
        r = httpx.get(self.v1 + "/models", headers=self.headers(first), timeout=30)
        r.raise_for_status()
        ids = [m["id"] for m in r.json()["data"]]
        return next(i for i in ids if ":" not in i) if any(":" not in i for i in ids) else ids[0]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def server_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "OLLAMA_", "TAVILY_", "EMBEDDED_"))}
    env.update(
        DATA_DIR=str(data_dir),
        MODELS_DIR=str(MODELS_DIR),
        JWT_SECRET=SECRET,
        BCRYPT_ROUNDS="4",
        LOG_JSON="true",
        LOG_LEVEL="warning",
        SERVE_FRONTEND="false",
        ROUTER_USE_LLM="false",
        PYTHONUNBUFFERED="1",
    )
    if os.environ.get("BENCH_EMBEDDED_THREADS"):  # e.g. 1 on a shared, oversubscribed machine
        env["EMBEDDED_N_THREADS"] = os.environ["BENCH_EMBEDDED_THREADS"]
    env.update({k: str(v) for k, v in extra.items()})
    return env


def create_users(env: dict[str, str], users: Sequence[str], admin: Sequence[str] = (), repo: Path = REPO) -> None:
    """Create accounts straight in the user store (the same code `run_backend.py create-user` runs)."""
    code = (
        "import sys, json\n"
        "from backend.settings import Settings\n"
        "from backend.storage.users import UserStore\n"
        "s = Settings()\n"
        "s.users_path.parent.mkdir(parents=True, exist_ok=True)\n"
        "store = UserStore(s.users_path, s.bcrypt_rounds)\n"
        "spec = json.loads(sys.stdin.read())\n"
        "for name in spec['users']:\n"
        "    store.create(name, spec['password'], 'admin' if name in spec['admin'] else 'user')\n"
    )
    spec = json.dumps({"users": list(users), "admin": list(admin), "password": PASSWORD})
    out = subprocess.run(
        [sys.executable, "-c", code], input=spec, env=env, cwd=repo, capture_output=True, text=True, timeout=120
    )
    if out.returncode != 0:
        raise RuntimeError(f"creating users failed:\n{out.stderr[-2000:]}")


def start_server(
    data_dir: Path,
    users: Sequence[str] = ("alice",),
    admin: Sequence[str] = ("alice",),
    wait_model: bool = True,
    timeout_s: float = 900,
    repo: Path = REPO,
    **env_extra: Any,
) -> BenchServer:
    """Start ``run_backend.py`` on a free port with fresh state and log the users in. ``repo``: the
    source tree to run (another commit's, exported, to compare against in the same run)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = server_env(data_dir, **env_extra)
    create_users(env, users, admin, repo)
    log_path = data_dir.parent / f"server-{port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, str(repo / "run_backend.py"), "--host", "127.0.0.1", "--port", str(port)],
            env=env, cwd=repo, stdout=log, stderr=subprocess.STDOUT,
        )
    server = BenchServer(f"http://127.0.0.1:{port}", proc, data_dir, log_path)
    deadline = time.time() + timeout_s
    path = "/health/detailed" if wait_model else "/health"
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{log_path.read_text(errors='replace')[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(server.base_url + path, timeout=5).status_code == 200:
                    break
            if time.time() > deadline:
                raise RuntimeError(f"server not ready:\n{log_path.read_text(errors='replace')[-3000:]}")
            time.sleep(0.5)
        with httpx.Client(base_url=server.base_url, timeout=30) as client:
            for name in users:
                r = client.post("/api/auth/login", json={"username": name, "password": PASSWORD})
                r.raise_for_status()
                server.tokens[name] = r.json()["access_token"]
    except BaseException:
        server.stop()
        raise
    return server


def _exit_on_sigterm() -> None:
    """SIGTERM raises SystemExit, so ``finally`` blocks stop the servers this process started."""
    import signal

    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


@contextlib.contextmanager
def running_server(**kw: Any) -> Iterator[BenchServer]:
    """A fresh server for the ``with`` block; its log tail is printed if the block fails."""
    _exit_on_sigterm()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        server = start_server(Path(tmp) / "data", **kw)
        try:
            yield server
        except BaseException:
            with contextlib.suppress(OSError):
                tail = server.log_path.read_text(errors="replace")[-4000:]
                print(f"--- server log tail ({server.log_path.name}) ---\n{tail}", file=sys.stderr)
            raise
        finally:
            server.stop()


@contextlib.contextmanager
def source_tree(ref: str) -> Iterator[Path]:
    """The tracked files of commit ``ref``, exported to a temporary directory (``git archive``)."""
    with tempfile.TemporaryDirectory(prefix="bench-src-") as tmp:
        archive = subprocess.run(["git", "archive", "--format=tar", ref], cwd=REPO, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
        yield Path(tmp)


@contextlib.contextmanager
def fake_upstream() -> Iterator[str]:
    """The fake OpenAI-compatible upstream (tests/fixtures/fake_openai_server.py) in its own process.

    Yields its ``/v1`` base URL. Used by api_latency.py, and by every script's ``--fake-upstream``
    (CI smoke runs: the whole path but no model).
    """
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fixtures.fake_openai_server", "--port", str(port)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.time() + 30
        while True:
            try:
                if httpx.get(base + "/models", timeout=1).status_code < 500:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("the fake upstream did not start")
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def model_env(model_key: str, upstream: str | None = None) -> dict[str, str]:
    """Server environment for the embedded ``model_key``, or for the fake upstream when given.

    ``chat+agent`` (e.g. ``qwen2.5-coder-0.5b+qwen2.5-coder-1.5b``, the server's default) runs chat and
    routing on the first model and agent steps on the second; a single key runs everything on it."""
    if upstream:
        return {"LLM_PROVIDER": "openai", "OPENAI_BASE_URL": upstream, "OPENAI_API_KEY": "x", "OPENAI_MODEL": "fake-model"}
    chat, _, agent = model_key.partition("+")
    return {"LLM_PROVIDER": "embedded", "EMBEDDED_MODEL": chat, "EMBEDDED_AGENT_MODEL": agent or "none"}


def warm_model(server: BenchServer, model: str, user: str) -> None:
    """Load the model (the embedded provider loads lazily) with one tiny request."""
    r = httpx.post(
        server.v1 + "/chat/completions",
        headers=server.headers(user),
        json={"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, "temperature": 0},
        timeout=900,
    )
    r.raise_for_status()


def gguf_path(model_key: str) -> Path:
    """The assembled GGUF for a catalogue key (assembling it from the installed packages if needed)."""
    from backend.llm.model_assets import ensure_model
    from backend.settings import Settings

    settings = Settings(_env_file=None, models_dir=MODELS_DIR, embedded_model=model_key)  # type: ignore[arg-type]
    return Path(ensure_model(settings))
