"""wikipedia: look a topic up on Wikipedia (search + summary) with the ``wikipedia`` package.

The package calls ``requests.get(API_URL, ...)`` with no timeout and no address checks. We replace
the module's ``requests`` with a small shim that sends every call through the SSRF-guarded,
timeout-bounded ``httpx`` client (``backend.net.http.sync_client``) to ``settings.wikipedia_api_url``
(checked by the guard before use). Outside this tool the shim refuses, so nothing in-process can
use the package to reach an unchecked address. The package's process-wide result cache is bypassed.
"""

from __future__ import annotations

import asyncio
import threading
import warnings
from typing import Any
from urllib.parse import quote

import httpx

from backend.net.http import sync_client
from backend.net.ssrf import SSRFError, check_url_async
from backend.tools.base import ToolContext, ToolError, ToolResult, tool

MAX_SUMMARY_CHARS = 2500
_local = threading.local()
_install_lock = threading.Lock()


class _WikiHttpError(Exception):
    pass


class _GuardedRequests:
    """Stands in for the ``requests`` module inside ``wikipedia.wikipedia`` (only ``get`` is used)."""

    def get(
        self, url: str, params: dict[str, Any] | None = None, headers: dict[str, str] | None = None, **_: Any
    ) -> httpx.Response:
        client = getattr(_local, "client", None)
        api_url = getattr(_local, "api_url", None)
        if client is None or api_url is None:
            raise _WikiHttpError("the wikipedia package may only be used through the wikipedia tool")
        try:
            response: httpx.Response = client.get(api_url, params=params, headers=headers)
        except SSRFError as exc:
            raise _WikiHttpError(f"blocked outbound request: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - httpx errors of any kind become one readable error
            raise _WikiHttpError(f"request to Wikipedia failed: {type(exc).__name__}: {exc}") from None
        if response.status_code >= 400:
            raise _WikiHttpError(f"Wikipedia answered HTTP {response.status_code}")
        return response


def _module() -> Any:
    import wikipedia.wikipedia as wikimod

    with _install_lock:
        if not isinstance(wikimod.requests, _GuardedRequests):
            wikimod.requests = _GuardedRequests()
            wikimod.RATE_LIMIT = False
    return wikimod


def _page_url(api_url: str, title: str) -> str:
    base = api_url.rsplit("/w/api.php", 1)[0] if "/w/api.php" in api_url else api_url.rsplit("/", 1)[0]
    return f"{base}/wiki/{quote(title.replace(' ', '_'))}"


def _lookup(settings: Any, query: str, sentences: int) -> ToolResult:
    """Blocking: runs in a worker thread with a thread-local guarded client."""
    wikimod = _module()
    from wikipedia.exceptions import DisambiguationError, PageError, WikipediaException

    search = getattr(wikimod.search, "fn", wikimod.search)  # skip the package's process-wide cache
    _local.client = sync_client(settings)
    _local.api_url = settings.wikipedia_api_url
    quiet = warnings.catch_warnings()
    quiet.__enter__()
    warnings.filterwarnings("ignore", message="No parser was explicitly specified")  # bs4, inside the package
    try:
        related: list[str] = []
        try:
            page = wikimod.page(query, auto_suggest=False, redirect=True)
        except PageError:
            titles, suggestion = search(query, results=5, suggestion=True)
            candidates = ([suggestion] if suggestion else []) + [t for t in titles if t != suggestion]
            if not candidates:
                return ToolResult(False, f"Error: no Wikipedia article matches {query!r}.", data={"sources": []})
            related = candidates[1:]
            page = wikimod.page(candidates[0], auto_suggest=False, redirect=True)
        summary = " ".join(page.summary.split()) if sentences == 0 else page.summary
        if len(summary) > MAX_SUMMARY_CHARS:
            summary = summary[:MAX_SUMMARY_CHARS].rsplit(" ", 1)[0] + " …"
        url = getattr(page, "url", None) or _page_url(settings.wikipedia_api_url, page.title)
        text = f"{page.title}\n{url}\n\n{summary.strip() or '(this article has no introduction)'}"
        if related:
            text += "\n\nOther matching articles: " + ", ".join(related[:5])
        return ToolResult(True, text, data={"sources": [{"title": page.title, "url": url}]})
    except DisambiguationError as exc:
        options = [o for o in exc.options if o][:15]
        text = f"{exc.title!r} is ambiguous on Wikipedia. It may refer to:\n" + "\n".join(f"- {o}" for o in options)
        text += "\nAsk again with one of these titles."
        return ToolResult(True, text, data={"sources": [], "options": options})
    except PageError:
        return ToolResult(False, f"Error: no Wikipedia article matches {query!r}.", data={"sources": []})
    except _WikiHttpError as exc:
        return ToolResult(False, f"Error: {exc}", data={"sources": []})
    except (WikipediaException, KeyError, ValueError) as exc:
        return ToolResult(False, f"Error: Wikipedia returned an unexpected answer ({type(exc).__name__}: {exc})")
    finally:
        quiet.__exit__(None, None, None)
        _local.client.close()
        _local.client = None
        _local.api_url = None


@tool(
    name="wikipedia",
    timeout_s=60,
    categories=("wikipedia", "search"),
    route_patterns=(r"\b(?:wikipedia|wiki article|wiki page|encyclop(?:a)?edia)\b",),
)
async def wikipedia_tool(ctx: ToolContext, query: str) -> ToolResult:
    """Look up a topic on Wikipedia and return the article's introduction (handles ambiguous titles).

    Args:
        query: an article title or topic, e.g. "Celtuce" or "Great Wall of China".
    """
    query = (query or "").strip()
    if not query:
        raise ToolError("query is empty")
    if len(query) > 300:
        raise ToolError("query is too long (at most 300 characters)")
    settings = ctx.settings
    try:
        await check_url_async(settings.wikipedia_api_url, settings.ssrf_allow_hosts)
    except SSRFError as exc:
        raise ToolError(f"the configured Wikipedia URL is not allowed: {exc}") from None
    return await asyncio.to_thread(_lookup, settings, query, 0)
