"""The page's everyday features in a real Chromium against the real app (scripted model): account and
keys, conversations (rename, search, export, pagination), answers (regenerate, edit, copy, highlight,
usage), per-conversation settings, staying signed in, admin, documents (drop, progress, cited_in),
keyboard use and an axe-core scan of each view."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import openai

from tests.browser.conftest import AppServer, axe_violations, login, screenshot
from tests.browser.test_chat_page import last_answer_done, send, token_of
from tests.conftest import PASSWORD

CLIPBOARD = {"permissions": ["clipboard-read", "clipboard-write"]}
CODE_ANSWER = "Here you go:\n\n```python\ndef add(a, b):\n    return a + b  # sum\n```\n\nThat is all."


def api(server: AppServer, page: Any) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, headers={"Authorization": "Bearer " + token_of(page)})


def stored(server: AppServer, page: Any, conv_id: str) -> dict[str, Any]:
    with api(server, page) as c:
        r = c.get(f"/api/conversations/{conv_id}")
        assert r.status_code == 200, r.text
        return r.json()


def active_id(server: AppServer, page: Any) -> str:
    """The id of the conversation the page has open (the newest one: the page just wrote to it)."""
    page.wait_for_selector("#conv-list .item.active")
    with api(server, page) as c:
        return c.get("/api/conversations?limit=1").json()["data"][0]["id"]


def assert_accessible(page: Any, view: str) -> None:
    bad = axe_violations(page)
    assert bad == [], (view, json.dumps(bad, indent=1))


def test_account_view_creates_a_key_the_openai_sdk_can_use_then_revokes_it(app_server: AppServer, new_page: Any) -> None:
    page = new_page(**CLIPBOARD)
    login(page, app_server.base_url)
    page.click("#nav-account")
    page.wait_for_selector("#account-view:not([hidden])")
    assert page.locator("#app-view").is_hidden()
    assert page.get_attribute("#nav-account", "aria-current") == "page"
    page.fill("#key-name", "laptop")
    page.click("#key-create")
    page.wait_for_selector("#new-key-box:not([hidden])")
    secret = page.inner_text("#new-key-value").strip()
    assert secret
    page.click("#new-key-box .copy-btn")
    page.wait_for_function("() => document.querySelector('#new-key-box .copy-btn').textContent === 'Copied'")
    assert page.evaluate("navigator.clipboard.readText()") == secret
    row = page.locator("#key-rows tr", has_text="laptop")
    row.wait_for()
    assert secret not in page.inner_text("#keys-table")  # the list shows a prefix, never the secret
    screenshot(page, "account-keys")
    assert_accessible(page, "account")

    # the key works from the official SDK
    app_server.provider.outputs = ["Hello from the key."]
    client = openai.OpenAI(base_url=app_server.base_url + "/v1", api_key=secret, max_retries=0)
    reply = client.chat.completions.create(model="scripted-model:chat", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "Hello from the key."

    # revoking needs a second click, then the key stops working
    revoke = row.locator("button")
    revoke.click()
    assert revoke.inner_text() == "Delete?"
    revoke.click()
    page.wait_for_selector("#keys-empty:not([hidden])")
    try:
        client.models.list()
        raise AssertionError("a revoked key still works")
    except openai.AuthenticationError:
        pass
    assert not page.errors and not page.dialogs


def test_account_password_change_and_export(app_server: AppServer, new_page: Any) -> None:
    page = new_page(accept_downloads=True)
    login(page, app_server.base_url, "bob")
    page.click("#nav-account")
    page.fill("#pw-current", "wrong one")
    page.fill("#pw-new", "a brand new passphrase")
    page.fill("#pw-repeat", "a brand new passphrase")
    page.click("#pw-form button[type=submit]")
    page.wait_for_selector("#pw-status:not([hidden])")
    assert "Password changed" not in page.inner_text("#pw-status")
    page.fill("#pw-current", PASSWORD)
    page.fill("#pw-new", "a brand new passphrase")
    page.fill("#pw-repeat", "a brand new passphrase")
    page.click("#pw-form button[type=submit]")
    page.wait_for_function("() => document.querySelector('#pw-status').textContent === 'Password changed.'")
    # the page carries on with the token the change returned
    page.click("#nav-account")
    page.wait_for_selector("#keys-empty:not([hidden])")
    assert page.locator("#login-view").is_hidden()
    r = httpx.post(app_server.base_url + "/api/auth/login", json={"username": "bob", "password": "a brand new passphrase"})
    assert r.status_code == 200
    with page.expect_download() as dl:
        page.click("#export-account-btn")
    assert dl.value.suggested_filename.endswith(".zip")
    assert Path(dl.value.path()).read_bytes()[:2] == b"PK"
    assert not page.errors


def test_conversations_rename_search_export_and_paginate(app_server: AppServer, new_page: Any) -> None:
    page = new_page(accept_downloads=True)
    login(page, app_server.base_url)
    app_server.provider.outputs = ["Tides come twice a day.", "Bread needs flour."]
    send(page, "Tell me about the lighthouse tides")
    last_answer_done(page)
    page.click("#new-conv-btn")
    send(page, "How do I bake sourdough bread?")
    last_answer_done(page)
    page.wait_for_selector("#conv-list .item >> nth=1")

    # rename from the heading: Enter saves, the list and heading follow
    page.click("#rename-btn")
    page.fill("#rename-input", "Baking notes")
    page.press("#rename-input", "Enter")
    page.wait_for_function("() => document.querySelector('#chat-title').textContent === 'Baking notes'")
    page.wait_for_selector("#conv-list .item.active >> text=Baking notes")

    # search covers message text too, and shows where it matched
    page.fill("#conv-search", "lighthouse")
    page.wait_for_function("() => document.querySelectorAll('#conv-list .item').length === 1")
    assert "lighthouse" in page.inner_text("#conv-list .item-title").lower()
    page.fill("#conv-search", "twice a day")  # only in an answer
    page.wait_for_function(
        "() => [...document.querySelectorAll('#conv-list .item-snippet')].some(s => s.textContent.includes('twice a day'))")
    assert page.locator("#conv-list .item").count() == 1
    page.fill("#conv-search", "no such words anywhere")
    page.wait_for_selector("#conv-empty:not([hidden])")
    assert page.inner_text("#conv-empty") == "No conversation matches."
    page.fill("#conv-search", "")
    page.wait_for_function("() => document.querySelectorAll('#conv-list .item').length === 2")

    # export the open conversation as Markdown and JSON
    with page.expect_download() as dl:
        page.click("#export-md-btn")
    text = Path(dl.value.path()).read_text()
    assert dl.value.suggested_filename.endswith(".md")
    assert "Baking notes" in text and "How do I bake sourdough bread?" in text and "Bread needs flour." in text
    with page.expect_download() as dl:
        page.click("#export-json-btn")
    exported = json.loads(Path(dl.value.path()).read_text())
    assert exported["title"] == "Baking notes"
    assert [m["content"] for m in exported["messages"]] == ["How do I bake sourdough bread?", "Bread needs flour."]

    # the list paginates (20 a page)
    with api(app_server, page) as c:
        for i in range(21):
            assert c.post("/api/conversations", json={"title": f"filler {i:02d}"}).status_code == 201
    page.reload()
    page.wait_for_selector("#conv-more:not([hidden])")
    assert page.locator("#conv-list .item").count() == 20
    page.click("#conv-more")
    page.wait_for_function("() => document.querySelectorAll('#conv-list .item').length === 23")
    assert page.locator("#conv-more").is_hidden()
    assert not page.errors and not page.dialogs


def test_answers_regenerate_edit_copy_highlight_and_usage(app_server: AppServer, new_page: Any) -> None:
    page = new_page(**CLIPBOARD)
    login(page, app_server.base_url)
    page.select_option("#mode-select", "chat")
    app_server.provider.outputs = [CODE_ANSWER]
    send(page, "Write an add function")
    msg = last_answer_done(page)
    # highlighted code block with its own Copy button
    code = msg.locator(".code-block pre code")
    assert code.locator("span.hljs-keyword").first.inner_text() == "def"
    assert code.locator("span.hljs-comment").inner_text() == "# sum"
    msg.locator(".code-block .copy-btn").click()
    page.wait_for_function("() => document.querySelector('.code-block .copy-btn').textContent === 'Copied'")
    assert page.evaluate("navigator.clipboard.readText()") == "def add(a, b):\n    return a + b  # sum\n"
    # copy the whole answer (its Markdown source)
    msg.locator(".msg-actions .copy-btn").click()
    page.wait_for_function("() => document.querySelector('.msg-assistant .msg-actions .copy-btn').textContent === 'Copied'")
    assert page.evaluate("navigator.clipboard.readText()") == CODE_ANSWER
    usage = msg.locator(".msg-usage").inner_text()
    assert "completion tokens" in usage and " s" in usage
    screenshot(page, "code-answer")
    conv_id = active_id(app_server, page)

    # regenerate: the last answer is replaced, on screen and in storage
    app_server.provider.outputs = ["A second, different answer."]
    msg.locator(".regen-btn").click()
    page.wait_for_function("() => document.querySelector('.msg-assistant .msg-body').textContent.includes('second')")
    last_answer_done(page)
    assert page.locator(".msg-assistant").count() == 1 and page.locator(".msg-user").count() == 1
    contents = [m["content"] for m in stored(app_server, page, conv_id)["messages"]]
    assert contents == ["Write an add function", "A second, different answer."]

    # edit and resend the last question
    page.locator(".msg-user .edit-btn").click()
    assert page.input_value("#composer-input") == "Write an add function"
    assert page.locator("#edit-note").is_visible()
    page.fill("#composer-input", "Write a subtract function")
    app_server.provider.outputs = ["def sub(a, b): ..."]
    page.press("#composer-input", "Enter")
    # the old exchange is removed (a GET and a DELETE) before the new question is shown: wait for it
    page.wait_for_function(
        "() => [...document.querySelectorAll('.msg-user .msg-body')].map((n) => n.textContent.trim()).join('|')"
        " === 'Write a subtract function'"
    )
    last_answer_done(page)
    assert page.locator(".msg-user").all_inner_texts()[-1].startswith("You")  # role label + text
    assert page.locator(".msg-user .msg-body").all_inner_texts() == ["Write a subtract function"]
    contents = [m["content"] for m in stored(app_server, page, conv_id)["messages"]]
    assert contents == ["Write a subtract function", "def sub(a, b): ..."]
    # the model saw only the edited question (the replaced exchange is gone from the history)
    sent = [m["content"] for m in app_server.provider.calls[-1]["messages"] if m["role"] == "user"]
    assert sent == ["Write a subtract function"]
    assert not page.errors and not page.dialogs


def test_conversation_settings_are_stored_and_sent(app_server: AppServer, new_page: Any) -> None:
    page = new_page()
    login(page, app_server.base_url)
    page.click("#conv-settings summary")
    page.fill("#set-system", "You answer like a pirate.")
    page.fill("#set-temperature", "0.3")
    page.select_option("#mode-select", "chat")
    page.click("#set-save")
    page.wait_for_function("() => document.querySelector('#set-status').textContent.startsWith('Saved')")
    with page.expect_request("**/v1/chat/completions") as req:
        send(page, "Hello there")
    last_answer_done(page)
    body = req.value.post_data_json
    assert body["messages"][0] == {"role": "system", "content": "You answer like a pirate."}
    assert body["temperature"] == 0.3
    assert body["model"] == "scripted-model:chat"
    assert body["conversation_id"] not in (None, "new")  # created when the settings were saved
    conv = stored(app_server, page, body["conversation_id"])
    assert conv["settings"]["system_prompt"] == "You answer like a pirate."
    assert conv["settings"]["temperature"] == 0.3 and conv["settings"]["mode"] == "chat"
    assert conv["title"]  # titled from the first question as usual
    # a fresh page: a new chat has no settings; opening the conversation brings them back
    page.reload()
    page.select_option("#mode-select", "react")
    page.wait_for_selector("#conv-list .item")
    assert page.input_value("#set-system") == ""
    page.click("#conv-list .item-main")
    page.wait_for_selector(".msg-assistant")
    assert page.input_value("#set-system") == "You answer like a pirate."
    assert page.input_value("#set-temperature") == "0.3"
    assert page.input_value("#mode-select") == "chat"
    # a bad temperature is explained, not sent
    if not page.locator("#set-save").is_visible():
        page.click("#conv-settings summary")
    page.fill("#set-temperature", "7")
    page.click("#set-save")  # the browser's own validation refuses it (max=2)
    assert page.evaluate("document.querySelector('#set-temperature').validity.rangeOverflow") is True
    page.wait_for_timeout(300)
    assert stored(app_server, page, body["conversation_id"])["settings"]["temperature"] == 0.3
    assert not page.errors


def test_page_refreshes_its_token_before_expiry(app_server: AppServer, new_page: Any) -> None:
    page = new_page()

    # the server's tokens last an hour: tell the page this one lasts 8 s, so it refreshes after ~3 s
    def short_login(route: Any) -> None:
        resp = route.fetch()
        body = resp.json()
        body["expires_in"] = 8
        route.fulfill(response=resp, body=json.dumps(body))

    page.route("**/api/auth/login", short_login)
    login(page, app_server.base_url)
    first = token_of(page)
    with page.expect_response("**/api/auth/refresh", timeout=10_000) as resp:
        pass
    assert resp.value.status == 200
    page.wait_for_function(f"() => JSON.parse(sessionStorage.getItem('agent_chat_token')).token !== {json.dumps(first)}")
    second = token_of(page)
    # the old token is revoked, the new one works
    assert httpx.get(app_server.base_url + "/api/auth/me", headers={"Authorization": "Bearer " + first}).status_code == 401
    assert httpx.get(app_server.base_url + "/api/auth/me", headers={"Authorization": "Bearer " + second}).status_code == 200
    time.sleep(6)  # past the 8 s the page was told at login
    app_server.provider.outputs = ["Still here."]
    send(page, "are you there?")
    assert last_answer_done(page).locator(".msg-body").inner_text().strip() == "Still here."
    assert page.locator("#login-view").is_hidden()
    assert not page.errors


def test_expired_session_keeps_the_draft(app_server: AppServer, new_page: Any) -> None:
    page = new_page()
    login(page, app_server.base_url)
    httpx.post(app_server.base_url + "/api/auth/logout", headers={"Authorization": "Bearer " + token_of(page)})
    page.fill("#composer-input", "a long question I do not want to type again")
    page.click("#nav-account")  # any API call notices the session is gone
    page.wait_for_selector("#login-view:not([hidden])")
    assert "Your session expired" in page.inner_text("#login-error")
    page.fill("#login-username", "alice")
    page.fill("#login-password", PASSWORD)
    page.press("#login-password", "Enter")
    page.wait_for_selector("#app-view:not([hidden])")
    assert page.input_value("#composer-input") == "a long question I do not want to type again"
    # a question sent with the dead token is kept too
    httpx.post(app_server.base_url + "/api/auth/logout", headers={"Authorization": "Bearer " + token_of(page)})
    send(page, "sent into the void")
    page.wait_for_selector("#login-view:not([hidden])")
    login(page, app_server.base_url)
    assert page.input_value("#composer-input") == "sent into the void"


def test_admin_view_users_usage_disable_and_reset(app_server: AppServer, new_page: Any) -> None:
    bob = new_page()
    login(bob, app_server.base_url, "bob")
    assert bob.locator("#nav-admin").is_hidden()
    page = new_page()
    login(page, app_server.base_url)
    alice = app_server.services.users.by_username("alice")
    app_server.services.usage.record_usage(alice["id"], 120, 34)  # as the chat pipeline records an answer
    page.click("#nav-admin")
    page.wait_for_selector("#admin-view:not([hidden])")
    alice_row = page.locator("#user-rows tr[data-username=alice]")
    alice_row.wait_for()
    cells = alice_row.locator("td").all_inner_texts()
    with api(app_server, page) as c:
        usage = c.get(f"/api/admin/users/{alice['id']}/usage").json()
    assert usage["requests"] >= 1
    assert cells[4:8] == [str(usage["requests"]), f"{usage['prompt_tokens']} / {usage['completion_tokens']}",
                          str(usage["documents"]), "0 B"]
    assert usage["prompt_tokens"] >= 120 and usage["bytes"] == 0
    page.fill("#new-user-name", "carol")
    page.fill("#new-user-password", "carol's first password")
    page.click("#user-form button[type=submit]")
    carol = page.locator("#user-rows tr[data-username=carol]")
    carol.wait_for()
    assert carol.locator(".user-state").inner_text() == "active"
    carol.locator(".toggle-user").click()
    page.wait_for_function("() => document.querySelector('#user-rows tr[data-username=carol] .user-state').textContent === 'disabled'")
    login_carol = {"username": "carol", "password": "carol's first password"}
    assert httpx.post(app_server.base_url + "/api/auth/login", json=login_carol).status_code in (401, 403)
    carol = page.locator("#user-rows tr[data-username=carol]")
    carol.locator(".toggle-user").click()
    page.wait_for_function("() => document.querySelector('#user-rows tr[data-username=carol] .user-state').textContent === 'active'")
    carol = page.locator("#user-rows tr[data-username=carol]")
    carol.locator("input[type=password]").fill("carol's second password")
    carol.locator("input[type=password]").press("Enter")
    page.wait_for_function("() => document.querySelector('#admin-status').textContent.includes('reset')")
    r = httpx.post(app_server.base_url + "/api/auth/login", json={"username": "carol", "password": "carol's second password"})
    assert r.status_code == 200
    screenshot(page, "admin-users")
    assert_accessible(page, "admin")
    assert not page.errors and not page.dialogs


def test_documents_drop_upload_progress_and_cited_in(app_server: AppServer, new_page: Any) -> None:
    page = new_page()
    login(page, app_server.base_url)
    text = ("The harbour master rings the bell at noon. " * 30) + "\n\n" + ("Ferries leave from pier four. " * 30)
    # drop two files on the documents panel, as a file manager would
    page.evaluate(
        """(text) => {
            const dt = new DataTransfer();
            dt.items.add(new File([text], 'harbour.txt', {type: 'text/plain'}));
            dt.items.add(new File(['\\u0000\\u0001 not a document'], 'broken.pdf', {type: 'application/pdf'}));
            const zone = document.getElementById('docs-panel');
            for (const type of ['dragenter', 'dragover', 'drop']) {
                zone.dispatchEvent(new DragEvent(type, {dataTransfer: dt, bubbles: true, cancelable: true}));
            }
        }""",
        text,
    )
    page.wait_for_function("() => document.querySelector('#upload-status-text').textContent.startsWith('Uploaded')",
                           timeout=60_000)
    rows = page.locator("#upload-queue .upload-row")
    assert rows.count() == 2
    ok = page.locator(".upload-row", has_text="harbour.txt")
    assert ok.get_attribute("data-state") == "done" and ok.locator("progress").get_attribute("value") == "100"
    assert "Ready" in ok.locator(".upload-state").inner_text()
    bad = page.locator(".upload-row", has_text="broken.pdf")
    assert bad.get_attribute("data-state") == "failed" and "Failed" in bad.locator(".upload-state").inner_text()
    assert "Uploaded 1 file." in page.inner_text("#upload-status-text")
    item = page.locator("#doc-list .item", has_text="harbour.txt")
    item.wait_for()

    page.check("#use-docs")
    app_server.provider.outputs = ["The bell rings at noon [1]."]
    send(page, "When does the harbour master ring the bell?")
    last_answer_done(page, timeout=60_000).locator(".msg-sources").wait_for()
    cited = item.locator(".cited-in button")
    cited.wait_for()
    title = page.inner_text("#chat-title")
    assert cited.inner_text() == title
    page.click("#new-conv-btn")
    cited.click()
    page.wait_for_function(f"() => document.querySelector('#chat-title').textContent === {json.dumps(title)}")
    assert page.locator(".msg-assistant .msg-sources").is_visible()
    assert not page.errors and not page.dialogs


def test_keyboard_reaches_every_control_and_views_pass_axe(app_server: AppServer, new_page: Any) -> None:
    page = new_page()
    page.goto(app_server.base_url + "/")
    page.wait_for_selector("#login-view:not([hidden])")
    assert_accessible(page, "login")
    login(page, app_server.base_url)
    app_server.provider.outputs = ['{"name": "math_calc", "arguments": {"expression": "6*7"}}', "It is **42**.\n\n```python\nprint(6*7)\n```"]
    page.select_option("#mode-select", "react")
    send(page, "What is 6 times 7? Use a tool.")
    last_answer_done(page).locator(".msg-steps summary").click()
    page.click("#conv-settings summary")
    assert_accessible(page, "chat")

    # Tab walks through the controls; each one shows a visible focus ring
    seen: set[str] = set()
    for _ in range(60):
        page.keyboard.press("Tab")
        info = page.evaluate(
            "() => { const e = document.activeElement; const s = getComputedStyle(e);"
            " return {id: e.id, tag: e.tagName, label: e.getAttribute('aria-label') || e.textContent.trim().slice(0, 30),"
            " outline: s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0,"
            " shadow: s.boxShadow !== 'none', border: s.borderColor}; }"
        )
        if info["tag"] == "BODY":
            continue
        assert info["outline"] or info["shadow"], info
        seen.add(info["id"] or info["label"])
    for control in ("nav-account", "new-conv-btn", "conv-search", "upload-input", "rename-btn", "composer-input"):
        assert control in seen, (control, sorted(seen))
    # Enter on the focused Account button opens that view
    page.focus("#nav-account")
    page.keyboard.press("Enter")
    page.wait_for_selector("#account-view:not([hidden])")
    assert_accessible(page, "account-empty")
    # dark theme views too
    page.click("#theme-toggle")
    page.click("#nav-chat")
    assert_accessible(page, "chat-dark")
    assert not page.errors


def test_retrying_a_failed_answer_keeps_the_stored_exchanges(app_server: AppServer, new_page: Any) -> None:
    page = new_page()
    login(page, app_server.base_url)
    page.select_option("#mode-select", "chat")
    app_server.provider.outputs = ["First answer."]
    send(page, "first question")
    last_answer_done(page)
    conv_id = active_id(app_server, page)
    app_server.provider.fail = RuntimeError("model crashed")
    send(page, "second question")
    last_answer_done(page).locator(".msg-error").wait_for()
    app_server.provider.fail = None
    app_server.provider.outputs = ["Second answer."]
    page.locator(".msg-assistant").last.locator(".regen-btn").click()
    page.wait_for_function("() => [...document.querySelectorAll('.msg-assistant .msg-body')].some(b => b.textContent.includes('Second answer'))")
    last_answer_done(page)
    assert page.locator(".msg-user .msg-body").all_inner_texts() == ["first question", "second question"]
    contents = [m["content"] for m in stored(app_server, page, conv_id)["messages"]]
    assert contents == ["first question", "First answer.", "second question", "Second answer."]
    assert not page.errors


def test_code_mode_shows_the_program_and_its_output_as_it_runs(app_server: AppServer, new_page: Any) -> None:
    page = new_page()
    login(page, app_server.base_url)
    page.select_option("#mode-select", "code")
    app_server.provider.outputs = ["```python\nprint(sum(i * i for i in range(1, 11)))\n```"]
    send(page, "What is the sum of the squares of 1 to 10?")
    msg = last_answer_done(page, timeout=60_000)
    assert msg.locator(".msg-agent").inner_text() == "Code"
    msg.locator(".msg-steps summary").click()
    step = msg.locator(".step").first
    assert step.locator(".step-tool").inner_text() == "python_code"
    program = step.locator(".step-input")
    assert "print(sum(i * i for i in range(1, 11)))" in program.inner_text()
    assert program.locator("span.hljs-built_in").count() >= 1  # the program is highlighted as Python
    assert step.locator(".step-label").all_inner_texts()[-2:] == ["Program:", "Output:"]
    assert step.locator(".step-observation").inner_text().strip() == "385"  # the sandbox really ran it
    assert msg.locator(".msg-body").inner_text().strip() == "385"
    assert not page.errors
