"""/docs in a real Chromium: Swagger UI renders from local assets under the page's CSP, and
"Authorize" takes a login token that "Try it out" then sends as the bearer header."""

from __future__ import annotations

import httpx

from tests.browser.conftest import screenshot
from tests.conftest import PASSWORD


def test_swagger_ui_renders_without_csp_violations(app_server, new_page):
    page = new_page()
    console: list[str] = []
    requests: list[str] = []
    page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
    page.on("request", lambda req: requests.append(req.url))
    page.goto(app_server.base_url + "/docs")
    page.wait_for_selector(".swagger-ui .info .title")
    page.wait_for_selector("#operations-openai-create_embeddings_v1_embeddings_post")
    assert "Local agent server" in page.inner_text(".swagger-ui .info .title")
    assert not page.errors
    violations = [c for c in console if "Content Security Policy" in c or "Refused to" in c]
    assert violations == []
    assert all(url.startswith(app_server.base_url) for url in requests), requests  # nothing from a CDN
    screenshot(page, "docs-swagger")

    # Authorize with a real token, then "Try it out" on GET /v1/models sends it
    token = httpx.post(app_server.base_url + "/api/auth/login", json={"username": "bob", "password": PASSWORD}).json()["access_token"]
    page.click("button.authorize")
    page.fill(".auth-container input", token)
    page.click(".auth-btn-wrapper button.authorize")
    page.click("button.btn-done")
    page.click("#operations-openai-list_models_v1_models_get .opblock-summary")
    page.click("#operations-openai-list_models_v1_models_get button.try-out__btn")
    page.click("#operations-openai-list_models_v1_models_get button.execute")
    page.wait_for_selector("#operations-openai-list_models_v1_models_get .live-responses-table .response-col_status")
    status = page.inner_text("#operations-openai-list_models_v1_models_get .live-responses-table .response .response-col_status")
    assert status.strip().startswith("200"), status
    assert "scripted-model" in page.inner_text("#operations-openai-list_models_v1_models_get .live-responses-table")
