"""Changing a password (by its owner or by an administrator) revokes every credential of the account.

Login tokens carry the password version (``pwv``) and API keys are bound to it at creation, so the
version bump alone makes them fail; the keys are also deleted so the list does not show dead keys.
"""

from __future__ import annotations

from backend.services import Services


def change_password(services: Services, user_id: str, new_password: str, *, by: str) -> int:
    """Set the password (validated, bcrypt) and revoke tokens and keys; returns the keys revoked."""
    services.users.set_password(user_id, new_password)
    revoked = services.keys.delete_user(user_id)
    services.audit.record("password_changed", user=user_id, by=by, keys_revoked=revoked)
    return revoked
