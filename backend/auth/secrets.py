"""The JWT signing secret: from settings, or generated once and stored with mode 0600.

A configured ``JWT_SECRET`` must look like a random key: at least 32 characters, about 128 bits
by a per-character entropy estimate, and none of the placeholder words people paste from examples
("changeme", "your-secret", ...) nor a value this repository once used in its tests or benchmarks.
Generate one with ``python -c "import secrets; print(secrets.token_urlsafe(48))"``.
"""

from __future__ import annotations

import math
import os
import re
import secrets
from collections import Counter
from pathlib import Path

from backend.settings import Settings

MIN_SECRET_CHARS = 32
MIN_SECRET_BITS = 128
# normalised (lower-case, letters and digits only) fragments that mark an example or test value
PLACEHOLDER_WORDS = (
    "changeme", "changethis", "yoursecret", "mysecret", "supersecret", "secretkey", "jwtsecret", "example",
    "placeholder", "replaceme", "insecure", "dontuse", "donotuse", "testsecret", "benchsecret", "password",
    "xxxxxxxx", "12345678", "abcdefgh", "qwerty",
)
_GENERATE_HINT = 'generate one with: python -c "import secrets; print(secrets.token_urlsafe(48))"'


def entropy_bits(value: str) -> float:
    """Shannon entropy of the character distribution times the length (an upper-bound estimate)."""
    if not value:
        return 0.0
    counts = Counter(value)
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in counts.values()) * n


def check_secret_strength(value: str) -> None:
    """Raise ValueError if ``value`` is too short, too regular or a known placeholder."""
    if len(value) < MIN_SECRET_CHARS:
        raise ValueError(f"JWT_SECRET must be at least {MIN_SECRET_CHARS} characters; {_GENERATE_HINT}")
    normalised = re.sub(r"[^a-z0-9]", "", value.lower())
    word = next((w for w in PLACEHOLDER_WORDS if w in normalised), None)
    if word is not None:
        raise ValueError(f"JWT_SECRET looks like an example or test value (contains {word!r}); {_GENERATE_HINT}")
    if entropy_bits(value) < MIN_SECRET_BITS or len(set(value)) < 12:
        raise ValueError(f"JWT_SECRET is too predictable (repeated or few distinct characters); {_GENERATE_HINT}")


def load_jwt_secret(settings: Settings) -> str:
    if settings.jwt_secret is not None:
        value = settings.jwt_secret.get_secret_value()
        check_secret_strength(value)
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
