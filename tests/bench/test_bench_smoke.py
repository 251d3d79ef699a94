"""Smoke runs of every benchmark script, so they keep working as the code changes.

Each script runs as a user would run it (a subprocess, ``--quick``), on the fake OpenAI upstream
(no model) wherever a real model is not the point, writing its JSON to a temp dir. The assertions
check what a reader of the results relies on: the numbers are there, the requests succeeded, the
per-problem files resume, the scoring functions score. Only ``overhead.py`` needs a real model
(the smallest one, a couple of short generations): it is marked ``model``.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


def run_script(name: str, *args: str, timeout: int = 300) -> str:
    out = subprocess.run(
        [sys.executable, str(REPO / "bench" / f"{name}.py"), *args],
        cwd=REPO, capture_output=True, text=True, timeout=timeout,
    )
    assert out.returncode == 0, f"{name} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


# ----------------------------------------------------------------------------- pure scoring
def test_gsm8k_answer_extraction_and_scoring() -> None:
    from bench.gsm8k import extract_answer, gold_answer, is_correct

    assert gold_answer("so 9 * 2 = 18\n#### 1,080") == 1080
    assert extract_answer("16 - 3 - 4 = 9 eggs, 9 * 2 = $18.\nThe answer is $1,018.") == 1018
    assert extract_answer("The answer is 42. (Checked with 7 * 6 = 42 in 3 steps)") == 42
    assert extract_answer("First 3, then 5, total 8.") == 8  # no marker: the last number
    assert extract_answer("I do not know.") is None
    assert extract_answer("The answer is -3.50") == -3.5
    assert extract_answer("So 9 * 2 = 18 dollars.\n\\[\n\\boxed{18}\n\\]\nCheck: 16 - 7 = 9") == 18
    assert extract_answer("Total: \\boxed{\\$1,250.00}") == 1250
    assert is_correct(18.0, 18) and not is_correct(None, 18) and not is_correct(17.999, 18)


def test_hotpotqa_official_normalisation() -> None:
    from bench.hotpotqa import exact_match, extract_answer, f1_score

    assert exact_match("The Beatles.", "beatles")
    assert not exact_match("Paul McCartney", "McCartney")
    assert f1_score("Paul McCartney", "McCartney") == pytest.approx(2 / 3)
    assert f1_score("yes", "no") == 0.0 and f1_score("no", "no") == 1.0
    assert f1_score("yes it is", "yes") == 0.0  # the yes/no rule of hotpot_evaluate_v1.py
    assert extract_answer("Thought: I found it.\nFinal Answer: 1755.") == "1755"
    assert extract_answer("**Moscow State University**") == "Moscow State University"


def test_wiki_fixture_serves_the_wikipedia_tool() -> None:
    """The production wikipedia tool, pointed at the fixture: exact title, case redirect, search fallback."""
    import asyncio

    from backend.settings import Settings
    from backend.tools.base import ToolContext
    from backend.tools.registry import get_tool
    from bench.wiki_fixture import WikiCorpus, WikiServer

    corpus = WikiCorpus({
        "Moscow State University": ["It was founded on January 25, 1755 by Mikhail Lomonosov."],
        "Sergei Tokarev": ["Sergei Tokarev was a professor at Moscow State University."],
    })
    with WikiServer(corpus) as wiki:
        settings = Settings(_env_file=None, wikipedia_api_url=wiki.api_url, ssrf_allow_hosts=["127.0.0.1"])
        ctx = ToolContext(user_id="u1", settings=settings)
        tool = get_tool("wikipedia")
        exact = asyncio.run(tool.run(ctx, {"query": "Moscow State University"}))
        assert exact.ok and "founded on January 25, 1755" in exact.output
        redirected = asyncio.run(tool.run(ctx, {"query": "moscow state university"}))
        assert redirected.ok and redirected.output.startswith("Moscow State University")
        searched = asyncio.run(tool.run(ctx, {"query": "professor Tokarev"}))
        assert searched.ok and searched.output.startswith("Sergei Tokarev")
        missing = asyncio.run(tool.run(ctx, {"query": "zzqqxx"}))
        assert not missing.ok and "no Wikipedia article" in missing.output


# ----------------------------------------------------------------------------- scripts
def test_router_accuracy_heuristics(tmp_path: Path) -> None:
    out = tmp_path / "router.json"
    stdout = run_script("router_accuracy", "--quick", "--no-llm", "--out", str(out))
    data = load(out)
    res = data["configs"]["heuristics"]
    n = data["n_queries"]
    assert n >= 40 and len(res["rows"]) == n  # every 5th of the >= 200 labelled queries
    assert sum(sum(row.values()) for row in res["confusion"].values()) == n
    assert set(res["splits"]) == {"tune", "heldout"}
    assert res["accuracy"] >= 0.6  # the heuristics route most labelled queries right
    assert "confusion" in stdout


def test_agent_tasks_fake_upstream_resumes(tmp_path: Path) -> None:
    out = tmp_path / "agent_tasks_quick.json"
    run_script("agent_tasks", "--fake-upstream", "--modes", "auto", "chat", "--limit", "2", "--out", str(out))
    summary = load(out)["summaries"][0]
    assert summary["n_common"] == 2
    for mode in ("auto", "chat"):
        assert summary["modes"][mode]["all"]["n"] == 2 and summary["modes"][mode]["all"]["errors"] == 0
    lines = (tmp_path / "agent_tasks_quick" / "fake-upstream__auto.jsonl").read_text().splitlines()
    assert [json.loads(x)["id"] for x in lines] == ["t01", "t02"]
    stdout = run_script("agent_tasks", "--fake-upstream", "--modes", "auto", "chat", "--limit", "2", "--out", str(out))
    assert "0 runs to go" in stdout
    assert (tmp_path / "agent_tasks_quick" / "fake-upstream__auto.jsonl").read_text().splitlines() == lines


def test_api_latency_quick(tmp_path: Path) -> None:
    out = tmp_path / "api.json"
    run_script("api_latency", "--quick", "--concurrency", "1", "8", "--out", str(out))
    res = load(out)["results"]
    assert res["sequential"]["server"]["n"] > 0 and res["sequential"]["server"]["p50_ms"] > 0
    assert {r["concurrency"] for r in res["throughput"]} == {1, 8}
    assert all(r["completed"] > 0 and not r["errors"] for r in res["throughput"])


def test_mixed_load_quick(tmp_path: Path) -> None:
    out = tmp_path / "mixed.json"
    run_script("mixed_load", "--quick", "--out", str(out))
    res = load(out)["results"]
    assert res["requests"] > 0 and res["health"]["probes"] > 0 and res["json_files"] > 0
    assert all(res["checks"].values()), res["checks"]


def test_concurrency_quick_fake_upstream(tmp_path: Path) -> None:
    out = tmp_path / "conc.json"
    run_script("concurrency", "--quick", "--fake-upstream", "--out", str(out))
    data = load(out)
    assert data["uniform"]["ok"] == data["uniform"]["requests"] == 4 and not data["uniform"]["errors_by_status"]
    assert data["greedy"]["ok"] == data["greedy"]["requests"] and data["greedy"]["light_all_done_s"] > 0


def test_gsm8k_quick_fake_upstream_resumes(tmp_path: Path) -> None:
    out = tmp_path / "gsm8k_quick.json"
    run_script("gsm8k", "--quick", "--fake-upstream", "--out", str(out))
    per_problem = tmp_path / "gsm8k_quick"
    files = sorted(p.name for p in per_problem.glob("*.jsonl"))
    assert files == ["fake-upstream__auto.jsonl", "fake-upstream__chat.jsonl", "fake-upstream__code.jsonl"]
    rows = {r["mode"]: r for r in load(out)["summary"]}
    assert rows["chat"]["n"] == 2 and rows["auto"]["n"] == 2 and rows["code"]["n"] == 1
    assert all(r["errors"] == 0 for r in rows.values())
    assert sum(rows["auto"]["routed_to"].values()) == 2  # the router's choice is recorded per problem
    lines = (per_problem / "fake-upstream__chat.jsonl").read_text().splitlines()
    stdout = run_script("gsm8k", "--quick", "--fake-upstream", "--out", str(out))
    assert "0 to go" in stdout  # resume: nothing is asked again
    assert (per_problem / "fake-upstream__chat.jsonl").read_text().splitlines() == lines


def test_hotpotqa_quick_fake_upstream_uses_the_wiki_fixture(tmp_path: Path) -> None:
    out = tmp_path / "hotpotqa_quick.json"
    run_script("hotpotqa", "--quick", "--fake-upstream", "--out", str(out))
    recs = [json.loads(x) for x in (tmp_path / "hotpotqa_quick" / "fake-upstream__react.jsonl").read_text().splitlines()]
    assert len(recs) == 1 and "error" not in recs[0]
    assert any(c["tool"] == "wikipedia" for c in recs[0]["tool_calls"])  # the agent reached the fixture
    assert load(out)["summary"][0]["n"] == 1


def test_plots_from_results(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    (results / "gsm8k.json").write_text(json.dumps({
        "summary": [
            {"model": "m", "mode": "chat", "n": 10, "accuracy": 40.0, "reference": {"model": "M-Instruct", "gsm8k": 49.6}},
            {"model": "m", "mode": "react", "n": 5, "accuracy": 20.0, "reference": None},
        ],
        "machine": {"cpu": "x", "logical_cpus": 2, "load_avg_start": [1.0]},
    }))
    run_script("plots", "--results", str(results), "--out", str(tmp_path / "plots"))
    png = tmp_path / "plots" / "gsm8k.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "plots" / "overhead.png").exists()  # no JSON, no chart


@pytest.mark.model
@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed")
def test_overhead_quick_smollm(tmp_path: Path) -> None:
    if not (REPO / "data" / "models" / "smollm2-135m-instruct-q4_1.gguf").exists():
        pytest.skip("the SmolLM2-135M model is not assembled")
    out = tmp_path / "overhead.json"
    run_script("overhead", "--quick", "--out", str(out), timeout=600)
    res = load(out)["results"][0]
    assert res["identical_greedy_output"]  # same GGUF, same prompt, temperature 0: same text
    assert res["summary"]["server_stream"]["median_decode_tps"] > 0
    assert res["ratios"]["e2e_tps_nonstream"] > 0


@pytest.mark.model
def test_grammar_sampling_quick_smollm(tmp_path: Path) -> None:
    if not (REPO / "data" / "models" / "smollm2-135m-instruct-q4_1.gguf").exists():
        pytest.skip("the SmolLM2-135M model is not assembled")
    out = tmp_path / "grammar.json"
    run_script("grammar_sampling", "--quick", "--out", str(out), timeout=600)
    summary = load(out)["summary"]
    assert summary["n"] == 2 and summary["identical_outputs"] == 2  # greedy: both orders give the same call
    assert summary["median_lazy_s"] > 0 and summary["median_grammar_first_s"] > 0


def test_embeddings_throughput_quick(tmp_path: Path) -> None:
    out = tmp_path / "embeddings_throughput.json"
    stdout = run_script("embeddings_throughput", "--quick", "--out", str(out))
    rows = load(out)["rows"]
    assert [r["batch_size"] for r in rows] == [1, 16]
    assert all(r["http_texts_per_s"] > 0 and r["direct_texts_per_s"] > 0 and r["tokens_per_text"] > 10 for r in rows)
    assert "HTTP/direct" in stdout


def test_fim_syntax_quick_fake_upstream(tmp_path: Path) -> None:
    out = tmp_path / "fim_syntax.json"
    run_script("fim_syntax", "--quick", "--fake-upstream", "--out", str(out))
    summary = {r["mode"]: r for r in load(out)["summary"]}
    assert summary["plain"]["n"] == summary["check_syntax"]["n"] == 3
    checked = load(out)["check_syntax"]
    assert all(r["parses"] for r in checked if r["status"] == 200)  # check_syntax never answers 200 unparsable
