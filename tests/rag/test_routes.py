"""/api/files routes on a small app with the real router, real RagService and real error handlers."""

from __future__ import annotations

import time

from tests.rag.conftest import DOCX_DIR, PDF_DIR, as_user

CANARY = b"Launch code for the moon base: tangerine-walrus-88."
ALICE, BOB = as_user("alice"), as_user("bob")


def _upload(client, files, user=ALICE, **params):
    return client.post("/api/files/upload", files=files, headers=user, params=params)


def test_upload_list_get_download_search_delete(files_client) -> None:
    client = files_client()
    r = _upload(client, [
        ("files", ("moon.txt", CANARY, "text/plain")),
        ("files", ("crazyones.pdf", (PDF_DIR / "crazyones.pdf").read_bytes(), "application/pdf")),
        ("files", ("tables.docx", (DOCX_DIR / "blk-paras-and-tables.docx").read_bytes(), "application/octet-stream")),
    ])
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert [d["status"] for d in data] == ["processed"] * 3
    moon = data[0]
    assert set(moon) >= {"file_id", "doc_id", "filename", "size", "chunks", "pages", "status"}
    assert data[1]["pages"] == 1 and moon["size"] == len(CANARY)

    page = client.get("/api/files/documents", params={"limit": 2}, headers=ALICE).json()
    assert page["total"] == 3 and len(page["data"]) == 2 and page["has_more"] is True
    rest = client.get("/api/files/documents", params={"limit": 2, "offset": 2}, headers=ALICE).json()
    assert len(rest["data"]) == 1 and rest["has_more"] is False
    assert "stored_name" not in page["data"][0]

    meta = client.get(f"/api/files/documents/{moon['file_id']}", headers=ALICE).json()
    assert meta["filename"] == "moon.txt" and meta["chunks"] == 1

    dl = client.get(f"/api/files/documents/{moon['file_id']}/content", headers=ALICE)
    assert dl.status_code == 200 and dl.content == CANARY
    assert dl.headers["content-disposition"].startswith("attachment")
    assert dl.headers["x-content-type-options"] == "nosniff"

    hits = client.post("/api/files/search", json={"query": "moon base launch code", "top_k": 2}, headers=ALICE).json()
    assert hits["data"][0]["file_id"] == moon["file_id"] and "tangerine-walrus-88" in hits["data"][0]["text"]

    gone = client.delete(f"/api/files/documents/{moon['file_id']}", headers=ALICE)
    assert gone.status_code == 200 and gone.json()["deleted"] is True
    assert client.get(f"/api/files/documents/{moon['file_id']}", headers=ALICE).status_code == 404
    after = client.post("/api/files/search", json={"query": "tangerine-walrus-88 moon base", "top_k": 5}, headers=ALICE)
    assert all("tangerine" not in h["text"] for h in after.json()["data"])


def test_other_users_never_see_a_document(files_client) -> None:
    client = files_client()
    moon = _upload(client, [("files", ("moon.txt", CANARY, "text/plain"))]).json()["data"][0]
    fid = moon["file_id"]
    assert client.get("/api/files/documents", headers=BOB).json() == {
        "object": "list", "data": [], "total": 0, "has_more": False
    }
    for method, path in [("GET", f"/api/files/documents/{fid}"), ("GET", f"/api/files/documents/{fid}/content"),
                         ("DELETE", f"/api/files/documents/{fid}")]:
        r = client.request(method, path, headers=BOB)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    found = client.post("/api/files/search", json={"query": "tangerine-walrus-88 moon base launch code"}, headers=BOB)
    assert found.status_code == 200 and found.json()["data"] == []
    scoped = client.post("/api/files/search", json={"query": "moon", "file_ids": [fid]}, headers=BOB)
    assert scoped.json()["data"] == []
    assert client.get(f"/api/files/documents/{fid}", headers=ALICE).status_code == 200  # untouched


def test_bad_ids_are_404_before_any_filesystem_call(files_client) -> None:
    client = files_client()
    for bad in ("..%2F..%2Fetc%2Fpasswd", "file_../../x", "file_short", "notanid"):
        r = client.get(f"/api/files/documents/{bad}", headers=ALICE)
        assert r.status_code == 404, bad
    assert client.get("/api/files/jobs/job_nope", headers=ALICE).status_code == 404
    assert client.get("/api/files/documents", headers={}).status_code == 401


def test_refused_files_give_clean_4xx(files_client) -> None:
    client = files_client()
    r = _upload(client, [("files", ("enc.pdf", (PDF_DIR / "encrypted-file.pdf").read_bytes(), "application/pdf"))])
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["code"] == "encrypted_file" and "encrypted" in err["message"] and err["type"] == "invalid_request_error"
    mixed = _upload(client, [("files", ("ok.txt", CANARY, "text/plain")),
                             ("files", ("x.exe", b"MZ\x90\x00", "application/x-msdownload"))])
    assert mixed.status_code == 200
    assert [d["status"] for d in mixed.json()["data"]] == ["processed", "failed"]
    assert mixed.json()["data"][1]["error"]["code"] == "unsupported_file_type"
    assert _upload(client, {"other": ("a.txt", b"x", "text/plain")}).status_code == 400
    assert client.post("/api/files/search", json={"query": ""}, headers=ALICE).status_code == 400
    assert client.post("/api/files/search", json={"query": "x", "top_k": 1000}, headers=ALICE).status_code == 400


def test_upload_size_limit_413(files_client) -> None:
    client = files_client(max_upload_bytes=10_000)
    big = b"a" * 200_000
    # Content-Length announces too much: refused before the body is read
    r = _upload(client, [("files", ("big.txt", big, "text/plain"))])
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"

    # chunked transfer (no Content-Length): refused while streaming
    boundary = "xyzBOUNDARY"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.txt\"\r\n"
            "Content-Type: text/plain\r\n\r\n").encode()
    sent = []

    def body():
        yield head
        for _ in range(50):
            sent.append(1)
            yield b"b" * 4096
        yield f"\r\n--{boundary}--\r\n".encode()

    r = client.post("/api/files/upload", content=body(), headers={
        **ALICE, "content-type": f"multipart/form-data; boundary={boundary}"})
    assert r.status_code == 413
    assert client.get("/api/files/documents", headers=ALICE).json()["total"] == 0
    assert not list((client.app.state.services.settings.uploads_path).rglob("*big*"))

    ok = _upload(client, [("files", ("small.txt", b"small but fine", "text/plain"))])
    assert ok.status_code == 200


def test_async_upload_job_progress(files_client) -> None:
    client = files_client()
    r = _upload(client, [("files", ("moon.txt", CANARY, "text/plain"))], **{"async": "true"})
    assert r.status_code == 202
    job = r.json()
    assert job["id"].startswith("job_") and job["status"] in ("queued", "running")
    assert r.headers["location"] == f"/api/files/jobs/{job['id']}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = client.get(f"/api/files/jobs/{job['id']}", headers=ALICE).json()
        if state["status"] in ("succeeded", "failed"):
            break
        assert 0.0 <= state["progress"] <= 1.0
        time.sleep(0.1)
    assert state["status"] == "succeeded" and state["progress"] == 1.0
    assert state["result"]["data"][0]["filename"] == "moon.txt"
    assert client.get(f"/api/files/jobs/{job['id']}", headers=BOB).status_code == 404
