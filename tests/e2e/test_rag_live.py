"""RAG end to end: upload the pypdf / python-docx fixtures, ask through the OpenAI SDK, get the answer with
page-level sources; another user sees nothing of them (real server, real model, real embeddings).

Asserted: what retrieval put in front of the model (``sources``: the right file, page and passage, found by
the real embedder and BM25, which are deterministic), that every ``annotations`` entry points at a listed
source and at a ``[n]`` marker in the answer, and isolation. Not asserted: the 0.5B model's wording."""

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
    sources = r.model_extra["sources"]
    top = sources[0]
    assert top["filename"] == "crazyones.pdf" and top["page"] == 1 and top["file_id"] == uploaded["crazyones.pdf"]
    assert "October 14, 1998" in top["text"]  # the passage with the answer is what the model was given
    content = r.choices[0].message.content
    by_index = {s["index"]: s for s in sources}
    for note in r.choices[0].message.annotations or []:
        cite = note.url_citation
        marker = content[cite.start_index:cite.end_index]
        assert marker.startswith("[") and marker.endswith("]") and int(marker[1:-1]) in by_index
        source = by_index[int(marker[1:-1])]
        assert cite.url.startswith(f"{live_server.base_url}/api/files/documents/{source['file_id']}")


def test_file_ids_scope_retrieval_to_the_docx(live_server, uploaded):
    client = live_server.openai("bob")
    r = client.chat.completions.create(
        model=live_server.model() + ":chat", temperature=0, max_tokens=40,
        messages=[{"role": "user", "content": "What was here, according to the document?"}],
        extra_body={"file_ids": [uploaded["test.docx"]]})
    sources = r.model_extra["sources"]
    assert {s["filename"] for s in sources} == {"test.docx"}
    assert any("python-docx was here" in s["text"] for s in sources)


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
