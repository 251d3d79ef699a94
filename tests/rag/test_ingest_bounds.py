"""Ingestion is bounded per user: quotas, rate limits, caps inside the parse worker, spooled jobs,
a dedicated executor, and a parse worker that holds no secrets.

Every refusal is a 4xx in OpenAI's error shape with a message that says what to do.
"""

from __future__ import annotations

import asyncio
import io
import time
import zipfile
import zlib
from pathlib import Path

import pytest

from backend.errors import PayloadTooLargeError, UnprocessableError
from backend.rag import parse_worker
from backend.rag.chunking import chunk_document
from backend.rag.jobs import IngestJobs
from backend.rag.loaders import PageText, ParsedDocument, ParseLimits, parse_document
from backend.rag.parse_worker import ParsePool
from backend.rag.service import RagService
from tests.rag.conftest import as_user, make_rag_settings

ALICE, BOB = as_user("alice"), as_user("bob")


def _upload(client, name: str, data: bytes, headers=ALICE, **params):
    return client.post("/api/files/upload", files=[("files", (name, data, "text/plain"))], headers=headers, params=params)


def _assert_error(r, status: int, code: str, *words: str) -> dict:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code
    for word in words:
        assert word in error["message"], error["message"]
    return error


def _shared_stream_pdf(pages: int, text_chars: int) -> bytes:
    """A small PDF whose ``pages`` pages all draw one compressed content stream of ``text_chars`` letters."""
    line = "(" + "A" * 100 + ") Tj T* "
    body = ("BT /F1 10 Tf 12 TL 20 800 Td " + line * (text_chars // 100) + "ET").encode()
    stream = zlib.compress(body, 9)
    kids = " ".join(f"{5 + i} 0 R" for i in range(pages))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>".encode(),
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Font << /F1 << /Type /Font /Subtype /Type1 /BaseFont /Helvetica >> >> >>",
    ]
    objects += [b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 3 0 R /Resources 4 0 R >>"] * pages
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, obj in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + obj + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


# --- quotas --------------------------------------------------------------------------------------------


def test_document_quota_is_per_user(files_client) -> None:
    client = files_client(rag_max_documents_per_user=2)
    assert _upload(client, "a.txt", b"first document about apples").status_code == 200
    assert _upload(client, "b.txt", b"second document about pears").status_code == 200
    _assert_error(_upload(client, "c.txt", b"third document"), 403, "document_quota_exceeded", "2 documents", "Delete")
    assert client.get("/api/files/documents", headers=ALICE).json()["total"] == 2
    assert _upload(client, "c.txt", b"bob's own document", headers=BOB).status_code == 200


def test_storage_quota_counts_bytes(files_client) -> None:
    client = files_client(rag_max_bytes_per_user=1000)
    assert _upload(client, "a.txt", b"x " * 300).status_code == 200
    _assert_error(_upload(client, "b.txt", b"y " * 300), 403, "storage_quota_exceeded", "1000 bytes")
    assert _upload(client, "small.txt", b"tiny note").status_code == 200


def test_async_jobs_are_capped_per_user(files_client, monkeypatch) -> None:
    client = files_client(rag_max_jobs_per_user=1)
    real = ParsePool.parse_chunks

    def slow(self, *args, **kwargs):
        time.sleep(1.5)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(ParsePool, "parse_chunks", slow)
    first = _upload(client, "a.txt", b"slow document", **{"async": "true"})
    assert first.status_code == 202
    second = _upload(client, "b.txt", b"another one", **{"async": "true"})
    _assert_error(second, 429, "too_many_jobs", "1 ingestion jobs")
    assert second.headers["retry-after"]
    assert _upload(client, "c.txt", b"bob is not blocked", headers=BOB, **{"async": "true"}).status_code == 202


# --- rate limits ----------------------------------------------------------------------------------------


def test_upload_and_search_have_rate_limits(files_client) -> None:
    client = files_client(rag_upload_rpm=2, rag_search_rpm=3)
    for n in range(2):
        assert _upload(client, f"{n}.txt", b"rate limited uploads").status_code == 200
    r = _upload(client, "2.txt", b"one too many")
    _assert_error(r, 429, "rate_limit_exceeded", "2 requests per minute")
    assert int(r.headers["retry-after"]) >= 1
    for _ in range(3):
        assert client.post("/api/files/search", json={"query": "uploads"}, headers=ALICE).status_code == 200
    _assert_error(client.post("/api/files/search", json={"query": "uploads"}, headers=ALICE), 429, "rate_limit_exceeded")
    assert client.post("/api/files/search", json={"query": "uploads"}, headers=BOB).status_code == 200


# --- caps inside the parse worker ------------------------------------------------------------------------


def test_pdf_pages_reusing_one_big_stream_are_capped_in_the_worker(files_client) -> None:
    pdf = _shared_stream_pdf(pages=400, text_chars=20_000)  # 8 M characters of text from ~55 KB
    assert len(pdf) < 100_000
    client = files_client(rag_max_chars_per_document=1_000_000)
    start = time.monotonic()
    r = client.post("/api/files/upload", files=[("files", ("bomb.pdf", pdf, "application/pdf"))], headers=ALICE)
    _assert_error(r, 413, "too_much_text", "1000000 characters")
    assert time.monotonic() - start < 30
    assert client.get("/api/files/documents", headers=ALICE).json()["total"] == 0


def test_shared_stream_pdf_within_the_cap_is_extracted_once_per_stream() -> None:
    pdf = _shared_stream_pdf(pages=50, text_chars=2_000)
    doc = parse_document(pdf, "ok.pdf", "pdf", ParseLimits(max_chars=1_000_000))
    assert doc.page_count == 50
    assert all(p.text == doc.pages[0].text for p in doc.pages) and "AAAA" in doc.pages[0].text


def test_25_mb_without_whitespace_is_refused_quickly(files_client) -> None:
    client = files_client()
    data = b"x" * (25 * 1024 * 1024 - 100 * 1024)
    start = time.monotonic()
    r = _upload(client, "blob.txt", data)
    _assert_error(r, 413, "too_much_text", "characters")
    assert time.monotonic() - start < 60


def test_chunk_count_is_capped_in_the_worker() -> None:
    pool = ParsePool(size=1)
    try:
        with pytest.raises(PayloadTooLargeError) as info:
            pool.parse_chunks(b"word " * 200_000, "many.txt", "txt", ParseLimits(max_chunks=100), 60, 1000, 200)
        assert info.value.code == "too_many_chunks" and "100 chunks" in info.value.message
    finally:
        pool.close()


def test_whitespace_free_text_is_chunked_in_windows_not_characters() -> None:
    text = "intro words here " + "z" * 300_000 + " outro"
    chunks = chunk_document(ParsedDocument("txt", [PageText(None, text)]), "file_x", 1000, 200)
    assert 300 <= len(chunks) <= 400
    assert all(text[c.start : c.end] == c.text and len(c.text) <= 1000 for c in chunks)
    assert chunks[-1].text.endswith("outro")


# --- jobs: spooled to disk, evicted when finished -------------------------------------------------------------


def test_async_upload_is_spooled_to_disk_and_the_spool_removed(files_client, monkeypatch) -> None:
    client = files_client()
    seen: list[object] = []
    real = RagService._prepare

    def spy(self, item):
        seen.append(item.data)
        return real(self, item)

    monkeypatch.setattr(RagService, "_prepare", spy)
    r = _upload(client, "moon.txt", b"the moon is made of rock", **{"async": "true"})
    assert r.status_code == 202
    job_id = r.json()["id"]
    deadline = time.monotonic() + 60
    while client.get(f"/api/files/jobs/{job_id}", headers=ALICE).json()["status"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert seen and all(isinstance(d, Path) for d in seen)  # the job held a path, not the bytes
    spool_root = client.app.state.services.settings.jobs_path / "rag"
    assert not [p for p in spool_root.rglob("*.upload")]


def test_finished_jobs_are_evicted_from_memory_but_stay_readable(tmp_path) -> None:
    jobs = IngestJobs(tmp_path / "jobs", max_active_per_user=0, keep_finished=2)

    async def quick(progress):
        return {"ok": True}

    async def scenario():
        ids = [jobs.start("user_a", ["f.txt"], quick)["id"] for _ in range(6)]
        await jobs.drain()
        return ids

    ids = asyncio.run(scenario())
    assert jobs.in_memory() == 2
    for job_id in ids:
        assert jobs.get("user_a", job_id)["status"] == "succeeded"


# --- a dedicated executor --------------------------------------------------------------------------------------


def test_a_burst_of_uploads_does_not_starve_the_default_executor(tmp_path, monkeypatch) -> None:
    settings = make_rag_settings(tmp_path, rag_ingest_workers=2)
    rag = RagService(settings, None)

    def slow(self, *args, **kwargs):
        time.sleep(1.5)
        raise UnprocessableError("slow parse (test)")

    monkeypatch.setattr(ParsePool, "parse_chunks", slow)

    async def scenario() -> float:
        uploads = [asyncio.create_task(rag.ingest_many(f"user_{i}", [_item()])) for i in range(12)]
        await asyncio.sleep(0.2)
        start = time.monotonic()
        await asyncio.to_thread(lambda: None)  # what a login's bcrypt check or a search waits for
        waited = time.monotonic() - start
        await asyncio.gather(*uploads)
        return waited

    try:
        waited = asyncio.run(scenario())
    finally:
        asyncio.run(rag.aclose())
    assert waited < 0.5, f"a default-executor job waited {waited:.2f}s behind uploads"


def _item():
    from backend.rag.service import IngestItem

    return IngestItem("a.txt", b"some text to parse", "text/plain")


# --- the parse worker's environment and the DOCX DTD check ----------------------------------------------------


def test_parse_worker_starts_without_secrets(monkeypatch) -> None:
    for name in ("JWT_SECRET", "OPENAI_API_KEY", "TAVILY_API_KEY", "SOME_OTHER_TOKEN"):
        monkeypatch.setenv(name, f"secret-value-{name}")
    pool = ParsePool(size=1)
    try:
        assert pool.parse(b"hello", "a.txt", "txt", ParseLimits(), 30).pages[0].text == "hello"
        (pid,) = pool.worker_pids()
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    finally:
        pool.close()
    assert b"secret-value" not in environ
    assert b"JWT_SECRET" not in environ and b"OPENAI_API_KEY" not in environ
    assert parse_worker.worker_env()["PYTHONPATH"]


def _docx_with_late_doctype() -> bytes:
    import docx

    buf = io.BytesIO()
    document = docx.Document()
    document.add_paragraph("hello")
    document.save(buf)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == "word/document.xml":
                body = data.split(b"?>", 1)[1]
                data = (
                    b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<!--' + b"p" * 10_000 + b"-->"
                    + b'<!DOCTYPE w:document [<!ENTITY boom "boom">]>' + body
                )
            dst.writestr(info, data)
    return out.getvalue()


def test_docx_dtd_check_covers_the_whole_part() -> None:
    with pytest.raises(UnprocessableError) as info:
        parse_document(_docx_with_late_doctype(), "late.docx", "docx", ParseLimits())
    assert info.value.code == "forbidden_xml"



def test_ingestion_queue_is_bounded_for_everyone(tmp_path, monkeypatch) -> None:
    from backend.errors import ServiceUnavailableError

    rag = RagService(make_rag_settings(tmp_path, rag_ingest_queue_max=2, rag_ingest_workers=1), None)

    def slow(self, *args, **kwargs):
        time.sleep(1.0)
        raise UnprocessableError("slow parse (test)")

    monkeypatch.setattr(ParsePool, "parse_chunks", slow)

    async def scenario():
        first = [asyncio.create_task(rag.ingest_many(f"user_{i}", [_item()])) for i in range(2)]
        await asyncio.sleep(0.1)
        with pytest.raises(ServiceUnavailableError) as info:
            await rag.ingest_many("user_x", [_item()])
        await asyncio.gather(*first)
        after = await rag.ingest_many("user_x", [_item()])  # room again once they finished
        return info.value, after

    try:
        error, after = asyncio.run(scenario())
    finally:
        asyncio.run(rag.aclose())
    assert error.status_code == 503 and error.headers["Retry-After"] and error.code == "ingest_busy"
    assert isinstance(after[0], UnprocessableError)


def test_job_records_on_disk_are_pruned(tmp_path, monkeypatch) -> None:
    from backend.rag import jobs as jobs_module

    monkeypatch.setattr(jobs_module, "KEEP_ON_DISK", 3)
    jobs = IngestJobs(tmp_path / "jobs", keep_finished=1)

    async def quick(progress):
        return {"ok": True}

    async def scenario():
        for _ in range(6):
            jobs.start("user_a", ["f.txt"], quick)
            await jobs.drain()

    asyncio.run(scenario())
    assert len(list(jobs.root.rglob("job_*.json"))) == 3
