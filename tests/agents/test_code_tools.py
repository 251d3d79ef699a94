"""Server tools called from the code agent's program, in the real bubblewrap sandbox, through the
tool channel: the call reaches the server tool with the caller's context and its reply comes back;
nothing else is reachable; every bound gives a clear error inside the program, never a crash."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
from pathlib import Path

import pytest

from backend.agents.runner import run_agent
from backend.llm.types import GenerationParams
from backend.settings import Settings
from backend.tools.base import Tool, ToolContext, tool
from backend.tools.python_code import python_code, run_python
from backend.tools.sandbox import sandbox_available
from backend.tools.sql_query import sql_query
from tests.agents.conftest import ScriptedLLM, collect

AVAILABLE, REASON = sandbox_available()
pytestmark = pytest.mark.skipif(not AVAILABLE, reason=f"bubblewrap sandbox unavailable: {REASON}")


def fenced(code: str) -> str:
    return f"```python\n{code}\n```"


@pytest.fixture
def shop_db(tmp_path: Path) -> Path:
    path = tmp_path / "shop.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, city TEXT)")
        db.executemany("INSERT INTO customers (name, city) VALUES (?, ?)", [("Ann", "Oslo"), ("Ben", "Rome"), ("Cy", "Oslo")])
    path.chmod(0o644)
    tmp_path.chmod(0o755)
    return path


def _settings(tmp_path: Path, **kw: object) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path / "data", router_use_llm=False, **kw)  # type: ignore[arg-type]


def _code(llm: ScriptedLLM, ctx: ToolContext, settings: Settings, question: str, tools: dict[str, Tool]):
    messages = [{"role": "user", "content": question}]
    return asyncio.run(collect(run_agent("code", messages, ctx, llm, GenerationParams(), settings, tools=tools)))


# a fast stand-in for math_calc (the channel serves whatever tool is registered under that name)
@tool
async def _echo(ctx: ToolContext, expression: str) -> str:
    """Echo the expression and who asked.

    Args:
        expression: any text.
    """
    return f"{ctx.user_id}:{expression}"


@tool
async def _huge(ctx: ToolContext, expression: str) -> str:
    """Return a lot of text.

    Args:
        expression: ignored.
    """
    return "x" * 100_000


ECHO = dataclasses.replace(_echo, name="math_calc")
HUGE = dataclasses.replace(_huge, name="math_calc")


def test_the_program_queries_the_database_and_its_output_is_the_answer(tmp_path, shop_db):
    settings = _settings(tmp_path, sql_database_path=shop_db)
    ctx = ToolContext(user_id="u1", settings=settings)
    program = 'from tools import sql\nrows = sql("SELECT COUNT(*) FROM customers WHERE city = \'Oslo\'")\nprint(rows[0][0])'
    llm = ScriptedLLM([fenced(program)])
    tools = {"python_code": python_code, "sql_query": sql_query.for_settings(settings)}
    steps, text, done, _ = _code(llm, ctx, settings, "How many customers in the database live in Oslo?", tools)
    system = llm.calls[0]["messages"][0]["content"]
    assert "from tools import sql" in system and "customers" in system, "the prompt offers sql() with the schema"
    assert [s.tool for s in steps] == ["python_code", "sql_query"]
    assert steps[1].input == {"query": "SELECT COUNT(*) FROM customers WHERE city = 'Oslo'"} and steps[1].ok
    assert done.content == text == "2" and done.reason == "answered"


def test_functions_are_offered_only_for_enabled_tools(tmp_path, shop_db):
    settings = _settings(tmp_path, sql_database_path=shop_db)
    ctx = ToolContext(user_id="u1", settings=settings)
    llm = ScriptedLLM([fenced("from tools import sql\nprint(sql('SELECT 1'))")] * 3)
    steps, _, done, _ = _code(llm, ctx, settings, "How many customers are in the database?", {"python_code": python_code})
    assert "from tools import" not in llm.calls[0]["messages"][0]["content"]
    assert not any(s.ok for s in steps) and "No module named 'tools'" in steps[0].observation
    assert done.reason == "program_failed"


def test_an_arithmetic_question_is_not_offered_server_functions(tmp_path, shop_db):
    settings = _settings(tmp_path, sql_database_path=shop_db)
    ctx = ToolContext(user_id="u1", settings=settings)
    llm = ScriptedLLM([fenced("print(6 * 7)")])
    tools = {"python_code": python_code, "sql_query": sql_query.for_settings(settings)}
    _, _, done, _ = _code(llm, ctx, settings, "How many eggs are in six rows of seven eggs?", tools)
    assert "from tools import" not in llm.calls[0]["messages"][0]["content"]
    assert "6 rows of 7 eggs" in llm.calls[0]["messages"][-1]["content"], "number words reach the model as numerals"
    assert done.content == "42"


def test_the_call_runs_as_the_requesting_user_whatever_the_program_sends(tmp_path):
    settings = _settings(tmp_path)
    ctx = ToolContext(user_id="alice", settings=settings)
    # the stub only sends fn and its parameters; a raw request naming another user is filtered
    code = (
        "import json, os\nfrom tools import calc\nprint(calc('a'))\n"
        "req, rep = (int(x) for x in os.environ['TOOL_CHANNEL_FDS'].split(','))\n"
        "os.write(req, (json.dumps({'fn': 'calc', 'args': {'expression': 'b', 'user_id': 'bob'}, 'user_id': 'bob'}) + '\\n').encode())\n"
        "print(json.loads(os.read(rep, 65536))['result'])\n"
        "os.write(req, b'not json\\n')\nprint(json.loads(os.read(rep, 65536))['error'])\n"
        "os.write(req, (json.dumps({'fn': 'open', 'args': {}}) + '\\n').encode())\nprint(json.loads(os.read(rep, 65536))['error'])\n"
    )
    result = asyncio.run(run_python(ctx, code, {"math_calc": ECHO}))
    assert result.ok, result.output
    lines = result.data["stdout"].splitlines()
    assert lines[:2] == ["alice:a", "alice:b"]
    assert lines[2] == "the request is not JSON"
    assert lines[3].startswith("no server function 'open'")
    assert [c["args"] for c in result.data["tool_calls"]] == [{"expression": "a"}, {"expression": "b"}]


def test_too_many_calls_and_oversize_requests_and_replies_are_errors_inside_the_program(tmp_path):
    settings = _settings(tmp_path, code_tool_max_calls=2, code_tool_max_request_bytes=1024, code_tool_max_reply_bytes=4096)
    ctx = ToolContext(user_id="u1", settings=settings)
    code = (
        "from tools import calc, ToolCallError\n"
        "def attempt(arg):\n"
        "    try:\n        return calc(arg)[:20]\n"
        "    except ToolCallError as exc:\n        return 'ERROR ' + str(exc)\n"
        "print(attempt('1'))\nprint(attempt('y' * 5000))\nprint(attempt('2'))\nprint(attempt('3'))\n"
    )
    result = asyncio.run(run_python(ctx, code, {"math_calc": ECHO}))
    assert result.ok, result.output
    lines = result.data["stdout"].splitlines()
    assert lines[0] == "u1:1"
    assert lines[1].startswith("ERROR the request is too large (at most 1024 bytes)")
    # the over-long request ended the channel (its rest was unframed): later calls fail clearly
    assert lines[2].startswith("ERROR") and lines[3].startswith("ERROR")
    code2 = (
        "from tools import calc, ToolCallError\n"
        "for i in range(4):\n"
        "    try:\n        print(calc(str(i)))\n"
        "    except ToolCallError as exc:\n        print('ERROR', exc)\n"
    )
    result = asyncio.run(run_python(ctx, code2, {"math_calc": ECHO}))
    assert result.data["stdout"].splitlines() == [
        "u1:0", "u1:1", "ERROR too many tool calls (at most 2 per run)", "ERROR too many tool calls (at most 2 per run)",
    ]
    result = asyncio.run(run_python(ctx, "from tools import calc\ncalc('z')", {"math_calc": HUGE}))
    assert not result.ok and "ToolCallError: the result is too large" in result.output


def test_a_flood_without_newlines_cannot_hurt_the_server(tmp_path):
    settings = _settings(tmp_path, code_tool_max_request_bytes=1024)
    ctx = ToolContext(user_id="u1", settings=settings)
    code = (
        "import os\nreq, rep = (int(x) for x in os.environ['TOOL_CHANNEL_FDS'].split(','))\n"
        "try:\n    os.write(req, b'x' * 4_000_000)\nexcept OSError as exc:\n    print('write failed', type(exc).__name__)\n"
        "print(os.read(rep, 65536).decode().strip())\n"
    )
    result = asyncio.run(run_python(ctx, code, {"math_calc": ECHO}))
    assert not result.data["timed_out"]
    assert "too large" in result.output
    # and the server still serves the next run
    again = asyncio.run(run_python(ctx, "from tools import calc\nprint(calc('ok'))", {"math_calc": ECHO}))
    assert again.data["stdout"].strip() == "u1:ok"


def test_time_in_tool_calls_does_not_count_against_the_programs_wall_clock(tmp_path):
    @tool
    async def _slow(ctx: ToolContext, expression: str) -> str:
        """Answer slowly.

        Args:
            expression: ignored.
        """
        await asyncio.sleep(1.5)
        return "slow"

    settings = _settings(tmp_path, sandbox_timeout_s=2.0)
    ctx = ToolContext(user_id="u1", settings=settings)
    code = "from tools import calc\nprint(calc('a'), calc('b'))"
    result = asyncio.run(run_python(ctx, code, {"math_calc": dataclasses.replace(_slow, name="math_calc")}))
    assert result.ok and result.data["stdout"].strip() == "slow slow", result.output


def test_another_users_documents_are_not_reachable_from_a_program(api):
    """Through the real app: alice's upload is found by alice's program and not by bob's."""
    secret = "The vault combination of Project Heron is 7319-4420."
    r = api.client.post(
        "/api/files/upload", files=[("files", ("heron.txt", secret.encode(), "text/plain"))], headers=api.auth("alice")
    )
    assert r.status_code == 200, r.text
    assert all(e.get("status") != "failed" for e in r.json()["data"])
    program = 'from tools import search_documents\nprint(search_documents("vault combination Project Heron"))'
    question = "According to my documents, what is the vault combination of Project Heron?"
    body = {"model": "scripted-model:code", "messages": [{"role": "user", "content": question}]}
    answers = {}
    for who in ("bob", "alice"):
        api.provider.outputs = [fenced(program)]
        resp = api.client.post("/v1/chat/completions", json=body, headers=api.auth(who))
        assert resp.status_code == 200, resp.text
        data = resp.json()
        assert [s["tool"] for s in data["agent"]["steps"]] == ["python_code", "rag_retrieval"]
        answers[who] = data["choices"][0]["message"]["content"]
    assert "7319-4420" not in answers["bob"] and "heron" not in answers["bob"].lower()
    assert "7319-4420" in answers["alice"]
    json.dumps(answers)
