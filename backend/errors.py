"""One error hierarchy, turned into OpenAI's error body in one place (``install_handlers``).

Raise an ``APIError`` subclass anywhere below the routes; the client receives
``{"error": {"message", "type", "param", "code"}}`` with the matching HTTP status.
Unexpected exceptions become a 500 with a generic message and no stack trace.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("backend.errors")


class APIError(Exception):
    status_code: int = 500
    error_type: str = "server_error"
    default_code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.error_type, self.param, self.code)


class BadRequestError(APIError):
    status_code = 400
    error_type = "invalid_request_error"


class ContextLengthExceededError(BadRequestError):
    default_code = "context_length_exceeded"


class AuthenticationError(APIError):
    status_code = 401
    error_type = "authentication_error"
    default_code = "invalid_api_key"

    def __init__(self, message: str = "Invalid or missing credentials.", **kw: Any) -> None:
        kw.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(message, **kw)


class PermissionDeniedError(APIError):
    status_code = 403
    error_type = "permission_error"
    default_code = "forbidden"


class NotFoundError(APIError):
    status_code = 404
    error_type = "invalid_request_error"
    default_code = "not_found"


class ConflictError(APIError):
    status_code = 409
    error_type = "invalid_request_error"
    default_code = "conflict"


class PayloadTooLargeError(APIError):
    status_code = 413
    error_type = "invalid_request_error"
    default_code = "payload_too_large"


class UnprocessableError(APIError):
    status_code = 422
    error_type = "invalid_request_error"
    default_code = "unprocessable_entity"


class RateLimitError(APIError):
    status_code = 429
    error_type = "rate_limit_error"
    default_code = "rate_limit_exceeded"


class UpstreamError(APIError):
    """The model backend answered with garbage or an error."""

    status_code = 502
    error_type = "server_error"
    default_code = "bad_gateway"


class ServiceUnavailableError(APIError):
    status_code = 503
    error_type = "server_error"
    default_code = "service_unavailable"

    def __init__(self, message: str, *, retry_after: int = 5, **kw: Any) -> None:
        headers = dict(kw.pop("headers", None) or {})
        headers.setdefault("Retry-After", str(max(1, int(retry_after))))
        super().__init__(message, headers=headers, **kw)


class UpstreamTimeoutError(APIError):
    status_code = 504
    error_type = "server_error"
    default_code = "timeout"


class StorageError(APIError):
    """The state directory could not be written (disk full, permissions)."""

    status_code = 507
    error_type = "server_error"
    default_code = "storage_unavailable"


def error_body(
    message: str, error_type: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


_STATUS_TYPES = {
    400: ("invalid_request_error", None),
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", "forbidden"),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    413: ("invalid_request_error", "payload_too_large"),
    415: ("invalid_request_error", "unsupported_media_type"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
}


def _loc_to_param(loc: tuple[Any, ...] | list[Any]) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    if not parts:
        return None
    out = parts[0]
    for p in parts[1:]:
        out += f"[{p}]" if p.isdigit() else f".{p}"
    return out


def validation_error(exc: Any) -> BadRequestError:
    """Turn a pydantic/FastAPI validation error into a 400 with a readable message."""
    errors = exc.errors() if hasattr(exc, "errors") else []
    if not errors:
        return BadRequestError("Invalid request body.")
    first = errors[0]
    param = _loc_to_param(first.get("loc", ()))
    msg = first.get("msg", "invalid value")
    where = f" at '{param}'" if param else ""
    extra = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return BadRequestError(f"Invalid request{where}: {msg}{extra}", param=param, code="invalid_value")


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        headers = dict(exc.headers)
        if exc.status_code < 500 and exc.status_code not in (408, 409, 429):
            headers.setdefault("x-should-retry", "false")
        return JSONResponse(exc.body(), status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        err = validation_error(exc)
        return JSONResponse(err.body(), status_code=400, headers={"x-should-retry": "false"})

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        etype, code = _STATUS_TYPES.get(exc.status_code, ("server_error", None))
        message = exc.detail if isinstance(exc.detail, str) else "Request failed."
        return JSONResponse(
            error_body(message, etype, None, code),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(
            error_body("The server had an error while processing your request.", "server_error"),
            status_code=500,
        )
