#!/usr/bin/env python3
"""Markdown tables of every result JSON in bench/results/ (for README.md), on stdout.

    .venv/bin/python bench/tables.py [--results bench/results]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import RESULTS, table  # noqa: E402


def _load(results: Path, name: str) -> dict[str, Any] | None:
    path = results / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def _load_note(data: dict[str, Any]) -> str:
    m = data.get("machine") or {}
    start, end = m.get("load_avg_start") or ["?"], m.get("load_avg_end") or ["?"]
    threads = m.get("bench_embedded_threads")
    return f"_load average {start[0]} → {end[0]}" + (f"; EMBEDDED_N_THREADS={threads}" if threads else "") + "_"


def overhead(d: dict[str, Any]) -> str:
    rows, ratios = [], []
    for r in d["results"]:
        s = r["summary"]
        for k in ("direct_stream", "server_stream", "direct_nonstream", "server_nonstream"):
            rows.append([r["model"], k.replace("_", " "), s[k].get("median_decode_tps"), s[k]["median_e2e_tps"], s[k].get("median_ttft_ms")])
        ratios.append([r["model"], r["threads"], r["max_tokens"], r["reps"], r["ratios"]["decode_tps_stream"], r["ratios"]["e2e_tps_nonstream"],
                       r["ratios"]["ttft_diff_ms"], r["identical_greedy_output"]])
    return "\n\n".join([
        table(["model", "path", "decode tok/s (median)", "end-to-end tok/s", "TTFT ms"], rows),
        table(["model", "threads", "max_tokens", "reps", "decode ratio server/direct", "e2e ratio (non-stream)", "TTFT diff ms", "same text"], ratios, 3),
        _load_note(d),
    ])


def api_latency(d: dict[str, Any]) -> str:
    res = d["results"]
    seq = res["sequential"]
    a = table(["path", "n", "p50 ms", "p95 ms"], [[k, seq[k]["n"], seq[k]["p50_ms"], seq[k]["p95_ms"]] for k in ("direct", "server")])
    b = table(["clients", "path", "req/s", "p50 ms", "p95 ms", "errors"],
              [[r["concurrency"], r["path"], r["rps"], r["p50_ms"], r["p95_ms"], r["errors"] or "-"] for r in res["throughput"]])
    return f"{a}\n\nAdded by the server: **p50 {seq['added_p50_ms']:.1f} ms**, p95 {seq['added_p95_ms']:.1f} ms.\n\n{b}\n\n{_load_note(d)}"


def concurrency(d: dict[str, Any]) -> str:
    u, g = d["uniform"], d["greedy"]
    a = table(["users", "requests", "ok", "errors", "completions/s", "wait p50 s", "wait p95 s", "worst user s"],
              [[u["users"], u["requests"], u["ok"], u["errors_by_status"] or "none", u["completions_per_s"], u["wait_p50_s"], u["wait_p95_s"],
                u["worst_user_latency_s"]]])
    b = table(["light users' wait p50 s", "light all done s", "greedy burst done s", "all done s", "completion order (G greedy, L light)"],
              [[g["light_wait_p50_s"], g["light_all_done_s"], g["greedy_last_done_s"], g.get("all_done_s"), g.get("completion_order", "-")]])
    return f"Model {d['model']}, max_tokens {d['max_tokens']}, streamed.\n\n{a}\n\n{b}\n\n{_load_note(d)}"


def gsm8k(d: dict[str, Any]) -> str:
    rows = [[r["model"], r["mode"], r["n"], r["accuracy"], r.get("n_common"), r.get("accuracy_common"), r["mean_llm_calls"], r["mean_prompt_tokens"], r["mean_completion_tokens"],
             r["mean_seconds"], r["tool_use_rate"], (r.get("reference") or {}).get("gsm8k", "-")] for r in d["summary"]]
    return table(["model", "mode", "N", "accuracy %", "common N", "acc. on common %", "LLM calls", "prompt tok", "completion tok", "s/problem", "tool use", "published*"], rows, 1)


def hotpotqa(d: dict[str, Any]) -> str:
    rows = [[r["model"], r["mode"], r["n"], r["em"], r["f1"], r["mean_llm_calls"], r["mean_tool_calls"], r["mean_seconds"]] for r in d["summary"]]
    return table(["model", "mode", "N", "EM %", "F1 %", "LLM calls", "tool calls", "s/question"], rows, 1)


def router(d: dict[str, Any]) -> str:
    out = []
    for name, c in d["configs"].items():
        classes = list(c["per_class"])
        splits = {**c.get("splits", {}), "all": c}
        rows = [[sp, sum(int(v["per_class"][k]["support"]) for k in classes), v["accuracy"],
                 *(f"{v['per_class'][k]['precision']:.2f} / {v['per_class'][k]['recall']:.2f}" for k in classes)]
                for sp, v in splits.items()]
        out.append(f"**{name}**: accuracy {c['accuracy']:.3f}, macro-F1 {c['macro_f1']:.3f}, LLM calls {c['llm_calls']}\n\n"
                   + table(["split", "N", "accuracy", *(f"{k} P / R" for k in classes)], rows, 3))
        conf = c["confusion"]
        out.append(table(["expected \\ routed", *conf], [[e, *conf[e].values()] for e in conf]))
    return "\n\n".join(out)


def agent_tasks(d: dict[str, Any]) -> str:
    out = []
    for s in d["summaries"]:
        rows = []
        for mode, e in (s.get("modes") or {}).items():
            for sp in ("tune", "heldout", "all", "multi_part"):
                v = e[sp]
                rows.append([mode, sp.replace("multi_part", "two/three-part"), v["n"], v["accuracy"], v["median_s"], v["p90_s"]])
        out.append(f"**{s['model']}** ({s.get('n_common', 0)} tasks answered in every mode)\n\n"
                   + table(["mode", "split", "N", "accuracy %", "median s", "p90 s"], rows, 1))
    return "\n\n".join(out) + f"\n\n{_load_note(d)}"


SECTIONS = {"overhead": overhead, "api_latency": api_latency, "concurrency": concurrency, "gsm8k": gsm8k,
            "hotpotqa": hotpotqa, "router_accuracy": router, "agent_tasks": agent_tasks}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    for name, fn in SECTIONS.items():
        data = _load(args.results, name)
        if data is not None:
            print(f"### {name}\n\n{fn(data)}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
