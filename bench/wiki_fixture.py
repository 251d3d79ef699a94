#!/usr/bin/env python3
"""A local MediaWiki ``/w/api.php`` built from HotpotQA gold evidence, for bench/hotpotqa.py.

Every ``"Title | sentence"`` evidence line of ``hotpot_dev_1000_gold_evidence.json`` becomes a
sentence of page ``Title`` (all 1,000 questions pooled, so other questions' pages act as
distractors). It answers the requests the ``wikipedia`` PyPI package makes, in MediaWiki's JSON
shape (``format=json``, legacy page maps keyed by page id):

* ``list=search`` (``srsearch``, ``srlimit``, ``srinfo=suggestion``): BM25 (bm25s) over title + text;
* ``prop=info|pageprops`` (``titles`` / ``pageids``, ``inprop=url``, ``redirects``): exact title,
  else a case-insensitive match answered as a redirect (like Wikipedia's redirects), else ``missing``;
* ``prop=extracts`` (``exintro``, ``explaintext``): the page's sentences as plain text.

Caveat: pages hold only the gold supporting sentences, so the answer is always in the extract —
easier than the real Wikipedia, where it may be deep in a long article.

    .venv/bin/python bench/wiki_fixture.py --port 9200     # then WIKIPEDIA_API_URL=http://127.0.0.1:9200/w/api.php
"""

from __future__ import annotations

import argparse
import json
import socket
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

DEFAULT_DATA = Path(__file__).resolve().parent / "data" / "hotpotqa" / "hotpot_dev_1000_gold_evidence.json"


class WikiCorpus:
    def __init__(self, pages: dict[str, list[str]]) -> None:
        import bm25s

        self.titles = list(pages)
        self.text = {t: " ".join(pages[t]) for t in self.titles}
        self.ids = {t: 1000 + i for i, t in enumerate(self.titles)}
        self.by_id = {v: k for k, v in self.ids.items()}
        self.lower = {t.lower(): t for t in self.titles}
        docs = [f"{t}. {t}. {self.text[t]}" for t in self.titles]  # title counted twice: boosts title matches
        self._bm25 = bm25s.BM25()
        self._bm25.index(bm25s.tokenize(docs, stopwords="en", show_progress=False), show_progress=False)
        self._tokenize = bm25s.tokenize

    @classmethod
    def from_hotpot(cls, path: Path = DEFAULT_DATA) -> WikiCorpus:
        pages: dict[str, list[str]] = {}
        for item in json.loads(path.read_text(encoding="utf-8")):
            for ev in item.get("evidence") or []:
                title, sep, sentence = ev.partition(" | ")
                if not sep:
                    continue
                title, sentence = title.strip(), sentence.strip()
                sents = pages.setdefault(title, [])
                if sentence and sentence not in sents:
                    sents.append(sentence)
        return cls(pages)

    def search(self, query: str, k: int) -> list[str]:
        tokens = self._tokenize([query], stopwords="en", show_progress=False)
        if not tokens.vocab:
            return []
        k = max(1, min(k, len(self.titles)))
        docs, scores = self._bm25.retrieve(tokens, k=k, show_progress=False)
        return [self.titles[int(d)] for d, s in zip(docs[0], scores[0], strict=True) if s > 0]

    def resolve(self, title: str) -> tuple[str | None, bool]:
        """(canonical title, via redirect). MediaWiki capitalises the first letter and maps '_' to ' '."""
        t = title.replace("_", " ").strip()
        if t in self.ids:
            return t, False
        if t[:1].upper() + t[1:] in self.ids:
            return t[:1].upper() + t[1:], False
        hit = self.lower.get(t.lower())
        return (hit, True) if hit else (None, False)


def make_app(corpus: WikiCorpus, base_url_holder: dict[str, str]) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    def page_url(title: str) -> str:
        return f"{base_url_holder['base']}/wiki/{quote(title.replace(' ', '_'))}"

    def page_obj(title: str, prop: str) -> dict[str, Any]:
        pid = corpus.ids[title]
        obj: dict[str, Any] = {"pageid": pid, "ns": 0, "title": title}
        if "info" in prop:
            obj.update(contentmodel="wikitext", pagelanguage="en", fullurl=page_url(title), editurl=page_url(title) + "?action=edit",
                       canonicalurl=page_url(title), length=len(corpus.text[title]))
        if "extracts" in prop:
            obj["extract"] = corpus.text[title]
        return obj

    async def api(request: Request) -> JSONResponse:
        q = request.query_params
        if q.get("action", "query") != "query":
            return JSONResponse({"error": {"code": "badvalue", "info": "Unrecognized value for parameter \"action\"."}})
        if q.get("list") == "search":
            k = int(q.get("srlimit") or q.get("limit") or 10)
            hits = corpus.search(q.get("srsearch", ""), k)
            result: dict[str, Any] = {"search": [{"ns": 0, "title": t, "pageid": corpus.ids[t]} for t in hits]}
            # like MediaWiki: searchinfo only carries what srinfo asked for; this fixture never suggests
            if "totalhits" in q.get("srinfo", "totalhits"):
                result["searchinfo"] = {"totalhits": len(hits)}
            return JSONResponse({"batchcomplete": "", "query": result})
        prop = q.get("prop", "")
        if prop:
            query: dict[str, Any] = {}
            pages: dict[str, Any] = {}
            if q.get("pageids"):
                for raw in q["pageids"].split("|"):
                    title = corpus.by_id.get(int(raw)) if raw.isdigit() else None
                    if title is None:
                        pages[raw] = {"pageid": int(raw) if raw.isdigit() else 0, "missing": ""}
                    else:
                        pages[str(corpus.ids[title])] = page_obj(title, prop)
            else:
                redirects = []
                for i, raw in enumerate((q.get("titles") or "").split("|")):
                    title, redirected = corpus.resolve(raw)
                    if title is None:
                        pages[str(-1 - i)] = {"ns": 0, "title": raw, "missing": ""}
                        continue
                    if redirected and "redirects" in q:
                        redirects.append({"from": raw, "to": title})
                    pages[str(corpus.ids[title])] = page_obj(title, prop)
                if redirects:
                    query["redirects"] = redirects
            query["pages"] = pages
            return JSONResponse({"batchcomplete": "", "query": query})
        return JSONResponse({"error": {"code": "unsupported", "info": "This fixture supports list=search and prop=info|pageprops|extracts."}})

    return Starlette(routes=[Route("/w/api.php", api, methods=["GET"])])


class WikiServer:
    """The fixture on 127.0.0.1:<free port> in a daemon thread; ``api_url`` is the api.php URL."""

    def __init__(self, corpus: WikiCorpus | None = None, port: int = 0) -> None:
        import uvicorn

        self.corpus = corpus or WikiCorpus.from_hotpot()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", port))
        self.port = self._sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.api_url = self.base_url + "/w/api.php"
        app = make_app(self.corpus, {"base": self.base_url})
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    def __enter__(self) -> WikiServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the wiki fixture did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)
        self._sock.close()


def main() -> int:
    p = argparse.ArgumentParser(description="Serve the HotpotQA gold-evidence pages as a MediaWiki API.")
    p.add_argument("--port", type=int, default=9200)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="gold-evidence JSON (default: the vendored sample)")
    args = p.parse_args()
    with WikiServer(WikiCorpus.from_hotpot(args.data), port=args.port) as srv:
        print(f"{len(srv.corpus.titles)} pages at {srv.api_url}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
