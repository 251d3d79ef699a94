"""A small stand-in for the backend's HTTP contract, used to develop and test the page in isolation.

It implements exactly the request/response shapes the page relies on (login, conversations, documents,
/v1/models and streaming /v1/chat/completions with agent steps, sources, keep-alive comments and
error chunks) and serves frontend/ with the production security headers.  The browser tests prefer
the real server (see conftest.py); this is the fallback while the real app factory is unavailable.

    python tests/browser/mock_backend.py --port 8765
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import time
import uuid
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.staticfiles import StaticFiles

ROOT = Path(__file__).resolve().parents[2]
USERNAME = "alice"
PASSWORD = "correct horse battery"
BASE_MODEL = "mock-model"


def csp_headers() -> dict[str, str]:
    import sys

    sys.path.insert(0, str(ROOT))
    from run_frontend import security_headers

    return security_headers()


def error(status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


class State:
    def __init__(self) -> None:
        self.tokens: set[str] = set()
        self.conversations: dict[str, dict[str, Any]] = {}
        self.documents: dict[str, dict[str, Any]] = {}
        self.fail_next: dict[str, int] = {}


STATE = State()


def authed(request: Request) -> bool:
    header = request.headers.get("authorization", "")
    return header.startswith("Bearer ") and header[7:] in STATE.tokens


async def login(request: Request) -> Response:
    body = await request.json()
    if body.get("username") != USERNAME or body.get("password") != PASSWORD:
        return error(401, "Invalid username or password.", "invalid_credentials")
    token = secrets.token_urlsafe(24)
    STATE.tokens.add(token)
    return JSONResponse(
        {"access_token": token, "token_type": "bearer", "expires_in": 3600,
         "user": {"id": "usr_1", "username": USERNAME, "role": "user"}}
    )


async def logout(request: Request) -> Response:
    header = request.headers.get("authorization", "")
    STATE.tokens.discard(header[7:])
    return Response(status_code=204)


async def conversations(request: Request) -> Response:
    if not authed(request):
        return error(401, "Invalid or missing credentials.")
    if request.method == "POST":
        body = await request.json()
        now = time.time()
        conv = {"id": "conv_" + uuid.uuid4().hex[:12], "title": body.get("title") or "New conversation",
                "created_at": now, "updated_at": now, "messages": []}
        STATE.conversations[conv["id"]] = conv
        return JSONResponse(summary(conv), status_code=201)
    limit = int(request.query_params.get("limit", 50))
    offset = int(request.query_params.get("offset", 0))
    items = sorted(STATE.conversations.values(), key=lambda c: c["updated_at"], reverse=True)
    page = items[offset:offset + limit]
    return JSONResponse({"data": [summary(c) for c in page], "total": len(items),
                         "has_more": offset + limit < len(items)})


def summary(conv: dict[str, Any]) -> dict[str, Any]:
    return {k: conv[k] for k in ("id", "title", "created_at", "updated_at")} | {
        "message_count": len(conv["messages"])}


async def conversation(request: Request) -> Response:
    if not authed(request):
        return error(401, "Invalid or missing credentials.")
    conv = STATE.conversations.get(request.path_params["cid"])
    if conv is None:
        return error(404, "Conversation not found.", "not_found")
    if request.method == "DELETE":
        del STATE.conversations[conv["id"]]
        return Response(status_code=204)
    return JSONResponse(conv)


async def models(request: Request) -> Response:
    if not authed(request):
        return error(401, "Invalid or missing credentials.")
    ids = [BASE_MODEL] + [BASE_MODEL + s for s in (":chat", ":react", ":plan-execute")]
    return JSONResponse({"object": "list", "data": [{"id": i, "object": "model", "owned_by": "local"} for i in ids]})


def chunk(content: str | None = None, **extra: Any) -> str:
    delta: dict[str, Any] = {}
    if content is not None:
        delta["content"] = content
    if "reasoning" in extra:
        delta["reasoning_content"] = extra.pop("reasoning")
    body = {"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": BASE_MODEL, "choices": [{"index": 0, "delta": delta, "finish_reason": None}], **extra}
    return "data: " + json.dumps(body) + "\n\n"


async def completions(request: Request) -> Response:
    if not authed(request):
        return error(401, "Invalid or missing credentials.")
    if STATE.fail_next.get("chat"):
        status = STATE.fail_next.pop("chat")
        headers = {"Retry-After": "7"} if status in (429, 503) else None
        return error(status, "Rate limit exceeded." if status == 429 else "Server busy.", None, headers)
    body = await request.json()
    model = str(body.get("model", ""))
    question = body["messages"][-1]["content"]
    conv = STATE.conversations.get(body.get("conversation_id") or "")
    mode = model.split(":", 1)[1] if ":" in model else "chat"
    agent = {"mode": mode, "reason": "requested by model id" if ":" in model else "simple question"}
    slow = "slow" in question

    async def events():  # type: ignore[no-untyped-def]
        yield ": keep-alive\n\n"
        if mode in ("react", "plan-execute"):
            yield chunk(reasoning="Thought: I should use the calculator.\n", agent=agent)
            await asyncio.sleep(0.05)
            step = {"index": 0, "thought": "I should use the calculator.", "tool": "calculator",
                    "input": {"expression": "6*7"}, "observation": "42 <img src=x onerror=\"window.__xss=1\">"}
            yield chunk(agent=agent, agent_step=step)
        words = f"**Answer** to: {question}\n\nThe result is `42`. Done.".split(" ")
        answer = ""
        for i, word in enumerate(words):
            piece = word if i == 0 else " " + word
            answer += piece
            yield chunk(piece, agent=agent)
            if i == 2:
                yield ": keep-alive\n\n"
            await asyncio.sleep(0.5 if slow else 0.03)
        if body.get("use_documents") and STATE.documents:
            doc = next(iter(STATE.documents.values()))
            yield chunk(agent=agent, sources=[{"index": 1, "filename": doc["filename"], "page": 1,
                                               "chunk_id": "c1", "score": 0.87, "text": "excerpt text"}])
        if "break" in question:
            yield "data: " + json.dumps({"error": {"message": "model crashed", "type": "server_error",
                                                   "code": "upstream_error"}}) + "\n\n"
        else:
            usage = {"prompt_tokens": 12, "completion_tokens": len(words), "total_tokens": 12 + len(words)}
            yield "data: " + json.dumps({"id": "chatcmpl-mock", "object": "chat.completion.chunk",
                                         "choices": [], "usage": usage}) + "\n\n"
        if conv is not None:
            now = time.time()
            conv["messages"].append({"role": "user", "content": question, "created_at": now})
            stored: dict[str, Any] = {"role": "assistant", "content": answer, "created_at": now}
            if mode in ("react", "plan-execute"):
                stored["agent"] = agent | {"steps": [step]}
            conv["messages"].append(stored)
            conv["updated_at"] = now
        yield "data: [DONE]\n\n"

    headers = {"X-Conversation-Id": conv["id"] if conv else "", "Cache-Control": "no-cache"}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)


async def upload(request: Request) -> Response:
    if not authed(request):
        return error(401, "Invalid or missing credentials.")
    form = await request.form()
    out = []
    for f in form.getlist("files"):
        data = await f.read()  # type: ignore[union-attr]
        doc = {"file_id": "file_" + uuid.uuid4().hex[:12], "filename": f.filename, "size": len(data),  # type: ignore[union-attr]
               "chunks": max(1, len(data) // 1000), "pages": 1, "created_at": time.time()}
        STATE.documents[doc["file_id"]] = doc
        out.append(doc | {"status": "ready"})
    return JSONResponse({"data": out}, status_code=201)


async def documents(request: Request) -> Response:
    if not authed(request):
        return error(401, "Invalid or missing credentials.")
    docs = list(STATE.documents.values())
    return JSONResponse({"data": docs, "total": len(docs), "has_more": False})


async def document(request: Request) -> Response:
    if not authed(request):
        return error(401, "Invalid or missing credentials.")
    if STATE.documents.pop(request.path_params["fid"], None) is None:
        return error(404, "Document not found.", "not_found")
    return Response(status_code=204)


async def control(request: Request) -> Response:
    """Test hook: make the next chat request fail with a given status, or expire all tokens."""
    body = await request.json()
    if body.get("expire_tokens"):
        STATE.tokens.clear()
    if body.get("fail_chat"):
        STATE.fail_next["chat"] = int(body["fail_chat"])
    return JSONResponse({"ok": True})


class Headers(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next):  # type: ignore[no-untyped-def]
        response = await call_next(request)
        for k, v in csp_headers().items():
            response.headers.setdefault(k, v)
        return response


def create_app() -> Starlette:
    routes = [
        Route("/api/auth/login", login, methods=["POST"]),
        Route("/api/auth/logout", logout, methods=["POST"]),
        Route("/api/conversations", conversations, methods=["GET", "POST"]),
        Route("/api/conversations/{cid}", conversation, methods=["GET", "DELETE"]),
        Route("/api/files/upload", upload, methods=["POST"]),
        Route("/api/files/documents", documents, methods=["GET"]),
        Route("/api/files/documents/{fid}", document, methods=["DELETE"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/chat/completions", completions, methods=["POST"]),
        Route("/__mock__/control", control, methods=["POST"]),
        Route("/health", lambda r: JSONResponse({"status": "ok"}), methods=["GET"]),
    ]
    app = Starlette(routes=routes, middleware=[Middleware(Headers)])
    app.mount("/", StaticFiles(directory=str(ROOT / "frontend"), html=True))
    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    uvicorn.run(create_app(), host=args.host, port=args.port, log_level="warning")
