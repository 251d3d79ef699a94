from __future__ import annotations

import os
import stat
from pathlib import Path

from backend.auth.secrets import load_jwt_secret
from backend.settings import Settings


def test_paths_derive_from_data_dir_and_can_be_overridden(tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("UPLOADS_DIR", str(tmp_path / "elsewhere"))
    s = Settings(_env_file=None)
    assert s.users_path == tmp_path / "state" / "users" / "users.json"
    assert s.conversations_path == tmp_path / "state" / "conversations"
    assert s.uploads_path == tmp_path / "elsewhere"
    assert all(str(p).startswith(str(tmp_path)) for p in s.state_dirs())


def test_env_file_and_csv_lists(tmp_path, monkeypatch):
    env = tmp_path / ".env"
    env.write_text("PORT=9123\nCORS_ORIGINS=https://a.example, https://b.example\nLLM_PROVIDER=ollama\n")
    s = Settings(_env_file=env)
    assert s.port == 9123 and s.llm_provider == "ollama"
    assert s.cors_origins == ["https://a.example", "https://b.example"]


def test_secure_defaults():
    s = Settings(_env_file=None)
    assert s.host == "127.0.0.1" and s.port == 8000
    assert s.allow_registration is False and s.allow_anonymous is False
    assert s.jwt_secret is None and s.llm_provider == "embedded"


def test_jwt_secret_generated_once_with_0600(tmp_path):
    s = Settings(_env_file=None, data_dir=tmp_path)
    first = load_jwt_secret(s)
    assert load_jwt_secret(s) == first and len(first) >= 64
    path = s.secrets_path / "jwt_secret"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_building_settings_touches_nothing(tmp_path):
    Settings(_env_file=None, data_dir=tmp_path / "never")
    assert not Path(tmp_path / "never").exists()
