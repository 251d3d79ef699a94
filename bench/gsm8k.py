#!/usr/bin/env python3
"""GSM8K (grade-school maths) through the server: plain chat vs auto (the router decides) vs forced agents.

Data: ``bench/data/gsm8k/test.jsonl`` (the official test split, MIT; ``--data`` for another copy), the first ``--limit`` problems.

Prompt (all modes, zero-shot chain of thought — Qwen's own CoT instruction — one user message, temperature 0)::

    <question>
    Please reason step by step, and put your final answer within \\boxed{}.

Modes are model ids on ``/v1/chat/completions``: ``<base>:chat`` (one generation), ``<base>``
(auto: the router picks the mode, as for a user who names no mode), ``<base>:code`` (the code
agent: a program runs in the sandbox), ``<base>:react`` (ReAct agent) and ``<base>:plan-execute``
(LangGraph plan-and-execute). Problems run one at a time through every mode (all modes of problem
0, then problem 1, ...), so a run stopped early still compares the modes on the same problems.

Answer extraction: the number in the last ``\\boxed{}``, else the number after the last "answer is",
else the last number in the reply; commas, "$" and a trailing "." are dropped; compared numerically to the number after
"####" in the reference.

Per-problem results go to ``bench/results/gsm8k/<model>__<mode>.jsonl`` as they finish; a rerun
skips problems already there (resume). ``bench/results/gsm8k.json`` summarises every file present.

    .venv/bin/python bench/gsm8k.py [--quick] [--models qwen2.5-coder-0.5b ...] [--modes chat auto code]
                                    [--limit 100] [--agent-limit 50]
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    BENCH_DATA,
    RESULTS,
    append_jsonl,
    fake_upstream,
    load_avg,
    machine_info,
    model_env,
    read_jsonl,
    running_server,
    table,
    warm_model,
    write_results,
)

DATA = BENCH_DATA / "gsm8k" / "test.jsonl"
PER_PROBLEM = RESULTS / "gsm8k"
INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
MODES = ["chat", "auto", "code", "react", "plan-execute"]
#: modes that use --limit (the comparison users see); the forced agent modes use --agent-limit
MAIN_MODES = ("chat", "auto")
REFERENCE = {  # published GSM8K accuracy of the *Instruct* (not Coder) models, Qwen2.5 report
    "qwen2.5-coder-0.5b": {"model": "Qwen2.5-0.5B-Instruct", "gsm8k": 49.6},
    "qwen2.5-coder-1.5b": {"model": "Qwen2.5-1.5B-Instruct", "gsm8k": 73.2},
}

_NUM = re.compile(r"-?\$?\s?\d[\d,]*(?:\.\d+)?")


def load_problems(limit: int, path: Path = DATA) -> list[dict[str, Any]]:
    import json

    out = []
    with open(path, encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            if i >= limit:
                break
            row = json.loads(line)
            out.append({"idx": i, "question": row["question"], "gold": gold_answer(row["answer"])})
    return out


def gold_answer(answer: str) -> float:
    return float(answer.split("####")[-1].strip().replace(",", ""))


def to_number(text: str) -> float | None:
    cleaned = text.replace("$", "").replace(",", "").replace(" ", "").rstrip(".")
    try:
        return float(cleaned)
    except ValueError:
        return None


_BOXED = re.compile(r"\\boxed\{((?:[^{}]|\{[^{}]*\})*)\}")


def extract_answer(reply: str) -> float | None:
    """The number in the last \\boxed{}, else after the last "answer is", else the last number in the reply."""
    text = reply or ""
    boxed = _BOXED.findall(text)
    if boxed:
        nums = _NUM.findall(boxed[-1].replace("\\$", "$"))
        if nums:
            return to_number(nums[-1])
    low = text.lower()
    pos = low.rfind("answer is")
    if pos >= 0:
        m = _NUM.search(text, pos)
        if m:
            return to_number(m.group(0))
    nums = _NUM.findall(text)
    return to_number(nums[-1]) if nums else None


def is_correct(pred: float | None, gold: float) -> bool:
    return pred is not None and abs(pred - gold) < 1e-6 * max(1.0, abs(gold))


def results_path(model: str, mode: str) -> Path:
    return PER_PROBLEM / f"{model}__{mode}.jsonl"


def model_id(base: str, mode: str) -> str:
    return base if mode == "auto" else f"{base}:{mode}"


def solve(client: httpx.Client, url: str, headers: dict[str, str], model_id: str, question: str, max_tokens: int) -> dict[str, Any]:
    body = {"model": model_id, "messages": [{"role": "user", "content": f"{question}\n{INSTRUCTION}"}],
            "temperature": 0, "max_tokens": max_tokens}
    t0 = time.perf_counter()
    r = client.post(url, headers=headers, json=body)
    seconds = time.perf_counter() - t0
    if r.status_code != 200:
        return {"error": f"HTTP {r.status_code}: {r.text[:300]}", "seconds": seconds}
    data = r.json()
    agent = data.get("agent") or {}
    steps = agent.get("steps") or []
    usage = data.get("usage") or {}
    return {
        "reply": data["choices"][0]["message"].get("content") or "",
        "agent_mode": agent.get("mode") or "chat",
        "seconds": round(seconds, 2),
        "llm_calls": agent.get("llm_calls") or 1,
        "prompt_tokens": usage.get("prompt_tokens", 0),
        "completion_tokens": usage.get("completion_tokens", 0),
        "tools": [s.get("tool") for s in steps if s.get("tool")],
        "n_steps": len(steps),
    }


def run_modes(server: Any, base: str, model_key: str, modes: list[str], limits: dict[str, int],
              problems: list[dict[str, Any]], max_tokens: int) -> None:
    """Every mode on problem 0, then on problem 1, ...; (problem, mode) pairs already recorded are skipped."""
    done = {m: {r["idx"] for r in read_jsonl(results_path(model_key, m))} for m in modes}
    todo = sum(1 for p in problems for m in modes if p["idx"] < limits[m] and p["idx"] not in done[m])
    print(f"{model_key} {modes}: {todo} to go", flush=True)
    url, headers = server.v1 + "/chat/completions", server.headers("alice")
    with httpx.Client(timeout=1800) as client:
        for p in problems:
            for mode in modes:
                if p["idx"] >= limits[mode] or p["idx"] in done[mode]:
                    continue
                res = solve(client, url, headers, model_id(base, mode), p["question"], max_tokens)
                pred = extract_answer(res.get("reply", "")) if "error" not in res else None
                rec = {"idx": p["idx"], "model": model_key, "mode": mode, "gold": p["gold"], "pred": pred,
                       "correct": is_correct(pred, p["gold"]), "load_avg": load_avg(), **res}
                rec["reply"] = rec.get("reply", "")[-1500:]
                append_jsonl(results_path(model_key, mode), rec)
                print(f"  #{p['idx']:3d} {mode:12s} {'ok ' if rec['correct'] else 'BAD'} gold={p['gold']:g} pred={pred} "
                      f"{rec['seconds']:.1f}s -> {rec.get('agent_mode')} calls={rec.get('llm_calls')} tools={rec.get('tools')}"
                      + (f" ERROR {rec['error']}" if "error" in rec else ""), flush=True)


def summarise(limit: int | None = None) -> list[dict[str, Any]]:
    rows = _summary_rows(limit)
    # modes usually have different N (agents are slower): also score every mode of a model on the
    # problems that all its modes answered, so the comparison is like for like
    by_model: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_model.setdefault(r["model"], []).append(r)
    for model, mrows in by_model.items():
        recs = {r["mode"]: {x["idx"]: x for x in read_jsonl(results_path(model, r["mode"]))} for r in mrows}
        common = set.intersection(*(set(v) for v in recs.values())) if recs else set()
        if limit is not None:
            common = {i for i in common if i < limit}
        for r in mrows:
            r["n_common"] = len(common)
            r["accuracy_common"] = round(100 * sum(recs[r["mode"]][i]["correct"] for i in common) / len(common), 1) if common else None
    return rows


def _summary_rows(limit: int | None = None) -> list[dict[str, Any]]:
    rows = []
    for path in sorted(PER_PROBLEM.glob("*.jsonl")):
        model, mode = path.stem.split("__")
        recs = read_jsonl(path)
        if limit is not None:
            recs = [r for r in recs if r["idx"] < limit]
        if not recs:
            continue
        n = len(recs)
        ok = [r for r in recs if "error" not in r]
        rows.append({
            "model": model, "mode": mode, "n": n, "accuracy": round(100 * sum(r["correct"] for r in recs) / n, 1),
            "errors": n - len(ok),
            "mean_llm_calls": round(sum(r.get("llm_calls", 0) for r in ok) / max(1, len(ok)), 2),
            "mean_prompt_tokens": round(sum(r.get("prompt_tokens", 0) for r in ok) / max(1, len(ok)), 1),
            "mean_completion_tokens": round(sum(r.get("completion_tokens", 0) for r in ok) / max(1, len(ok)), 1),
            "mean_seconds": round(sum(r["seconds"] for r in recs) / n, 2),
            "tool_use_rate": round(sum(1 for r in ok if r.get("tools")) / max(1, len(ok)), 2),
            "no_answer": sum(1 for r in recs if r.get("pred") is None),
            "routed_to": _routed(recs) if mode == "auto" else None,
            "reference": REFERENCE.get(model),
        })
    return rows


def _routed(recs: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in recs:
        key = r.get("agent_mode") or "?"
        out[key] = out.get(key, 0) + 1
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: smollm2-135m, 2 problems (1 per agent mode), separate files")
    p.add_argument("--models", nargs="+", default=["qwen2.5-coder-0.5b"])
    p.add_argument("--modes", nargs="+", default=["chat", "auto", "code"], choices=MODES)
    p.add_argument("--limit", type=int, default=100, help="problems for chat and auto")
    p.add_argument("--agent-limit", type=int, default=50, help="problems for the forced agent modes (code, react, plan-execute)")
    p.add_argument("--max-tokens", type=int, default=512)
    p.add_argument("--summary-only", action="store_true", help="only rebuild bench/results/gsm8k.json from the per-problem files")
    p.add_argument("--threads", type=int, default=None, help="EMBEDDED_N_THREADS (default: the server's, physical cores)")
    p.add_argument("--fake-upstream", action="store_true", help="no model: the fake OpenAI upstream (CI smoke)")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--data", type=Path, default=DATA, help="GSM8K jsonl (default: the vendored test split)")
    args = p.parse_args(argv)
    global PER_PROBLEM
    if args.quick:
        PER_PROBLEM = Path(args.out or RESULTS / "gsm8k_quick.json").with_suffix("")
        args.models, args.limit, args.agent_limit, args.max_tokens = ["smollm2-135m"], 2, 1, 32
    if args.fake_upstream:
        args.models = ["fake-upstream"]
    machine = machine_info()
    if not args.summary_only:
        for model_key in args.models:
            with contextlib.ExitStack() as stack:
                upstream = stack.enter_context(fake_upstream()) if args.fake_upstream else None
                server = stack.enter_context(running_server(
                    users=("alice",), admin=("alice",), wait_model=False, EMBEDDED_N_CTX="8192", RATE_LIMIT_RPM="100000",
                    RATE_LIMIT_TPM="1000000000", QUEUE_TIMEOUT_S="1800", FIRST_BYTE_TIMEOUT_S="1800", STREAM_IDLE_TIMEOUT_S="600",
                    **({"EMBEDDED_N_THREADS": str(args.threads)} if args.threads else {}), **model_env(model_key, upstream),
                ))
                base = server.base_model()
                warm_model(server, base + ":chat", "alice")
                limits = {m: args.limit if m in MAIN_MODES else args.agent_limit for m in args.modes}
                run_modes(server, base, model_key, args.modes, limits, load_problems(max(limits.values()), args.data), args.max_tokens)
    rows = summarise()
    print()
    print(table(
        ["model", "mode", "N", "accuracy %", "common N", "acc. on common %", "mean LLM calls", "mean prompt tok", "mean completion tok", "s/problem", "tool use", "errors", "published (Instruct)"],
        [[r["model"], r["mode"], r["n"], r["accuracy"], r["n_common"], r["accuracy_common"], r["mean_llm_calls"], r["mean_prompt_tokens"], r["mean_completion_tokens"],
          r["mean_seconds"], r["tool_use_rate"], r["errors"], (r["reference"] or {}).get("gsm8k")] for r in rows], 1,
    ))
    payload = {"benchmark": "gsm8k", "quick": args.quick, "prompt": "{question}\n" + INSTRUCTION, "shots": 0,
               "temperature": 0, "max_tokens": args.max_tokens, "threads": args.threads, "extraction": "number in the last \\boxed{}, else after the last 'answer is', else the last number",
               "reference_note": "published numbers are for Qwen2.5-*-Instruct, not the Coder models measured here",
               "summary": rows, "per_problem_dir": str(PER_PROBLEM.relative_to(RESULTS.parent.parent)) if PER_PROBLEM.is_relative_to(RESULTS.parent.parent) else str(PER_PROBLEM),
               "machine": machine}
    path = write_results("gsm8k", payload, args.out if args.out else (RESULTS / "gsm8k_quick.json" if args.quick else None))
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
