"""The chat page in a real Chromium against the real app (scripted model): what a user sees and does."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.conftest import AppServer, login, screenshot
from tests.conftest import PASSWORD, free_port

REACT_SCRIPT = [
    # a computation question gets a forced (grammar-constrained) tool call: the model's reply is the call as JSON
    '{"name": "math_calc", "arguments": {"expression": "6*7"}}',
    "The answer is **42**.",
]


def token_of(page: Any) -> str:
    raw = page.evaluate("sessionStorage.getItem('agent_chat_token')")
    return json.loads(raw)["token"]


def send(page: Any, text: str) -> None:
    page.fill("#composer-input", text)
    page.press("#composer-input", "Enter")


def last_answer_done(page: Any, timeout: float = 20_000) -> Any:
    page.wait_for_selector("#stop-btn", state="hidden", timeout=timeout)
    return page.locator(".msg-assistant").last


def test_login_rejects_a_wrong_password_then_signs_in(app_server: AppServer, new_page: Any) -> None:
    page = new_page()
    page.goto(app_server.base_url + "/")
    assert page.locator("#login-view").is_visible()
    screenshot(page, "login")
    page.fill("#login-username", "alice")
    page.fill("#login-password", "not the password")
    page.click("#login-submit")
    page.wait_for_selector("#login-error:not([hidden])")
    assert "Wrong username or password" in page.inner_text("#login-error")
    assert page.locator("#app-view").is_hidden()

    page.fill("#login-password", PASSWORD)
    page.press("#login-password", "Enter")
    page.wait_for_selector("#app-view:not([hidden])")
    assert page.inner_text("#user-name") == "alice"
    # the model list comes from /v1/models; the mode picker maps to model-id suffixes
    page.wait_for_function("() => document.querySelectorAll('#model-select option').length > 0")
    assert page.locator("#model-select").input_value() == "scripted-model"
    assert page.locator("#model-select option").all_inner_texts() == ["scripted-model"]  # not the embedding model
    # a reload keeps the session (sessionStorage) instead of asking to log in again
    page.reload()
    page.wait_for_selector("#app-view:not([hidden])")
    assert not page.errors and not page.dialogs


def test_answer_streams_in_renders_markdown_and_is_stored(app_server: AppServer, new_page: Any) -> None:
    answer = "Here is **bold** text and `code` streamed word by word so the page can show it growing. Done."
    app_server.provider.outputs = [answer]
    app_server.provider.delay_s = 0.12
    page = new_page()
    login(page, app_server.base_url)

    page.fill("#composer-input", "first line")
    page.press("#composer-input", "Shift+Enter")  # a newline, not a send
    page.type("#composer-input", "second line")
    assert page.locator(".msg").count() == 0
    assert page.input_value("#composer-input") == "first line\nsecond line"
    page.press("#composer-input", "Enter")

    # while streaming: part of the answer is visible, the Stop button replaces Send
    page.wait_for_function(
        "() => { const b = document.querySelector('.msg-assistant.streaming .msg-body');"
        " return b && b.textContent.includes('bold') && !b.textContent.includes('Done.'); }"
    )
    assert page.locator("#stop-btn").is_visible()
    msg = last_answer_done(page)
    body = msg.locator(".msg-body")
    assert body.inner_text().strip().endswith("Done.")
    assert body.locator("strong").inner_text() == "bold"
    assert body.locator("code").inner_text() == "code"
    assert page.locator(".msg-user .msg-body").inner_text() == "first line\nsecond line"
    assert "completion tokens" in msg.locator(".msg-usage").inner_text()
    screenshot(page, "chat-markdown")

    # the server created the conversation (conversation_id "new") and titled it from the question
    page.wait_for_selector("#conv-list .item.active")
    assert "first line" in page.inner_text("#conv-list .item.active .item-title")
    assert "first line" in page.inner_text("#chat-title")

    # a fresh page shows the stored exchange after opening it from the list
    page.reload()
    page.wait_for_selector("#conv-list .item")
    page.click("#conv-list .item-main")
    page.wait_for_selector(".msg-assistant")
    assert page.locator(".msg-assistant .msg-body strong").inner_text() == "bold"

    # the second question sends the whole history
    app_server.provider.delay_s = 0.0
    app_server.provider.outputs = ["Second answer."]
    send(page, "and again")
    last_answer_done(page)
    sent = app_server.provider.calls[-1]["messages"]
    contents = [m["content"] for m in sent if m["role"] in ("user", "assistant")]
    assert contents[-3:] == ["first line\nsecond line", answer, "and again"]
    assert not page.errors and not page.dialogs


def test_react_mode_shows_agent_steps(app_server: AppServer, new_page: Any) -> None:
    app_server.provider.outputs = list(REACT_SCRIPT)
    page = new_page()
    login(page, app_server.base_url)
    page.select_option("#mode-select", "react")
    send(page, "What is 6 times 7? Use a tool.")
    msg = last_answer_done(page)
    assert msg.locator(".msg-agent").inner_text() == "ReAct"
    steps = msg.locator(".msg-steps")
    assert steps.is_visible()
    assert re.fullmatch(r"Steps \(\d+\)", steps.locator("summary").inner_text())
    steps.locator("summary").click()
    first = steps.locator(".step").first
    assert first.locator(".step-tool").inner_text() == "math_calc"
    assert "6*7" in first.locator(".step-input").inner_text()
    assert first.locator(".step-observation").inner_text().strip() != ""
    assert "42" in msg.locator(".msg-body").inner_text()
    screenshot(page, "agent-steps")
    # the mode choice survives a reload
    page.reload()
    page.wait_for_selector("#app-view:not([hidden])")
    assert page.locator("#mode-select").input_value() == "react"
    assert not page.errors and not page.dialogs


def test_upload_lists_and_deletes_a_document(app_server: AppServer, new_page: Any, tmp_path: Path) -> None:
    doc = tmp_path / "field-notes.txt"
    doc.write_text(
        "Field notes from the north station.\n\n"
        + "The lighthouse keeper logs the tide at dawn and again at dusk, in pencil, in the blue ledger. " * 8
        + "\n\nSupply boats arrive on the first Monday of each month when the sea allows. " * 8
        + "\n\nThe lamp is a second-order Fresnel lens, cleaned every morning before the log is written. " * 8
    )
    page = new_page()
    login(page, app_server.base_url)
    page.set_input_files("#upload-input", str(doc))
    assert page.inner_text("#upload-chosen") == "field-notes.txt"
    page.click("#upload-btn")
    page.wait_for_function("() => document.querySelector('#upload-status-text').textContent.startsWith('Uploaded')",
                           timeout=60_000)
    assert page.locator("#upload-progress").get_attribute("value") == "100"
    item = page.locator("#doc-list .item", has_text="field-notes.txt")
    item.wait_for()
    assert "chunk" in item.locator(".item-sub").inner_text()
    page.check("#use-docs")

    # with "use my documents" on, the answer lists the retrieved passages as sources
    app_server.provider.outputs = ["The keeper logs the tide at dawn [1]."]
    send(page, "When does the lighthouse keeper log the tide?")
    msg = last_answer_done(page, timeout=60_000)
    sources = msg.locator(".msg-sources")
    sources.wait_for()
    assert "field-notes.txt" in sources.locator(".source-head").first.inner_text()
    screenshot(page, "documents")

    # delete needs a second click (no native confirm dialog)
    item.locator(".cited-in button").wait_for()  # the list reloads once the answer cites the document
    button = item.locator("button.danger-hover")  # the item also links the citing conversation
    button.click()
    assert button.inner_text() == "Delete?"
    button.click()
    page.wait_for_selector("#doc-empty:not([hidden])")
    assert page.locator("#doc-list .item").count() == 0
    assert not page.errors and not page.dialogs


def test_use_documents_toggle_is_sent_with_the_question(app_server: AppServer, new_page: Any) -> None:
    page = new_page()
    login(page, app_server.base_url)
    page.check("#use-docs")
    with page.expect_request("**/v1/chat/completions") as req:
        send(page, "What do my notes say?")
    body = req.value.post_data_json
    assert body["use_documents"] is True
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["model"] == "scripted-model"
    last_answer_done(page)


XSS_TITLE = "<img src=x onerror=\"window.__xss='title'\">Title"
XSS_USER = "<img src=x onerror=\"window.__xss='user'\"><script>window.__xss='user-script'</script>"
XSS_ANSWER = (
    "Raw: <img src=x onerror=\"window.__xss='answer'\"> <script>window.__xss='answer-script'</script>\n\n"
    "[click me](javascript:window.__xss='link') and <a href=\"javascript:window.__xss='a'\">a</a>\n\n"
    "```html\n<script>window.__xss='code'</script>\n```\n\n"
    "[fine link](https://example.com/docs)"
)
XSS_FILENAME = "<img src=x onerror=window.__xss=1>.txt"


def assert_nothing_executed(page: Any) -> None:
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert page.dialogs == []
    assert page.locator("#messages img, #conv-list img, #doc-list img, #messages script").count() == 0
    hrefs = page.eval_on_selector_all("a[href]", "els => els.map(e => e.getAttribute('href'))")
    assert not [h for h in hrefs if h.strip().lower().startswith("javascript:")]
    handlers = page.evaluate(
        "[...document.querySelectorAll('*')].flatMap(e => [...e.attributes].map(a => a.name))"
        ".filter(n => n.startsWith('on'))"
    )
    assert handlers == []


def test_stored_xss_in_message_title_and_filename_never_executes(
    app_server: AppServer, new_page: Any, tmp_path: Path
) -> None:
    # The CSP would block inline handlers anyway: bypass it so the sanitising itself is tested.
    page = new_page(bypass_csp=True)
    login(page, app_server.base_url)
    headers = {"Authorization": "Bearer " + token_of(page)}
    with httpx.Client(base_url=app_server.base_url, headers=headers, timeout=60) as client:  # ingestion on a busy machine
        r = client.post("/api/conversations", json={"title": XSS_TITLE})
        assert r.status_code == 201, r.text
        bad = tmp_path / "payload.txt"
        bad.write_text("harmless text about tides\n")
        upload = client.post("/api/files/upload", files={"files": (XSS_FILENAME, bad.read_bytes(), "text/plain")})
    page.reload()
    page.wait_for_selector("#conv-list .item")
    assert XSS_TITLE in page.inner_text("#conv-list")  # shown literally, as text
    if upload.status_code < 300:
        page.wait_for_selector("#doc-list .item")
        stored_name = upload.json()["data"][0]["filename"]
        assert stored_name in page.inner_text("#doc-list")

    app_server.provider.outputs = [XSS_ANSWER]
    send(page, XSS_USER)
    msg = last_answer_done(page)
    assert page.locator(".msg-user .msg-body").inner_text() == XSS_USER
    assert "<script>window.__xss='code'</script>" in msg.locator("pre code").inner_text()
    good = msg.locator("a", has_text="fine link")
    assert good.get_attribute("href") == "https://example.com/docs"
    assert good.get_attribute("rel") == "noopener noreferrer"
    assert_nothing_executed(page)

    # the same content loaded back from storage
    page.reload()
    page.wait_for_selector("#conv-list .item")
    page.locator("#conv-list .item-main", has_text="window.__xss='user'").first.click()
    page.wait_for_selector(".msg-assistant")
    assert_nothing_executed(page)
    assert not page.errors


def test_stop_button_cancels_generation(app_server: AppServer, new_page: Any) -> None:
    app_server.provider.outputs = [" ".join(f"word{i}" for i in range(200))]
    app_server.provider.delay_s = 0.1
    page = new_page()
    login(page, app_server.base_url)
    send(page, "Write a long text")
    page.wait_for_function("() => document.querySelector('.msg-assistant .msg-body').textContent.includes('word2')")
    page.click("#stop-btn")
    msg = last_answer_done(page, timeout=5_000)
    assert "Stopped" in msg.locator(".msg-error").inner_text()
    assert page.locator("#send-btn").is_visible()
    text = msg.locator(".msg-body").inner_text()
    assert "word199" not in text
    # the server noticed the disconnect and cancelled the generation
    for _ in range(50):
        if app_server.provider.cancelled:
            break
        page.wait_for_timeout(100)
    assert app_server.provider.cancelled >= 1


def test_expired_session_asks_to_log_in_again(app_server: AppServer, new_page: Any) -> None:
    page = new_page()
    login(page, app_server.base_url)
    # revoke the page's token on the server (as a logout elsewhere or an expiry would)
    token = token_of(page)
    r = httpx.post(app_server.base_url + "/api/auth/logout", headers={"Authorization": "Bearer " + token})
    assert r.status_code == 204
    send(page, "hello?")
    page.wait_for_selector("#login-view:not([hidden])")
    assert "Your session expired" in page.inner_text("#login-error")
    assert page.evaluate("sessionStorage.getItem('agent_chat_token')") is None


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (429, {"Retry-After": "7"}, "Too many requests \u2014 please wait 7 seconds"),
        (503, {"Retry-After": "3"}, "The server is busy right now"),
    ],
)
def test_rate_limit_and_busy_errors_are_explained(
    app_server: AppServer, new_page: Any, status: int, headers: dict[str, str], expected: str
) -> None:
    page = new_page()
    login(page, app_server.base_url)
    body = {"error": {"message": "limit", "type": "rate_limit_error", "param": None, "code": None}}
    page.route("**/v1/chat/completions", lambda route: route.fulfill(
        status=status, headers={**headers, "Content-Type": "application/json"}, body=json.dumps(body)))
    send(page, "hi")
    msg = last_answer_done(page)
    assert expected in msg.locator(".msg-error").inner_text()


def test_backend_down_is_explained(app_server: AppServer, new_page: Any) -> None:
    page = new_page()
    login(page, app_server.base_url)
    page.route("**/v1/chat/completions", lambda route: route.abort("connectionrefused"))
    send(page, "hi")
    msg = last_answer_done(page)
    assert "Cannot reach the server" in msg.locator(".msg-error").inner_text()


def test_stream_error_chunk_is_shown(app_server: AppServer, new_page: Any) -> None:
    app_server.provider.fail = RuntimeError("model crashed")
    page = new_page()
    login(page, app_server.base_url)
    send(page, "hi")
    msg = last_answer_done(page)
    error = msg.locator(".msg-error")
    error.wait_for()
    assert error.inner_text().strip() != ""


def test_logout_forgets_and_revokes_the_token(app_server: AppServer, new_page: Any) -> None:
    page = new_page()
    login(page, app_server.base_url)
    token = token_of(page)
    with page.expect_response("**/api/auth/logout") as resp:
        page.click("#logout-btn")
    assert resp.value.status == 204
    assert page.locator("#login-view").is_visible()
    assert page.evaluate("sessionStorage.getItem('agent_chat_token')") is None
    page.reload()
    assert page.locator("#login-view").is_visible()
    r = httpx.get(app_server.base_url + "/api/conversations", headers={"Authorization": "Bearer " + token})
    assert r.status_code == 401


def test_phone_width_layout_and_theme_toggle(app_server: AppServer, new_page: Any) -> None:
    page = new_page(width=375, height=740, color_scheme="light")
    login(page, app_server.base_url)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    assert page.locator("#sidebar").is_hidden() or not page.locator("#new-conv-btn").is_visible()
    page.click("#sidebar-toggle")
    page.wait_for_selector("#new-conv-btn", state="visible")
    assert page.get_attribute("#sidebar-toggle", "aria-expanded") == "true"
    page.keyboard.press("Escape")
    page.wait_for_selector("#new-conv-btn", state="hidden")
    app_server.provider.outputs = ["A short answer that fits on a phone screen."]
    send(page, "Hello from a phone")
    last_answer_done(page)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375

    light_bg = page.evaluate("getComputedStyle(document.body).backgroundColor")
    page.click("#theme-toggle")
    assert page.get_attribute("html", "data-theme") == "dark"
    dark_bg = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert dark_bg != light_bg
    screenshot(page, "mobile-dark")
    page.reload()
    page.wait_for_selector("#app-view:not([hidden])")
    assert page.get_attribute("html", "data-theme") == "dark"


def test_page_is_served_with_a_strict_csp_and_runs_under_it(app_server: AppServer, new_page: Any) -> None:
    r = httpx.get(app_server.base_url + "/")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    html = r.text
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "inline script in index.html"
    assert not re.search(r"\son[a-z]+\s*=", html), "inline event handler in index.html"
    page = new_page()
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    login(page, app_server.base_url)
    assert violations == []


@pytest.mark.model
def test_real_model_answer_streams_into_the_page(live_server: Any, new_page: Any) -> None:
    """The real server with the real embedded model: a question gets a streamed, non-empty answer."""
    page = new_page()
    login(page, live_server.base_url)
    page.select_option("#mode-select", "chat")
    send(page, "In one short sentence: what is the capital of France?")
    page.wait_for_function(
        "() => { const b = document.querySelector('.msg-assistant .msg-body'); return b && b.textContent.trim(); }",
        timeout=120_000,
    )
    msg = last_answer_done(page, timeout=180_000)
    assert msg.locator(".msg-error").is_hidden(), msg.locator(".msg-error").inner_text()
    assert len(msg.locator(".msg-body").inner_text().strip()) > 3
    screenshot(page, "chat")
    assert not page.errors and not page.dialogs


def test_split_deployment_page_on_its_own_origin(make_settings: Any, new_page: Any) -> None:
    """run_frontend.py serves the page on one port; the API on another origin is reached through CORS + CSP."""
    import threading

    from run_frontend import make_server
    from tests.browser.conftest import run_app_server

    static = None
    front_port = free_port()
    servers = run_app_server(make_settings, serve_frontend=False, cors_origins=[f"http://127.0.0.1:{front_port}"])
    api = next(servers)
    try:
        static = make_server("127.0.0.1", front_port, api.base_url)
        threading.Thread(target=static.serve_forever, daemon=True).start()
        api.provider.outputs = ["Answer from the API origin."]
        page = new_page()
        login(page, f"http://127.0.0.1:{front_port}")
        send(page, "hello across origins")
        msg = last_answer_done(page)
        assert msg.locator(".msg-body").inner_text().strip() == "Answer from the API origin."
        # X-Conversation-Id is exposed by CORS, so the page knows which conversation it is in
        page.wait_for_selector("#conv-list .item.active")
        assert not page.errors
    finally:
        if static is not None:
            static.shutdown()
            static.server_close()
        next(servers, None)
