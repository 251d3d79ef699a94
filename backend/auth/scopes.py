"""What each kind of credential may do (least privilege for API keys).

A login session (JWT) may do everything its role allows. An API key carries scopes; a new key
gets ``inference`` only (the OpenAI routes plus reading and searching one's own documents), so a
key pasted into an IDE plugin cannot manage keys, export or delete the account, or administer.
Routes not listed below need a login session: a new route is closed to keys until it is listed.
"""

from __future__ import annotations

SCOPES: dict[str, str] = {
    "inference": "/v1/* (chat, models) and reading/searching your own documents",
    "documents": "upload and delete documents, ingestion jobs",
    "conversations": "list, read, rename and delete conversations",
    "keys": "create, list and revoke API keys (never with more scopes than the key itself)",
    "account": "export or delete your account",
    "admin": "user administration (administrators only)",
}
SESSION = "session"  # held by login sessions only: password change, token refresh, logout
DEFAULT_KEY_SCOPES: tuple[str, ...] = ("inference",)
ALL_SCOPES = frozenset(SCOPES) | {SESSION}
ANONYMOUS_SCOPES = frozenset({"inference", "documents", "conversations"})

_READ = frozenset({"GET", "HEAD"})
# (methods or None for any, path prefix, scope): the first match decides
_RULES: tuple[tuple[frozenset[str] | None, str, str], ...] = (
    (None, "/v1/", "inference"),
    (_READ, "/api/files/documents", "inference"),
    (frozenset({"POST"}), "/api/files/search", "inference"),
    (_READ, "/api/auth/me", "inference"),
    (None, "/api/files/", "documents"),
    (None, "/api/conversations", "conversations"),
    (None, "/api/keys", "keys"),
    (None, "/api/account", "account"),
    (None, "/api/admin/", "admin"),
)


def required_scope(method: str, path: str) -> str:
    for methods, prefix, scope in _RULES:
        if (methods is None or method in methods) and (path == prefix.rstrip("/") or path.startswith(prefix)):
            return scope
    return SESSION


def normalise_scopes(requested: list[str] | None) -> list[str]:
    """Validated, de-duplicated, in catalogue order; ``None`` → the default (inference only)."""
    from backend.errors import BadRequestError

    if requested is None:
        return list(DEFAULT_KEY_SCOPES)
    unknown = [s for s in requested if s not in SCOPES]
    if unknown or not requested:
        raise BadRequestError(
            f"Unknown or empty scopes {unknown}; choose from {sorted(SCOPES)}.", param="scopes", code="invalid_scope"
        )
    return [s for s in SCOPES if s in requested]
