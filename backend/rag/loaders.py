"""Turn uploaded bytes into text, page by page, with defences against hostile files.

``parse_document`` is pure (bytes in, ``ParsedDocument`` out) and raises ``UnprocessableError``
(422) or ``PayloadTooLargeError`` (413) for files we refuse. It is meant to run in the isolated
worker of ``backend.rag.parse_worker`` so a pathological file can be killed on a deadline.
"""

from __future__ import annotations

import csv
import io
import json
import re
import unicodedata
import zipfile
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from backend.errors import APIError, PayloadTooLargeError, UnprocessableError

SUPPORTED_KINDS = ("pdf", "docx", "txt", "md", "json", "csv", "html")

_EXTENSIONS = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".txt": "txt",
    ".text": "txt",
    ".log": "txt",
    ".md": "md",
    ".markdown": "md",
    ".json": "json",
    ".csv": "csv",
    ".html": "html",
    ".htm": "html",
}
_MIME = {
    "application/pdf": "pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "text/plain": "txt",
    "text/markdown": "md",
    "application/json": "json",
    "text/csv": "csv",
    "text/html": "html",
}
_MAX_JSON_DEPTH = 64
_DTD_RE = re.compile(rb"<!(DOCTYPE|ENTITY)", re.IGNORECASE)


@dataclass
class PageText:
    page: int | None  # 1-based for paged formats, None otherwise
    text: str


@dataclass
class ParsedDocument:
    kind: str
    pages: list[PageText] = field(default_factory=list)

    @property
    def page_count(self) -> int | None:
        return len(self.pages) if self.kind == "pdf" else None

    @property
    def char_count(self) -> int:
        return sum(len(p.text) for p in self.pages)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "pages": [{"page": p.page, "text": p.text} for p in self.pages]}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> ParsedDocument:
        return cls(value["kind"], [PageText(p["page"], p["text"]) for p in value["pages"]])


@dataclass(frozen=True)
class ParseLimits:
    max_pdf_pages: int = 2000
    max_docx_uncompressed_bytes: int = 200 * 1024 * 1024
    max_chars: int = 5_000_000  # extracted text of one document
    max_chunks: int = 10_000  # chunks of one document (checked where it is chunked)


def _too_much_text(filename: str, limits: ParseLimits) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"'{filename}' holds more than {limits.max_chars} characters of text; the limit per document is "
        f"{limits.max_chars}. Split it into smaller files.",
        code="too_much_text",
    )


def _shared_key(page: Any) -> tuple[Any, ...] | None:
    """An identity for a page's drawing (content streams + resources), when both are shared objects.

    Pages that reuse the same indirect content stream and resources draw the same text, so it is
    extracted once: a small PDF whose thousand pages all point at one big stream costs one page.
    """
    from pypdf.generic import IndirectObject

    contents = page.raw_get("/Contents") if "/Contents" in page else None
    resources = page.raw_get("/Resources") if "/Resources" in page else None
    refs: list[Any] = []
    for item in (contents, resources):
        if isinstance(item, IndirectObject):
            refs.append((item.idnum, item.generation))
        elif isinstance(item, list) and item and all(isinstance(x, IndirectObject) for x in item):
            refs.append(tuple((x.idnum, x.generation) for x in item))
        else:
            return None
    return tuple(refs)


# --- names and types ------------------------------------------------------------------------------


def safe_filename(name: str | None, default: str = "document") -> str:
    """A display name that is safe to embed in a path component: no directories, no control chars."""
    raw = PurePath(str(name or "").replace("\\", "/")).name
    raw = unicodedata.normalize("NFKC", raw)
    cleaned = re.sub(r"[^\w.\- ()]+", "_", raw, flags=re.UNICODE).strip(" ._")
    cleaned = re.sub(r"_+", "_", cleaned)
    if not cleaned:
        cleaned = default
    if len(cleaned) > 120:
        stem, dot, ext = cleaned.rpartition(".")
        cleaned = (stem[: 120 - len(ext) - 1] + "." + ext) if dot and len(ext) <= 10 else cleaned[:120]
    return cleaned


def detect_kind(filename: str, content_type: str | None, data: bytes) -> str:
    """Pick the parser from the extension, then the MIME type, then magic bytes."""
    ext = PurePath(filename.lower()).suffix
    kind = _EXTENSIONS.get(ext)
    if kind is None and content_type:
        kind = _MIME.get(content_type.split(";")[0].strip().lower())
    if kind is None:
        if data.startswith(b"%PDF-"):
            kind = "pdf"
        elif data.startswith(b"PK\x03\x04"):
            kind = "docx"
    if kind is None:
        raise UnprocessableError(
            f"Unsupported file type for '{filename}'. Supported: PDF, DOCX, TXT, Markdown, JSON, CSV, HTML.",
            param="files",
            code="unsupported_file_type",
        )
    return kind


# --- per-format parsers ----------------------------------------------------------------------------


def _decode_text(data: bytes, filename: str) -> str:
    if b"\x00" in data[:8192] and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise UnprocessableError(f"'{filename}' looks like a binary file, not text.", code="unreadable_file")
    for encoding in ("utf-8-sig", "utf-16") if data.startswith((b"\xff\xfe", b"\xfe\xff")) else ("utf-8-sig",):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None:
        raise UnprocessableError(f"'{filename}' is not readable text (unknown encoding).", code="unreadable_file")
    return str(best)


def _parse_pdf(data: bytes, filename: str, limits: ParseLimits) -> list[PageText]:
    from pypdf import PdfReader
    from pypdf.errors import (
        DependencyError,
        FileNotDecryptedError,
        PdfReadError,
        PyPdfError,
    )

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            try:
                opened = bool(reader.decrypt(""))
            except (DependencyError, NotImplementedError, PdfReadError):
                opened = False
            if not opened:
                raise UnprocessableError(
                    f"'{filename}' is an encrypted (password-protected) PDF; remove the password and upload it again.",
                    code="encrypted_file",
                )
        n_pages = len(reader.pages)
        if n_pages > limits.max_pdf_pages:
            raise PayloadTooLargeError(
                f"'{filename}' has {n_pages} pages; the limit is {limits.max_pdf_pages}.", code="too_many_pages"
            )
        pages = []
        seen: dict[tuple[Any, ...], str] = {}
        total = 0
        for number, page in enumerate(reader.pages, start=1):
            key = _shared_key(page)
            text = seen.get(key) if key is not None else None
            if text is None:
                text = page.extract_text() or ""
                if key is not None:
                    seen[key] = text
            total += len(text)
            if total > limits.max_chars:  # stop extracting as soon as the document is too big
                raise _too_much_text(filename, limits)
            pages.append(PageText(number, text))
        return pages
    except APIError:
        raise
    except (FileNotDecryptedError, DependencyError) as exc:  # DependencyError: AES without `cryptography`
        raise UnprocessableError(
            f"'{filename}' is an encrypted (password-protected) PDF; remove the password and upload it again.",
            code="encrypted_file",
        ) from exc
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError) as exc:
        raise UnprocessableError(f"'{filename}' is not a readable PDF ({type(exc).__name__}).", code="malformed_file") from exc


def _part_has_dtd(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bool:
    """Scan the whole XML part for ``<!DOCTYPE``/``<!ENTITY``, streaming (a comment can push it past any prefix).

    zipfile stops at the declared size, so the read is bounded by the uncompressed-size check.
    """
    tail = b""
    with archive.open(info) as fh:
        while True:
            block = fh.read(1 << 20)
            if not block:
                return False
            if _DTD_RE.search(tail + block):
                return True
            tail = block[-16:]


def _check_docx_zip(data: bytes, filename: str, limits: ParseLimits) -> None:
    """Zip-bomb and DTD checks on the raw archive, before python-docx touches it."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise UnprocessableError(f"'{filename}' is not a valid DOCX (not a zip archive).", code="malformed_file") from exc
    with archive:
        infos = archive.infolist()
        if len(infos) > 10_000:
            raise UnprocessableError(f"'{filename}' has too many parts ({len(infos)}).", code="malformed_file")
        total = sum(info.file_size for info in infos)
        if total > limits.max_docx_uncompressed_bytes:
            raise PayloadTooLargeError(
                f"'{filename}' expands to {total} bytes uncompressed; the limit is "
                f"{limits.max_docx_uncompressed_bytes} bytes.",
                code="decompression_limit",
            )
        for info in infos:
            if info.filename.endswith((".xml", ".rels")) and _part_has_dtd(archive, info):
                raise UnprocessableError(
                    f"'{filename}' contains an XML document type declaration (DTD/entities), which is not allowed.",
                    code="forbidden_xml",
                )


def _docx_table_lines(table: Any) -> list[str]:
    lines = []
    for row in table.rows:
        cells: list[str] = []
        for cell in row.cells:
            text = " ".join(" ".join(_docx_blocks(cell)).split())  # keeps nested tables
            if not cells or cells[-1] != text:  # merged cells repeat
                cells.append(text)
        if any(cells):
            lines.append(" | ".join(cells))
    return lines


def _docx_blocks(container: Any) -> list[str]:
    from docx.table import Table

    lines: list[str] = []
    for block in container.iter_inner_content():
        if isinstance(block, Table):
            lines.extend(_docx_table_lines(block))
        elif block.text.strip():
            lines.append(block.text)
    return lines


def _parse_docx(data: bytes, filename: str, limits: ParseLimits) -> list[PageText]:
    _check_docx_zip(data, filename, limits)
    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        document = docx.Document(io.BytesIO(data))
    except (PackageNotFoundError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise UnprocessableError(f"'{filename}' is not a readable DOCX ({type(exc).__name__}).", code="malformed_file") from exc
    except Exception as exc:  # lxml.etree.XMLSyntaxError and friends
        raise UnprocessableError(f"'{filename}' is not a readable DOCX ({type(exc).__name__}).", code="malformed_file") from exc

    seen: set[str] = set()
    margins: list[str] = []
    for section in document.sections:
        for part in (
            section.header,
            section.first_page_header,
            section.even_page_header,
            section.footer,
            section.first_page_footer,
            section.even_page_footer,
        ):
            if part.is_linked_to_previous:  # no definition of its own (reading it would add one)
                continue
            text = "\n".join(_docx_blocks(part)).strip()
            if text and text not in seen:
                seen.add(text)
                margins.append(text)
    body = "\n".join(_docx_blocks(document))
    text = "\n\n".join([*margins, body]) if margins else body
    return [PageText(None, text)]


def _flatten_json(value: Any, prefix: str, out: list[str], depth: int = 0) -> None:
    if depth > _MAX_JSON_DEPTH:
        raise UnprocessableError("JSON nested too deeply.", code="malformed_file")
    if isinstance(value, dict):
        if not value and prefix:
            out.append(f"{prefix}: {{}}")
        for key, item in value.items():
            _flatten_json(item, f"{prefix}.{key}" if prefix else str(key), out, depth + 1)
    elif isinstance(value, list):
        if not value and prefix:
            out.append(f"{prefix}: []")
        for i, item in enumerate(value):
            _flatten_json(item, f"{prefix}[{i}]", out, depth + 1)
    else:
        rendered = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
        out.append(f"{prefix}: {rendered}" if prefix else rendered)


def _parse_json(data: bytes, filename: str) -> list[PageText]:
    try:
        value = json.loads(_decode_text(data, filename))
    except (json.JSONDecodeError, RecursionError) as exc:
        raise UnprocessableError(f"'{filename}' is not valid JSON: {exc}", code="malformed_file") from exc
    lines: list[str] = []
    _flatten_json(value, "", lines)
    return [PageText(None, "\n".join(lines))]


def _parse_csv(data: bytes, filename: str) -> list[PageText]:
    text = _decode_text(data, filename)
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    try:
        rows = list(csv.reader(io.StringIO(text), dialect))
    except csv.Error as exc:
        raise UnprocessableError(f"'{filename}' is not valid CSV: {exc}", code="malformed_file") from exc
    if not rows:
        return [PageText(None, "")]
    header, body = rows[0], rows[1:]
    lines = []
    for row in body:
        pairs = [f"{h.strip() or f'col{i + 1}'}: {v.strip()}" for i, (h, v) in enumerate(zip(header, row, strict=False)) if v.strip()]
        if pairs:
            lines.append("; ".join(pairs))
    if not body:
        lines.append(", ".join(header))
    return [PageText(None, "\n".join(lines))]


def _parse_html(data: bytes, filename: str) -> list[PageText]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(_decode_text(data, filename), "html.parser")
    for tag in soup(["script", "style", "noscript", "template", "head", "svg", "iframe", "object"]):
        tag.decompose()
    text = soup.get_text("\n")
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return [PageText(None, "\n".join(line for line in lines if line))]


# --- entry point -----------------------------------------------------------------------------------


# Latin ligatures (U+FB00-FB06) and the soft hyphen that PDF text layers carry: "e\ufb00ect" matches
# neither the query "effect" nor a quote typed by hand. Only these are mapped at extraction (each
# to the letters it draws), so offsets stay meaningful; full NFKC is applied to BM25 tokens only.
_LIGATURES = str.maketrans({
    "\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl", "\ufb03": "ffi", "\ufb04": "ffl",
    "\ufb05": "st", "\ufb06": "st", "\u00ad": None, "\x00": None,
})


def normalise_text(text: str) -> str:
    """Extracted text with ligatures spelled out, soft hyphens and NULs dropped, CRLF as LF."""
    return text.translate(_LIGATURES).replace("\r\n", "\n")


def parse_document(data: bytes, filename: str, kind: str, limits: ParseLimits) -> ParsedDocument:
    """Parse ``data`` as ``kind``; raises 422 for encrypted, empty, textless or malformed files."""
    if not data:
        raise UnprocessableError(f"'{filename}' is empty.", code="empty_file")
    if kind == "pdf":
        pages = _parse_pdf(data, filename, limits)
    elif kind == "docx":
        pages = _parse_docx(data, filename, limits)
    elif kind in ("txt", "md"):
        pages = [PageText(None, _decode_text(data, filename))]
    elif kind == "json":
        pages = _parse_json(data, filename)
    elif kind == "csv":
        pages = _parse_csv(data, filename)
    elif kind == "html":
        pages = _parse_html(data, filename)
    else:
        raise UnprocessableError(f"Unsupported file type '{kind}'.", code="unsupported_file_type")
    if sum(len(page.text) for page in pages) > limits.max_chars:
        raise _too_much_text(filename, limits)
    for page in pages:
        page.text = normalise_text(page.text)
    if not any(page.text.strip() for page in pages):
        hint = " (it may be a scanned, image-only document without a text layer)" if kind == "pdf" else ""
        raise UnprocessableError(f"No text could be extracted from '{filename}'{hint}.", code="no_text")
    return ParsedDocument(kind, pages)
