#!/usr/bin/env python3
"""Agent task suite: verifiable tasks of the kinds users bring, through the plain OpenAI SDK.

Tasks: ``bench/data/agent_tasks.jsonl`` — computation, number theory, dates, strings, statistics,
word problems, SQL over ``bench/data/shop.sqlite`` (built by ``bench/data/make_shop_db.py``),
questions about the documents in ``bench/data/docs/`` (uploaded for the benchmark user first),
Wikipedia and weather against the recorded responses of ``tests/fixtures/recordings/`` (served by
``tests/fixtures/replay_server.py``), and two- and three-part questions. Each task has a checker
(``number``: some number in the answer equals the value within ``tol``; ``text``: one of the
accepted strings appears, compared on lower-cased words; ``all``: every part holds) and a split:
``tune`` (prompts and rules may be tuned on it) or ``heldout`` (never tuned on).

Every task runs in each mode — the bare model id (auto: the router decides), ``:chat``, ``:code``,
``:react``, ``:plan-execute`` — on the real server (``run_backend.py``, fresh data dir, the real
embedded model), temperature 0, one user message. Modes run task by task (all modes of a task, then
the next task), so a partial run still compares the modes on the same tasks.

Per-task results go to ``bench/results/agent_tasks/<model>__<mode>.jsonl`` as they finish; a rerun
skips what is there (resume). ``bench/results/agent_tasks.json`` has accuracy and median / p90
seconds per mode and split, on the tasks every mode answered.

    .venv/bin/python bench/agent_tasks.py [--modes auto chat code react plan-execute] [--split heldout]
                                          [--limit N] [--models qwen2.5-coder-0.5b] [--summary-only]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    REPO,
    RESULTS,
    append_jsonl,
    fake_upstream,
    load_avg,
    machine_info,
    median,
    model_env,
    pct,
    read_jsonl,
    running_server,
    table,
    warm_model,
    write_results,
)

DATA = REPO / "bench" / "data"
TASKS = DATA / "agent_tasks.jsonl"
DOCS = DATA / "docs"
SHOP_DB = DATA / "shop.sqlite"
PER_TASK = RESULTS / "agent_tasks"
MODES = ["auto", "chat", "code", "react", "plan-execute"]
SPLITS = ["tune", "heldout"]

_NUMBER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?(?:e[+-]?\d+)?", re.IGNORECASE)


# ----------------------------------------------------------------------------- tasks and checks
def load_tasks(path: Path = TASKS) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for r in rows:
        if r["split"] not in SPLITS:
            raise ValueError(f"task {r['id']}: bad split {r['split']!r}")
    return rows


def numbers_in(text: str) -> list[float]:
    out = []
    for m in _NUMBER.finditer(text or ""):
        raw = m.group(0)
        grouped = "," not in raw or re.fullmatch(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?", raw)
        parts = [raw.replace(",", "")] if grouped else raw.split(",")  # "3,9,1": separate numbers
        for p in parts:
            with contextlib.suppress(ValueError):
                out.append(float(p))
    return out


def _words(text: str) -> str:
    # a Python literal's base prefix is notation, not part of the value: "0xbeef" says "beef"
    text = re.sub(r"\b0[xbo]([0-9a-f]+)\b", r"\1", text.lower())
    return " ".join(re.sub(r"[^0-9a-z]+", " ", text).split())


def check(answer: str, spec: dict[str, Any]) -> bool:
    """Whether ``answer`` satisfies the checker ``spec`` (see the module docstring)."""
    kind = spec["type"]
    if kind == "number":
        value, tol = float(spec["value"]), float(spec.get("tol", 1e-6))
        return any(abs(x - value) <= max(tol, 1e-9 * abs(value)) for x in numbers_in(answer))
    if kind == "text":
        if spec.get("case_sensitive"):
            flat = " ".join((answer or "").split())
            return any(" ".join(a.split()) in flat for a in spec["any"])
        words = f" {_words(answer or '')} "
        return any(f" {_words(a)} " in words for a in spec["any"])
    if kind == "all":
        return all(check(answer, part) for part in spec["parts"])
    raise ValueError(f"unknown checker {kind!r}")


def task_check(task: dict[str, Any]) -> dict[str, Any]:
    spec = dict(task["check"])
    if task.get("case_sensitive"):
        spec["case_sensitive"] = True
    return spec


# ----------------------------------------------------------------------------- running
def results_path(model: str, mode: str) -> Path:
    return PER_TASK / f"{model}__{mode}.jsonl"


def model_id(base: str, mode: str) -> str:
    return base if mode == "auto" else f"{base}:{mode}"


def upload_docs(server: Any, user: str) -> list[str]:
    files = [p for p in sorted(DOCS.iterdir()) if p.is_file() and p.name != "README.md"]
    payload = [("files", (p.name, p.read_bytes(), "text/markdown" if p.suffix == ".md" else "text/plain")) for p in files]
    r = httpx.post(server.base_url + "/api/files/upload", headers=server.headers(user), files=payload, timeout=900)
    r.raise_for_status()
    entries = r.json()["data"]
    failed = [e for e in entries if e.get("status") == "failed"]
    if failed:
        raise RuntimeError(f"document upload failed: {failed}")
    return [e.get("id") or e.get("file_id") or e.get("filename") for e in entries]


def ask(client: Any, model: str, question: str, max_tokens: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        resp = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": question}], temperature=0, max_tokens=max_tokens
        )
    except Exception as exc:  # noqa: BLE001 - an error is a wrong answer with its reason recorded
        return {"error": f"{type(exc).__name__}: {str(exc)[:300]}", "seconds": round(time.perf_counter() - t0, 2), "reply": ""}
    seconds = time.perf_counter() - t0
    body = resp.model_dump()
    agent = body.get("agent") or {}
    steps = agent.get("steps") or []
    return {
        "reply": resp.choices[0].message.content or "",
        "seconds": round(seconds, 2),
        "agent_mode": agent.get("mode") or "chat",
        "agent_reason": agent.get("reason"),
        "agent_source": agent.get("source"),
        "llm_calls": int(agent["llm_calls"]) if "llm_calls" in agent else 1,  # plain chat: its one call
        "tools": [s.get("tool") for s in steps if s.get("tool")],
        "completion_tokens": (body.get("usage") or {}).get("completion_tokens", 0),
    }


def run(server: Any, base: str, model_key: str, modes: list[str], tasks: list[dict[str, Any]], max_tokens: int) -> None:
    import openai

    client = openai.OpenAI(base_url=server.v1, api_key=server.tokens["alice"], max_retries=0, timeout=1800)
    done = {mode: {r["id"] for r in read_jsonl(results_path(model_key, mode))} for mode in modes}
    todo = sum(1 for t in tasks for m in modes if t["id"] not in done[m])
    print(f"{model_key}: {len(tasks)} tasks x {len(modes)} modes, {todo} runs to go", flush=True)
    for task in tasks:
        for mode in modes:
            if task["id"] in done[mode]:
                continue
            res = ask(client, model_id(base, mode), task["question"], max_tokens)
            ok = "error" not in res and check(res["reply"], task_check(task))
            rec = {"id": task["id"], "split": task["split"], "category": task["category"], "model": model_key,
                   "mode": mode, "correct": ok, "load_avg": load_avg(), **res}
            rec["reply"] = rec["reply"][-1500:]
            append_jsonl(results_path(model_key, mode), rec)
            print(f"  {task['id']} {mode:12s} {'ok ' if ok else 'BAD'} {rec['seconds']:6.1f}s "
                  f"-> {rec.get('agent_mode', '-'):12s} tools={rec.get('tools')}"
                  + (f" ERROR {rec['error']}" if "error" in rec else ""), flush=True)


# ----------------------------------------------------------------------------- summary
def _stats(recs: list[dict[str, Any]]) -> dict[str, Any]:
    secs = [r["seconds"] for r in recs]
    n = len(recs)
    return {
        "n": n,
        "correct": sum(r["correct"] for r in recs),
        "accuracy": round(100 * sum(r["correct"] for r in recs) / n, 1) if n else None,
        "median_s": round(median(secs), 2) if secs else None,
        "p90_s": round(pct(secs, 90), 2) if secs else None,
        "errors": sum(1 for r in recs if "error" in r),
    }


def _rechecked(rec: dict[str, Any]) -> dict[str, Any]:
    """A stored result judged by today's checker (a checker fix applies to every stored reply alike)."""
    task = _tasks_by_id().get(rec["id"])
    if task is None or "error" in rec:
        return rec
    return {**rec, "correct": check(rec.get("reply") or "", task_check(task))}


@functools.lru_cache(maxsize=1)
def _tasks_by_id() -> dict[str, dict[str, Any]]:
    return {t["id"]: t for t in load_tasks()}


def summarise(model_key: str, modes: list[str] | None = None) -> dict[str, Any]:
    modes = modes or [m for m in MODES if results_path(model_key, m).exists()]
    recs = {m: {r["id"]: _rechecked(r) for r in read_jsonl(results_path(model_key, m))} for m in modes}
    recs = {m: v for m, v in recs.items() if v}
    if not recs:
        return {"model": model_key, "modes": {}}
    common = set.intersection(*(set(v) for v in recs.values()))
    out: dict[str, Any] = {"model": model_key, "n_common": len(common), "modes": {}}
    for mode, by_id in recs.items():
        rows = [by_id[i] for i in sorted(common)]
        entry: dict[str, Any] = {"all": _stats(rows)}
        for sp in SPLITS:
            entry[sp] = _stats([r for r in rows if r["split"] == sp])
        entry["multi_part"] = _stats([r for r in rows if r["category"] in ("two-part", "three-part")])
        cats: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            cats.setdefault(r["category"], []).append(r)
        entry["by_category"] = {c: _stats(v) for c, v in sorted(cats.items())}
        if mode == "auto":
            routed: dict[str, int] = {}
            for r in rows:
                routed[r.get("agent_mode") or "?"] = routed.get(r.get("agent_mode") or "?", 0) + 1
            entry["routed_to"] = routed
        entry["n_total"] = len(by_id)
        out["modes"][mode] = entry
    return out


def print_summary(summary: dict[str, Any]) -> None:
    modes = summary.get("modes") or {}
    if not modes:
        print("no results yet")
        return
    print(f"\n## {summary['model']}: {summary['n_common']} tasks answered in every mode\n")
    rows = []
    for mode, e in modes.items():
        for sp in [*SPLITS, "all"]:
            s = e[sp]
            rows.append([mode, sp, s["n"], s["correct"], s["accuracy"], s["median_s"], s["p90_s"], s["errors"]])
        m = e["multi_part"]
        rows.append([mode, "two/three-part", m["n"], m["correct"], m["accuracy"], m["median_s"], m["p90_s"], m["errors"]])
    print(table(["mode", "split", "N", "right", "accuracy %", "median s", "p90 s", "errors"], rows, 1))
    cats = sorted({c for e in modes.values() for c in e["by_category"]})
    print("\naccuracy % by category (N)")
    print(table(["category", *modes], [[c, *(
        f"{e['by_category'][c]['accuracy']} ({e['by_category'][c]['n']})" if c in e["by_category"] else "-" for e in modes.values()
    )] for c in cats]))
    if "auto" in modes:
        print(f"\nauto mode routed to: {modes['auto'].get('routed_to')}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["qwen2.5-coder-0.5b"])
    p.add_argument("--modes", nargs="+", default=MODES, choices=MODES)
    p.add_argument("--split", choices=[*SPLITS, "all"], default="all")
    p.add_argument("--limit", type=int, default=None, help="the first N tasks (after the split filter)")
    p.add_argument("--ids", nargs="+", default=None, help="only these task ids")
    p.add_argument("--max-tokens", type=int, default=512)
    p.add_argument("--router-llm", choices=["true", "false"], default="true",
                   help="ROUTER_USE_LLM for the server (the production default is true)")
    p.add_argument("--summary-only", action="store_true")
    p.add_argument("--fake-upstream", action="store_true", help="no model: the fake OpenAI upstream (CI smoke)")
    p.add_argument("--quick", action="store_true", help="smoke run: 3 tasks, separate result files")
    p.add_argument("--out", type=Path, default=None, help="summary file; per-task files in the folder of the same name")
    args = p.parse_args(argv)
    global PER_TASK
    if args.quick or args.fake_upstream or args.out:  # --out: its own per-task files (no resume from the main ones)
        PER_TASK = Path(args.out or RESULTS / "agent_tasks_quick.json").with_suffix("")
    if args.quick or args.fake_upstream:
        args.limit = args.limit or 3
    if args.fake_upstream:
        args.models = ["fake-upstream"]
    tasks = load_tasks()
    if args.split != "all":
        tasks = [t for t in tasks if t["split"] == args.split]
    if args.ids:
        tasks = [t for t in tasks if t["id"] in set(args.ids)]
    if args.limit:
        tasks = tasks[: args.limit]
    machine = machine_info()
    if not args.summary_only:
        from tests.fixtures.replay_server import ReplayServer

        for model_key in args.models:
            with contextlib.ExitStack() as stack:
                replay = stack.enter_context(ReplayServer())
                upstream = stack.enter_context(fake_upstream()) if args.fake_upstream else None
                server = stack.enter_context(running_server(
                    users=("alice",), admin=("alice",), wait_model=False, EMBEDDED_N_CTX="8192",
                    RATE_LIMIT_RPM="100000", RATE_LIMIT_TPM="1000000000", QUEUE_TIMEOUT_S="1800", FIRST_BYTE_TIMEOUT_S="1800", STREAM_IDLE_TIMEOUT_S="600",
                    ROUTER_USE_LLM=args.router_llm, SQL_DATABASE_PATH=str(SHOP_DB), SSRF_ALLOW_HOSTS="127.0.0.1",
                    WIKIPEDIA_API_URL=replay.url("/wikipedia/w/api.php"),
                    WEATHER_GEOCODING_URL=replay.url("/geocoding/v1/search"),
                    WEATHER_FORECAST_URL=replay.url("/forecast/v1/forecast"),
                    **model_env(model_key, upstream),
                ))
                base = server.base_model()
                ids = {m["id"] for m in httpx.get(server.v1 + "/models", headers=server.headers("alice"), timeout=30).json()["data"]}
                modes = [m for m in args.modes if model_id(base, m) in ids]
                if len(modes) < len(args.modes):
                    print(f"this server does not offer {sorted(set(args.modes) - set(modes))}: skipped")
                upload_docs(server, "alice")
                warm_model(server, base + ":chat", "alice")
                run(server, base, model_key, modes, tasks, args.max_tokens)
    summaries = [summarise(m, args.modes) for m in args.models]
    for s in summaries:
        print_summary(s)
    payload = {"benchmark": "agent_tasks", "n_tasks": len(tasks), "split": args.split, "temperature": 0,
               "max_tokens": args.max_tokens, "router_use_llm": args.router_llm, "summaries": summaries,
               "per_task_dir": str(PER_TASK.relative_to(REPO)) if PER_TASK.is_relative_to(REPO) else str(PER_TASK),
               "machine": machine}
    path = write_results("agent_tasks", payload, args.out if args.out else (RESULTS / "agent_tasks_quick.json" if args.quick or args.fake_upstream else None))
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
