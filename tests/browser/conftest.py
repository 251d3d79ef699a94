"""Browser fixtures: a real Chromium (Playwright) driving the chat page served by the real app.

``app_server`` runs the real FastAPI app (``backend.app.create_app``: real routes, auth, storage,
agents, SSE renderer, static page and security headers) under uvicorn on 127.0.0.1 in a thread,
with the scripted model from ``tests.fakes`` so answers and agent steps are deterministic.
The real embedded model is exercised through the lead's ``live_server`` fixture (marker ``model``).

Screenshots go to test-artifacts/screenshots/; with UPDATE_SCREENSHOTS=1 also to docs/screenshots/.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import MODELS_DIR, PASSWORD, free_port

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
ARTIFACTS = REPO / "test-artifacts" / "screenshots"
DOCS_SCREENSHOTS = REPO / "docs" / "screenshots"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    reason = None
    try:
        import playwright  # noqa: F401
    except ImportError:
        reason = "playwright is not installed"
    if reason is None and not Path(CHROMIUM).exists():
        reason = f"no Chromium at {CHROMIUM} (apt-get install chromium, or set CHROMIUM_PATH)"
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.browser)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="module")  # Playwright's sync API leaves a running loop: never outlive the module
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class PageErrors(list):
    """Uncaught page errors and dialogs (alert/confirm/prompt) seen during a test."""


@pytest.fixture
def new_page(browser: Any) -> Iterator[Any]:
    contexts: list[Any] = []

    def factory(width: int = 1280, height: int = 800, **context_kw: Any) -> Any:
        context = browser.new_context(viewport={"width": width, "height": height}, **context_kw)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.errors = PageErrors()
        page.dialogs = []

        def on_dialog(dialog: Any) -> None:
            page.dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("pageerror", lambda exc: page.errors.append(str(exc)))
        page.on("dialog", on_dialog)
        return page

    yield factory
    for context in contexts:
        context.close()


@dataclass
class AppServer:
    base_url: str
    provider: Any
    services: Any
    data_dir: Path


@pytest.fixture
def app_server(make_settings: Any) -> Iterator[AppServer]:
    yield from run_app_server(make_settings)


def run_app_server(make_settings: Any, **overrides: Any) -> Iterator[AppServer]:
    import uvicorn

    from backend.app import create_app
    from tests.fakes import ScriptedProvider

    provider = ScriptedProvider(delay_s=0.02)
    settings = make_settings(**{"serve_frontend": True, "models_dir": MODELS_DIR, **overrides})
    app = create_app(settings, provider=provider)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="browser-app-server", daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        if not thread.is_alive() or time.time() > deadline:
            raise RuntimeError("the app server did not start")
        time.sleep(0.05)
    services = app.state.services
    services.users.create("alice", PASSWORD, "admin")
    services.users.create("bob", PASSWORD, "user")
    try:
        yield AppServer(f"http://127.0.0.1:{port}", provider, services, settings.data_dir)
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def login(page: Any, base_url: str, username: str = "alice", password: str = PASSWORD) -> None:
    page.goto(base_url + "/")
    page.fill("#login-username", username)
    page.fill("#login-password", password)
    page.click("#login-submit")
    page.wait_for_selector("#app-view:not([hidden])")
    page.wait_for_function("() => document.querySelectorAll('#model-select option').length > 0")


def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_SCREENSHOTS / f"{name}.png")
    return path


AXE_JS = Path(__file__).parent / "vendor" / "axe.min.js"  # axe-core 4.10.3 (MPL-2.0), see vendor/README.md


def axe_violations(page: Any, impacts: tuple[str, ...] = ("serious", "critical")) -> list[dict[str, Any]]:
    """Runs the vendored axe-core in the page (evaluate is not subject to the page's CSP) and returns
    the violations of the given impacts, each as {id, impact, help, targets}."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE_JS.read_text(encoding="utf-8") + "\n;undefined")
    result = page.evaluate(
        "async () => { const r = await axe.run(document, {resultTypes: ['violations']});"
        " return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,"
        " targets: v.nodes.map(n => n.target.join(' ')).slice(0, 5)})); }"
    )
    return [v for v in result if v["impact"] in impacts]
