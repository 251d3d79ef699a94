"""A whole session in a real Chromium against the real server with the real embedded model.

log in → create an API key and use it from the ``openai`` SDK → ask a computation in auto mode and
watch its steps stream (the code agent's program and the sandbox's output) → upload a PDF and get an
answer with its sources → rename, search and export the conversation → stay signed in across token
expiries (the server's tokens last one minute here) → log out.

Asserted: what the design guarantees (the SDK call with the page-made key succeeds, steps arrive
before the answer ends, the program's exact output is in the answer, retrieval puts the PDF's page
in front of the model and the page lists it, the token is refreshed and the old one revoked), never
the 0.5B model's wording. Screenshots (README) are taken here with UPDATE_SCREENSHOTS=1."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.browser.conftest import axe_violations, login, screenshot
from tests.browser.test_chat_page import last_answer_done, send, token_of
from tests.conftest import LiveServer, start_server, stop_server
from tests.rag.conftest import DOCS_DIR

pytestmark = pytest.mark.model
TOKEN_MINUTES = 1


@pytest.fixture(scope="module")
def short_token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    # generous model timeouts: this test shares a loaded 2-core machine (the guarantees do not depend on speed)
    server = start_server(tmp_path_factory.mktemp("session") / "data", JWT_EXPIRY_MINUTES=str(TOKEN_MINUTES),
                          FIRST_BYTE_TIMEOUT_S="900", STREAM_IDLE_TIMEOUT_S="900", SANDBOX_TIMEOUT_S="60")
    yield server
    stop_server(server)


@pytest.mark.timeout(2700)  # a whole session of real 0.5B answers on a loaded 2-core machine
def test_whole_session_with_the_real_model(short_token_server: LiveServer, new_page: Any) -> None:
    server = short_token_server
    page = new_page(accept_downloads=True)
    refreshes: list[int] = []
    page.on("response", lambda r: refreshes.append(r.status) if r.url.endswith("/api/auth/refresh") else None)
    signed_in_at = time.monotonic()
    login(page, server.base_url)
    first_token = token_of(page)

    # --- an API key made on the Account page works from the official SDK
    page.click("#nav-account")
    page.fill("#key-name", "sdk test")
    page.click("#key-create")
    page.wait_for_selector("#new-key-box:not([hidden])")
    key = page.inner_text("#new-key-value").strip()
    screenshot(page, "account")
    client = openai.OpenAI(base_url=server.v1, api_key=key, max_retries=0, timeout=300)
    model = client.models.list().data[0].id
    reply = client.chat.completions.create(model=model.split(":")[0] + ":chat", max_tokens=12, temperature=0,
                                           messages=[{"role": "user", "content": "Say hello."}])
    assert reply.choices[0].message.content and reply.usage.completion_tokens > 0

    # --- auto mode, a computation: the code agent's steps stream in before the answer ends
    page.click("#nav-chat")
    page.select_option("#mode-select", "auto")
    page.evaluate("""() => new MutationObserver(() => {
        if (document.querySelector('.msg-assistant.streaming .step')) window.__stepWhileStreaming = true;
    }).observe(document.getElementById('messages'), {subtree: true, childList: true})""")
    send(page, "What is 1234 * 5678?")
    msg = last_answer_done(page, timeout=1_200_000)
    assert page.evaluate("window.__stepWhileStreaming === true"), "no step arrived before the answer ended"
    assert msg.locator(".msg-error").is_hidden(), msg.locator(".msg-error").inner_text()
    # the router sends a computation to the code agent (keyword heuristics: deterministic)
    assert msg.locator(".msg-agent").inner_text() == "Code"
    msg.locator(".msg-steps summary").click()
    steps = msg.locator(".step")
    ran = [steps.nth(i) for i in range(steps.count())
           if steps.nth(i).locator(".step-tool").all_inner_texts() == ["python_code"]
           and "step-failed" not in (steps.nth(i).get_attribute("class") or "")]
    if ran:  # a program ran: the page shows it and its output, and that exact output is the answer
        assert ran[-1].locator(".step-input").inner_text().strip()
        output = ran[-1].locator(".step-observation").inner_text().strip()
        assert output and output in msg.locator(".msg-body").inner_text()
    else:  # the 0.5B model wrote no runnable program: each try is still shown as a step
        assert steps.count() >= 1
    print("code steps:", steps.count(), "ran:", len(ran))
    assert "completion tokens" in msg.locator(".msg-usage").inner_text()
    screenshot(page, "agent-steps")
    title_before = page.inner_text("#chat-title")

    # --- upload a PDF, ask about it: the answer lists the PDF's page as its source
    page.set_input_files("#upload-input", str(DOCS_DIR / "pdf" / "crazyones.pdf"))
    page.click("#upload-btn")
    page.wait_for_function("() => document.querySelector('#upload-status-text').textContent.startsWith('Uploaded 1 file')",
                           timeout=300_000)
    page.check("#use-docs")
    page.select_option("#mode-select", "chat")
    send(page, "According to my documents, on what date was 'The Crazy Ones' written?")
    answer = last_answer_done(page, timeout=1_200_000)
    assert answer.locator(".msg-error").is_hidden(), answer.locator(".msg-error").inner_text()
    head = answer.locator(".source-head").first
    head.wait_for()
    assert "crazyones.pdf" in head.inner_text()
    assert "page 1" in answer.locator(".source-meta").first.inner_text()
    answer.locator(".source-text summary").first.click()
    assert "October 14, 1998" in answer.locator(".source-text p").first.inner_text()
    page.locator("#doc-list .cited-in button").first.wait_for(timeout=30_000)  # the document knows who cited it
    screenshot(page, "documents")

    # --- rename, search and export the conversation
    page.click("#rename-btn")
    page.fill("#rename-input", "Session test: numbers and documents")
    page.press("#rename-input", "Enter")
    page.wait_for_function("() => document.querySelector('#chat-title').textContent.startsWith('Session test')")
    assert page.inner_text("#chat-title") != title_before
    page.fill("#conv-search", "crazy ones")  # only in a message, not in the title: found, with a snippet
    page.wait_for_function("() => [...document.querySelectorAll('#conv-list .item')].some(i =>"
                           " i.querySelector('.item-title').textContent.startsWith('Session test') &&"
                           " (i.querySelector('.item-snippet') || {textContent: ''}).textContent.toLowerCase().includes('crazy ones'))")
    assert page.locator("#conv-list .item").count() == 1
    with page.expect_download() as dl:
        page.click("#export-md-btn")
    exported = Path(dl.value.path()).read_text()
    assert exported.startswith("# Session test: numbers and documents")
    assert "What is 1234 * 5678?" in exported and "The Crazy Ones" in exported
    page.fill("#conv-search", "")

    # --- still signed in after the first token's lifetime: refreshed, old token revoked
    wait = TOKEN_MINUTES * 60 + 5 - (time.monotonic() - signed_in_at)
    if wait > 0:
        page.wait_for_timeout(wait * 1000)
    assert 200 in refreshes, refreshes
    assert token_of(page) != first_token
    me = httpx.get(server.base_url + "/api/auth/me", headers={"Authorization": "Bearer " + first_token})
    assert me.status_code == 401
    page.click("#nav-account")
    page.wait_for_selector("#key-rows tr")  # an API call with the refreshed token
    assert page.locator("#login-view").is_hidden()
    assert axe_violations(page) == []
    page.click("#nav-admin")
    page.wait_for_selector("#user-rows tr[data-username=alice]")
    screenshot(page, "admin")
    assert axe_violations(page) == []
    page.click("#nav-chat")
    page.locator("#conv-list .item-main").first.click()
    page.wait_for_selector(".msg-assistant")
    screenshot(page, "chat")
    assert axe_violations(page) == []

    # --- log out: the token is forgotten and revoked
    last = token_of(page)
    with page.expect_response("**/api/auth/logout") as resp:
        page.click("#logout-btn")
    assert resp.value.status == 204
    assert page.locator("#login-view").is_visible()
    screenshot(page, "login")
    assert httpx.get(server.base_url + "/api/auth/me", headers={"Authorization": "Bearer " + last}).status_code == 401
    assert not page.errors and not page.dialogs, (page.errors, page.dialogs)
    print(json.dumps({"refreshes": refreshes, "seconds": round(time.monotonic() - signed_in_at)}))
