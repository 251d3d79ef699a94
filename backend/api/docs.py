"""``/docs``: Swagger UI served from this server (no CDN), and the OpenAPI document it reads.

* The Swagger UI files come from the ``swagger-ui-bundle-v2`` package (Apache-2.0); only the
  three it needs are served, under ``/docs/assets/``, with our own initialiser script instead of
  an inline one, so the page runs under a strict CSP of its own (no 'unsafe-inline' anywhere;
  ``default-src 'none'``; the browser test checks no violation is reported).
* Routes that read their body themselves (to answer bad JSON in OpenAI's error shape) declare
  it with ``json_body(Model)``; ``install_openapi`` adds those models to the components.
* The bearer scheme comes from ``backend.api.deps`` (``HTTPBearer``): "Authorize" takes a JWT
  from ``/api/auth/login`` or an API key.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, HTMLResponse
from pydantic import BaseModel

from backend.errors import NotFoundError

router = APIRouter(include_in_schema=False)

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
ASSETS = {  # served name -> (package file | our file)
    "swagger-ui-bundle.js": "swagger",
    "swagger-ui.css": "swagger",
    "favicon-32x32.png": "swagger",
    "docs-init.js": "ours",
}
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'none'"
)
_BODY_MODELS: dict[str, type[BaseModel]] = {}


def json_body(model: type[BaseModel], *, form: bool = False) -> dict[str, Any]:
    """``openapi_extra`` declaring ``model`` as the JSON (and, with ``form``, form) request body."""
    _BODY_MODELS[model.__name__] = model
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    content: dict[str, Any] = {"application/json": {"schema": ref}}
    if form:
        content["application/x-www-form-urlencoded"] = {"schema": ref}
    return {"requestBody": {"required": True, "content": content}}


def _swagger_dir() -> Path:
    from swagger_ui_bundle import swagger_ui_path

    return Path(str(swagger_ui_path))


def install_openapi(app: FastAPI) -> None:
    """The OpenAPI document, with the request-body models of ``json_body`` in its components."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            schemas = doc.setdefault("components", {}).setdefault("schemas", {})
            for name, model in _BODY_MODELS.items():
                schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                schemas.update(schema.pop("$defs", {}))
                schemas[name] = schema
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


@router.get("/docs", response_class=HTMLResponse)
async def swagger_ui(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "").rstrip("/")
    openapi_url = html.escape(root + (request.app.openapi_url or "/openapi.json"), quote=True)
    assets = html.escape(root + "/docs/assets", quote=True)
    title = html.escape(request.app.title)
    page = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} - API docs</title>
<link rel="icon" type="image/png" href="{assets}/favicon-32x32.png">
<link rel="stylesheet" href="{assets}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{openapi_url}"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="{assets}/docs-init.js"></script>
</body>
</html>
"""
    return HTMLResponse(page, headers={"Content-Security-Policy": DOCS_CSP, "Cache-Control": "no-cache"})


@router.get("/docs/assets/{name}")
async def swagger_asset(name: str) -> FileResponse:
    origin = ASSETS.get(name)
    if origin is None:
        raise NotFoundError(f"No docs asset named '{name}'.")
    path = (_swagger_dir() if origin == "swagger" else STATIC_DIR) / name
    return FileResponse(path, headers={"Cache-Control": "public, max-age=86400"})
