"""What the Docker image contains, derived from the Dockerfile itself and checked on this machine.

No Docker engine here, so the image is not built. Instead the tests read the Dockerfile with BuildKit's
parser and check that what it installs is enough: the requirement files it pip-installs are the ones
``scripts/setup.sh`` puts into ``.venv`` (where the test suite runs), every pin in them is installed here,
and a fresh interpreter run on a copy of exactly the files the final stage COPYs imports every backend
module and embeds a sentence, loading third-party code only from distributions those requirement files
pull in (no dev-only or stray package can hide a missing requirement). The model assembly the image does at
build time is checked against the catalogue, and the runtime stage against the Debian packages the code
asks for (bubblewrap, the OpenMP runtime).
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
dockerfile = pytest.importorskip("dockerfile", reason="`pip install dockerfile` (BuildKit's parser)")
requirements_mod = pytest.importorskip("packaging.requirements")


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def stages() -> list[list[Any]]:
    """The Dockerfile's instructions, one list per stage (FROM first)."""
    out: list[list[Any]] = []
    for c in dockerfile.parse_file(str(REPO / "Dockerfile")):
        if c.cmd.upper() == "FROM":
            out.append([])
        if out:
            out[-1].append(c)
    return out


def run_text(stage: list[Any]) -> str:
    return "\n".join(" ".join(c.value) for c in stage if c.cmd.upper() == "RUN")


def copies(stage: list[Any]) -> list[tuple[list[str], str, list[str]]]:
    """(sources, destination, flags) of each COPY in the stage."""
    return [(list(c.value[:-1]), c.value[-1], list(c.flags)) for c in stage if c.cmd.upper() == "COPY"]


def pip_installs(stage: list[Any]) -> list[tuple[str, bool]]:
    """(repository file, --no-deps?) for each ``pip install ... -r FILE`` in the stage's RUNs."""
    copied: dict[str, str] = {}  # image path -> repo path
    for sources, dest, flags in copies(stage):
        if any(f.startswith("--from") for f in flags):
            continue
        for src in sources:
            copied[dest.rstrip("/") + "/" + Path(src).name if dest.endswith("/") else dest] = src
    found = []
    for command in re.split(r"&&|;|\n", run_text(stage)):
        words = shlex.split(command)
        if "pip" not in words or "install" not in words:
            continue
        for i, word in enumerate(words):
            if word == "-r":
                found.append((copied[words[i + 1]], "--no-deps" in words))
    return found


def requirement_lines(path: Path) -> list[Any]:
    out = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            out.append(requirements_mod.Requirement(line))
    return out


def closure(files: list[tuple[str, bool]]) -> set[str]:
    """Every distribution the image's requirement files install, with their dependencies (markers evaluated)."""
    seen: set[str] = set()
    todo: list[tuple[Any, bool]] = [(r, no_deps) for f, no_deps in files for r in requirement_lines(REPO / f)]
    while todo:
        req, no_deps = todo.pop()
        key = (norm(req.name), tuple(sorted(req.extras)))
        if f"{key}" in seen:
            continue
        seen.add(f"{key}")
        seen.add(norm(req.name))
        if no_deps:
            continue
        dist = metadata.distribution(req.name)
        for spec in dist.requires or []:
            dep = requirements_mod.Requirement(spec)
            if dep.marker is None or any(dep.marker.evaluate({"extra": e}) for e in [*req.extras, ""]):
                todo.append((dep, False))
    return {s for s in seen if not s.startswith("(")}


# ----------------------------------------------------------------------------- tests
def test_image_installs_what_setup_installs() -> None:
    build = stages()[0]
    installs = pip_installs(build)
    assert dict(installs) == {"requirements.txt": False, "requirements-models.txt": True}
    setup = (REPO / "scripts" / "setup.sh").read_text()
    runtime_part = setup.split("if [ $DEV = 1 ]")[0]
    assert "-r requirements.txt" in runtime_part
    assert re.search(r"--no-deps -r requirements-models\.txt", runtime_part)


def test_every_pin_the_image_installs_is_installed_here() -> None:
    """So the checks below, run in .venv, run against the image's package set."""
    wrong = []
    for name, _ in pip_installs(stages()[0]):
        for req in requirement_lines(REPO / name):
            try:
                have = metadata.version(req.name)
            except metadata.PackageNotFoundError:
                have = None
            if have is None or not req.specifier.contains(have, prereleases=True):
                wrong.append(f"{req} (installed: {have})")
    assert not wrong, "run scripts/setup.sh: " + ", ".join(wrong)


def test_copy_sources_exist_and_are_not_dockerignored() -> None:
    patterns = [p.strip().rstrip("/") for p in (REPO / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]
    for stage in stages():
        for sources, _, flags in copies(stage):
            if any(f.startswith("--from") for f in flags):
                continue
            for src in sources:
                src = src.rstrip("/")
                assert (REPO / src).exists(), f"Dockerfile copies {src}, which is missing"
                parts = Path(src).parts
                prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
                hit = [p for p in patterns for x in prefixes if fnmatch.fnmatch(x, p) or fnmatch.fnmatch(x, p.removeprefix("**/"))]
                assert not hit, f".dockerignore {hit} excludes {src}, which the Dockerfile copies"


def test_models_are_assembled_at_build_time_where_the_runtime_looks() -> None:
    from backend.llm.model_assets import CATALOGUE
    from backend.settings import Settings

    build, final = stages()[0], stages()[-1]
    text = run_text(build)
    loop = re.search(r"for model in ([^;]+);", text)
    assert loop, "the build stage no longer assembles the models"
    models = loop.group(1).split()
    target = re.search(r"MODELS_DIR=(\S+) python -m backend\.llm\.model_assets --model \"\$model\"", text)
    assert target, "the assembly command changed"
    default = Settings(_env_file=None).embedded_model
    assert default in models  # `docker run` with the default settings finds its model
    agent_default = Settings(_env_file=None).embedded_agent_model
    assert agent_default is None or agent_default in models  # ... and its agent model (no silent fallback)
    shipped = {norm(r.name) for r in requirement_lines(REPO / "requirements-models.txt")}
    for model in models:
        assert model in CATALOGUE
        assert {norm(p) for p in CATALOGUE[model].packages} <= shipped, f"{model}'s parts are not installed"
    env = " ".join(" ".join(c.value) for c in final if c.cmd.upper() == "ENV")
    assert f"MODELS_DIR {target.group(1)}" in env or f"MODELS_DIR={target.group(1)}" in env
    assert any(flags and sources == [target.group(1)] for sources, _, flags in copies(final))
    # the step runs the backend's own CLI: its --requirements output is what gets uninstalled afterwards
    out = subprocess.run([sys.executable, "-m", "backend.llm.model_assets", "--model", default, "--requirements"],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and {norm(x.split("==")[0]) for x in out.stdout.split()} == \
        {norm(p) for p in CATALOGUE[default].packages}


def test_runtime_stage_has_the_system_packages_the_code_needs() -> None:
    final = stages()[-1]
    apt = set(re.findall(r"[a-z0-9][a-z0-9.+-]+", run_text(final).split("apt-get install", 1)[1].split("&&")[0]))
    assert {"bubblewrap", "libgomp1", "tini"} <= apt
    sandbox_hint = (REPO / "backend" / "tools" / "sandbox.py").read_text()
    assert "install the 'bubblewrap' package" in sandbox_hint  # the package the tool asks for is the one installed
    assert final[0].value[0] == stages()[0][0].value[0].split()[0]  # same Python in both stages (the venv is copied)
    assert any(sources == ["/opt/venv"] for sources, _, flags in copies(final) if flags)


IMPORT_ALL = r"""
import importlib, json, pkgutil, re, sys, tempfile
from importlib import metadata
from pathlib import Path
app = Path.cwd()
sys.path.insert(0, str(app))
# hide every distribution the image would not have, so optional imports fall back exactly as they would there
allowed = set(json.loads(sys.argv[1]))
dists = metadata.packages_distributions()
hidden = set()

class NotInTheImage:
    def find_spec(self, name, path=None, target=None):
        owners = dists.get(name) if "." not in name else None
        if owners and not any(re.sub(r"[-_.]+", "-", o).lower() in allowed for o in owners):
            hidden.add(name)
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NotInTheImage())
import backend
failed = {}
names = []
for info in pkgutil.walk_packages(backend.__path__, "backend."):
    names.append(info.name)
    try:
        importlib.import_module(info.name)
    except Exception as exc:
        failed[info.name] = f"{type(exc).__name__}: {exc}"
from backend.rag.embeddings import build_embedder
from backend.settings import Settings
with tempfile.TemporaryDirectory() as tmp:
    vectors = build_embedder(Settings(_env_file=None, data_dir=Path(tmp))).embed(["a sentence to embed"])
import llama_cpp  # the embedded provider loads it lazily
dists = metadata.packages_distributions()
loaded = {}
for name, mod in list(sys.modules.items()):
    top = name.split(".")[0]
    origin = getattr(mod, "__file__", None) or ""
    if top in sys.stdlib_module_names or not origin or "site-packages" not in origin:
        if origin and not origin.startswith((sys.base_prefix, sys.prefix, str(app))) and top != "__main__":
            loaded.setdefault("<outside the image>", []).append(origin)
        continue
    loaded.setdefault(top, dists.get(top, []))
print(json.dumps({"modules": names, "failed": failed, "shape": list(vectors.shape), "loaded": loaded,
                  "hidden": sorted(hidden)}))
"""


def test_backend_imports_and_embeds_from_the_image_files_only(tmp_path: Path) -> None:
    final = stages()[-1]
    app = tmp_path / "app"
    workdir = next(c.value[0] for c in final if c.cmd.upper() == "WORKDIR")
    for sources, dest, flags in copies(final):
        if any(f.startswith("--from") for f in flags):
            continue
        assert dest.startswith(workdir), dest
        for src in sources:
            target = app / dest.removeprefix(workdir).lstrip("/")
            if (REPO / src).is_dir():
                shutil.copytree(REPO / src, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                target.mkdir(parents=True, exist_ok=True) if dest.endswith("/") else target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(REPO / src, target / Path(src).name if dest.endswith("/") else target)
    assert (app / "backend" / "app.py").exists() and (app / "run_backend.py").exists()
    # -I: no PYTHONPATH, no user site, not the current directory (the script adds the copied tree only)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1"}
    allowed = closure(pip_installs(stages()[0])) | {"pip", "setuptools"}  # `python -m venv` brings these two
    out = subprocess.run([sys.executable, "-I", "-c", IMPORT_ALL, json.dumps(sorted(allowed))], cwd=app, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert not report["failed"], report["failed"]
    assert len(report["modules"]) > 50 and "backend.app" in report["modules"]
    assert report["shape"] == [1, 384]
    assert "<outside the image>" not in report["loaded"], report["loaded"]["<outside the image>"]
    stray = {top: d for top, d in report["loaded"].items() if not d or not any(norm(x) in allowed for x in d)}
    assert not stray, f"imported from packages the image does not install: {stray}"
    helped = subprocess.run([sys.executable, "-I", "run_backend.py", "--help"], cwd=app, env=env,
                            capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and "create-user" in helped.stdout and "assemble-model" in helped.stdout


def test_the_build_time_assembly_command_works_and_start_writes_nothing(tmp_path: Path) -> None:
    """The Dockerfile's own assembly command (for its smallest model), then what the container does at start."""
    from backend.llm.model_assets import CATALOGUE, ensure_model
    from backend.settings import Settings

    text = run_text(stages()[0])
    command = re.search(r"MODELS_DIR=(\S+) (python -m backend\.llm\.model_assets --model \"\$model\")", text)
    assert command, "the assembly command changed"
    models = re.search(r"for model in ([^;]+);", text).group(1).split()
    smallest = min(models, key=lambda m: CATALOGUE[m].size)
    target = tmp_path / "opt-models"
    argv = shlex.split(command.group(2).replace('"$model"', smallest))
    out = subprocess.run([sys.executable, *argv[1:]], cwd=REPO, env={"PATH": "/usr/bin:/bin", "MODELS_DIR": str(target)},
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    spec = CATALOGUE[smallest]
    assert (target / spec.filename).stat().st_size == spec.size
    before = {p.name: p.stat().st_mtime_ns for p in target.iterdir()}
    settings = Settings(_env_file=None, data_dir=tmp_path / "data", models_dir=target, embedded_model=smallest)
    assert ensure_model(settings) == target / spec.filename  # verified by its marker, not rebuilt
    assert {p.name: p.stat().st_mtime_ns for p in target.iterdir()} == before  # read-only /opt/models is enough
