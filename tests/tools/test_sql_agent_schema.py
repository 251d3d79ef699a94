"""The SQL agent sees the schema before it writes its first query (issue 10: no guessed columns).

A scripted model reads the sql_query tool description it is offered on its *first* turn and builds
its query from the column names listed there; the real tool then runs it on the sample database.
"""

from __future__ import annotations

import asyncio
import json
import re

from backend.agents.runner import run_agent
from backend.llm.types import GenerationParams
from backend.settings import Settings
from backend.tools.base import ToolContext
from tests.agents.conftest import ScriptedLLM, collect
from tests.tools.sample_db import build


def _offered_description(params: GenerationParams, name: str) -> str:
    for spec in params.tools or []:
        if spec["function"]["name"] == name:
            return spec["function"]["description"]
    raise AssertionError(f"{name} was not offered")


def test_first_query_is_written_from_the_schema_in_the_tool_description(tmp_path):
    db = build(tmp_path / "company.db")
    settings = Settings(_env_file=None, data_dir=tmp_path / "data", router_use_llm=False, sql_database_path=db)
    seen: list[str] = []

    def first_turn(messages, params, constraint):
        description = _offered_description(params, "sql_query")
        seen.append(description)
        columns = re.search(r"employees\(([^)]*)\)", description)
        assert columns, description  # the model is told the table and its columns up front
        names = [c.split()[0] for c in columns.group(1).split(",")]
        money = next(n for n in names if n.startswith("sal"))  # "salary", not a guessed "salary_usd"
        # the first turn is a forced, grammar-constrained call: a bare JSON object
        return json.dumps({"name": "sql_query", "arguments": {"query": f"SELECT max({money}) AS top FROM employees"}})

    llm = ScriptedLLM([first_turn, "The highest salary is 142000."])
    ctx = ToolContext(user_id="u_test", settings=settings)
    messages = [{"role": "user", "content": "Using SQL on the company database, what is the highest salary?"}]
    steps, _text, done, _events = asyncio.run(
        collect(run_agent("react", messages, ctx, llm, GenerationParams(), settings, tool_names=["sql_query"]))
    )
    assert seen and "Ada" in seen[0]  # sample rows, too
    assert [s.tool for s in steps] == ["sql_query"]
    assert steps[0].ok and "| 142000 |" in steps[0].observation
    assert "142000" in done.content
