"""web_search: Tavily search, through the SSRF-guarded HTTP client.

``AsyncTavilyClient`` accepts an ``httpx.AsyncClient``; we hand it one whose transport resolves and
checks every connection (``backend.net.http.PinnedAsyncTransport``) and whose base URL is
``settings.tavily_base_url`` (checked by the guard before use). Without ``TAVILY_API_KEY`` the tool
says it is not configured — it never invents results.
"""

from __future__ import annotations

import httpx

from backend.net.http import async_client
from backend.net.ssrf import SSRFError, check_url_async
from backend.settings import Settings
from backend.tools.base import ToolContext, ToolError, ToolResult, tool

MAX_CONTENT_CHARS = 700
NOT_CONFIGURED = "web search is not configured (set TAVILY_API_KEY)"


def _needs_key(settings: Settings) -> str | None:
    return None if settings.tavily_api_key else "web search is not configured (set TAVILY_API_KEY)"


@tool(
    timeout_s=60,
    question_argument="query",
    requires=_needs_key,
    categories=("search",),
    route_patterns=(
        r"\b(?:search (?:the )?(?:web|internet|online)|web search|search for|search online|google|"
        r"look(?:ing)? up|lookup|find online|on the web|on the internet)\b",
        r"\b(?:latest|breaking|news|headlines)\b",
        r"\b(?:stock price|share price|exchange rate|price of (?:a |an |the )?(?:bitcoin|gold|oil|share|"
        r"stock)|release date of|market cap)\b",
        r"\bcurrent\b.{0,25}\b(?:rate|price|president|prime minister|ceo|leader|champion|population|record holder)\b",
    ),
)
async def web_search(ctx: ToolContext, query: str, max_results: int = 5) -> ToolResult:
    """Search the web (Tavily) for current information; returns titles, URLs and snippets to cite.

    Args:
        query: the search query (at most 400 characters).
        max_results: number of results (1-10).
    """
    settings = ctx.settings
    key = settings.tavily_api_key.get_secret_value() if settings.tavily_api_key else ""
    if not key:
        raise ToolError(NOT_CONFIGURED)
    query = (query or "").strip()
    if not query:
        raise ToolError("query is empty")
    if len(query) > 400:
        raise ToolError("query is too long (at most 400 characters)")
    max_results = max(1, min(int(max_results), 10))
    base_url = settings.tavily_base_url.rstrip("/")
    try:
        await check_url_async(base_url, settings.ssrf_allow_hosts)
    except SSRFError as exc:
        raise ToolError(f"the configured Tavily URL is not allowed: {exc}") from None

    from tavily import AsyncTavilyClient  # imported on first use (keeps server start-up light)
    from tavily.errors import BadRequestError, ForbiddenError, InvalidAPIKeyError, UsageLimitExceededError
    from tavily.errors import TimeoutError as TavilyTimeoutError

    async with async_client(settings, base_url=base_url) as http:
        client = AsyncTavilyClient(api_key=key, api_base_url=base_url, client=http)
        try:
            response = await client.search(
                query, max_results=max_results, search_depth="basic", timeout=settings.tool_http_timeout_s
            )
        except InvalidAPIKeyError:
            raise ToolError("web search failed: the Tavily API key was rejected") from None
        except UsageLimitExceededError:
            raise ToolError("web search failed: the Tavily usage limit is exhausted") from None
        except (BadRequestError, ForbiddenError) as exc:
            raise ToolError(f"web search failed: {exc}") from None
        except SSRFError as exc:
            raise ToolError(f"web search blocked: {exc}") from None
        except (TimeoutError, TavilyTimeoutError, httpx.TimeoutException):
            raise ToolError("web search timed out") from None
        except httpx.HTTPStatusError as exc:
            raise ToolError(f"web search failed: Tavily answered HTTP {exc.response.status_code}") from None
        except httpx.HTTPError as exc:
            raise ToolError(f"web search failed: {type(exc).__name__}: {exc}") from None
    results = [r for r in (response or {}).get("results", []) if isinstance(r, dict) and r.get("url")]
    if not results:
        return ToolResult(True, f"No web results for {query!r}.", data={"sources": []})
    blocks = []
    sources = []
    for i, r in enumerate(results[:max_results], 1):
        title = str(r.get("title") or r["url"]).strip()
        content = " ".join(str(r.get("content") or "").split())
        if len(content) > MAX_CONTENT_CHARS:
            content = content[:MAX_CONTENT_CHARS] + " …"
        blocks.append(f"[{i}] {title}\nURL: {r['url']}\n{content}")
        sources.append({"title": title, "url": str(r["url"])})
    answer = (response or {}).get("answer")
    text = (f"Answer: {answer}\n\n" if answer else "") + "\n\n".join(blocks)
    return ToolResult(True, text, data={"sources": sources})
