"""RAG end to end: upload the pypdf / python-docx fixtures, ask through the OpenAI SDK, get the answer with
page-level sources; another user sees nothing of them (real server, real model, real embeddings)."""

from __future__ import annotations

import httpx
import pytest

from tests.openai_schema import validate
from tests.rag.conftest import DOCS_DIR as DOCS

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def uploaded(live_server) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {live_server.tokens['bob']}"}
    files = [("files", ("crazyones.pdf", (DOCS / "pdf" / "crazyones.pdf").read_bytes(), "application/pdf")),
             ("files", ("test.docx", (DOCS / "docx" / "test.docx").read_bytes(),
                        "application/vnd.openxmlformats-officedocument.wordprocessingml.document"))]
    r = httpx.post(live_server.base_url + "/api/files/upload", files=files, headers=headers, timeout=300)
    assert r.status_code in (200, 201), r.text
    out = {d["filename"]: d["file_id"] for d in r.json()["data"]}
    assert set(out) == {"crazyones.pdf", "test.docx"}
    return out


def test_answer_cites_the_pdf_page(live_server, uploaded):
    client = live_server.openai("bob")
    r = client.chat.completions.create(
        model=live_server.model() + ":chat", temperature=0, max_tokens=60,
        messages=[{"role": "user", "content": "According to my documents, on what date was 'The Crazy Ones' written?"}],
        extra_body={"use_documents": True})
    validate(r.model_dump(exclude_unset=True), "CreateChatCompletionResponse")
    assert "1998" in r.choices[0].message.content
    sources = r.model_extra["sources"]
    top = sources[0]
    assert top["filename"] == "crazyones.pdf" and top["page"] == 1 and top["file_id"] == uploaded["crazyones.pdf"]
    assert "crazy ones" in top["text"].lower()


def test_file_ids_scope_retrieval_to_the_docx(live_server, uploaded):
    client = live_server.openai("bob")
    r = client.chat.completions.create(
        model=live_server.model() + ":chat", temperature=0, max_tokens=40,
        messages=[{"role": "user", "content": "What was here, according to the document?"}],
        extra_body={"file_ids": [uploaded["test.docx"]]})
    assert {s["filename"] for s in r.model_extra["sources"]} == {"test.docx"}
    assert "python-docx" in r.choices[0].message.content.lower()


def test_another_user_gets_nothing(live_server, uploaded):
    alice = {"Authorization": f"Bearer {live_server.tokens['alice']}"}
    assert httpx.get(live_server.base_url + "/api/files/documents", headers=alice).json()["data"] == []
    for file_id in uploaded.values():
        assert httpx.get(f"{live_server.base_url}/api/files/documents/{file_id}", headers=alice).status_code == 404
    found = httpx.post(live_server.base_url + "/api/files/search", json={"query": "crazy ones misfits rebels"}, headers=alice)
    assert found.status_code == 200 and found.json()["data"] == []
    r = live_server.openai("alice").chat.completions.create(
        model=live_server.model() + ":chat", temperature=0, max_tokens=40,
        messages=[{"role": "user", "content": "According to my documents, who are the crazy ones?"}],
        extra_body={"use_documents": True})
    assert not r.model_extra.get("sources")
