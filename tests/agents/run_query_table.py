"""Run a table of varied queries through the router and ``run_agent`` on the real embedded model.

    .venv/bin/python -m tests.agents.run_query_table [--only N] [--json OUT]

Web APIs (weather, Wikipedia, Tavily) are answered by the local replay server with recorded
responses. Prints, per query: the mode the router chose, the tools called, the answer, whether
the answer contains the expected facts, the LLM calls and the wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

from backend.agents.events import AgentDone, AgentStep
from backend.agents.router import route
from backend.agents.runner import run_agent
from backend.llm.types import GenerationParams
from backend.settings import Settings
from backend.tools.base import ToolContext
from tests.agents.conftest import GGUF
from tests.fixtures.replay_server import ReplayServer

# (query, every one of these must appear in the answer, case-insensitive, spaces ignored)
QUERIES: list[tuple[str, list[str]]] = [
    ("What is the derivative of x**3 * sin(x)?", ["cos(x)", "sin(x)"]),
    ("Calculate 1234 * 5678", ["7006652"]),
    ("Solve x**2 - 5*x + 6 = 0", ["2", "3"]),
    ("What's the weather in Paris right now?", ["paris"]),
    ("Look up Celtuce on Wikipedia", ["lettuce"]),
    ("Compute the mean and median of 3, 5, 7, 9, 100", ["24.8", "7"]),
    ("Run python code to print the sum of the squares of 1 to 10", ["385"]),
    ("Get the weather in Paris and also calculate 15 * 23", ["345"]),
    ("Look up Celtuce on Wikipedia and compute 2**20", ["1048576", "lettuce"]),
    ("Write a haiku about the sea", []),
]


def _norm(s: str) -> str:
    return s.lower().replace(" ", "").replace(",", "").replace("\\", "")


async def one(query: str, expect: list[str], provider, settings: Settings) -> dict:
    t0 = time.perf_counter()
    decision = await route(query, provider, settings.router_use_llm)
    messages = [{"role": "user", "content": query}]
    params = GenerationParams(temperature=0.0, seed=7)
    tools: list[str] = []
    calls = 1
    if decision.mode == "chat":
        out = await provider.complete(messages, GenerationParams(temperature=0.0, seed=7, max_tokens=200))
        answer = out.content or ""
    else:
        ctx = ToolContext(user_id="u_eval", settings=settings)
        answer = ""
        async for ev in run_agent(decision.mode, messages, ctx, provider, params, settings):
            if isinstance(ev, AgentStep) and ev.tool:
                tools.append(f"{ev.tool}{'' if ev.ok else '(err)'}")
            if isinstance(ev, AgentDone):
                answer, calls = ev.content, ev.llm_calls
    ok = all(_norm(e) in _norm(answer) for e in expect) if expect else bool(answer.strip())
    return {
        "query": query,
        "mode": decision.mode,
        "route_source": decision.source,
        "tools": tools,
        "answer": answer,
        "correct": ok,
        "llm_calls": calls,
        "seconds": round(time.perf_counter() - t0, 1),
    }


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", type=int, action="append")
    ap.add_argument("--json")
    args = ap.parse_args()
    from backend.llm.embedded import EmbeddedProvider

    with ReplayServer() as replay, tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            _env_file=None,
            data_dir=Path(tmp),
            embedded_model_path=GGUF,
            ssrf_allow_hosts=["127.0.0.1"],
            tavily_api_key="tvly-test",
            tavily_base_url=replay.url("/tavily"),
            wikipedia_api_url=replay.url("/wikipedia/w/api.php"),
            weather_geocoding_url=replay.url("/geocoding/v1/search"),
            weather_forecast_url=replay.url("/forecast/v1/forecast"),
        )
        provider = EmbeddedProvider(settings)
        await provider.start()
        rows = []
        try:
            for i, (q, expect) in enumerate(QUERIES, start=1):
                if args.only and i not in args.only:
                    continue
                row = await one(q, expect, provider, settings)
                rows.append(row)
                print(
                    f"{i:2d} | {row['mode']:12s} | {','.join(row['tools']) or '-':30s} | "
                    f"{'RIGHT' if row['correct'] else 'WRONG'} | {row['llm_calls']} calls | {row['seconds']}s | "
                    f"{row['answer'][:160]!r}",
                    flush=True,
                )
        finally:
            await provider.aclose()
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
