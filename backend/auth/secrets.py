"""The JWT signing secret: from settings, or generated once and stored with mode 0600."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from backend.settings import Settings

MIN_SECRET_CHARS = 32


def load_jwt_secret(settings: Settings) -> str:
    if settings.jwt_secret is not None:
        value = settings.jwt_secret.get_secret_value()
        if len(value) < MIN_SECRET_CHARS:
            raise ValueError(f"JWT_SECRET must be at least {MIN_SECRET_CHARS} characters")
        return value
    path = Path(settings.secrets_path) / "jwt_secret"
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        value = path.read_text().strip()
        if len(value) >= MIN_SECRET_CHARS:
            return value
        raise ValueError(f"{path} is empty or too short; delete it to generate a new secret") from None
    value = secrets.token_urlsafe(64)
    with os.fdopen(fd, "w") as fh:
        fh.write(value)
        fh.flush()
        os.fsync(fh.fileno())
    return value
