#!/usr/bin/env python3
"""Router accuracy: the labelled queries of bench/data/router_set.jsonl through backend.agents.router.

Each query has a label (chat / code / react / plan_execute) and a split: ``tune`` (the rules were
tuned on these) or ``heldout`` (written before tuning, never tuned on). Scores are reported for
each split separately and for both together.

Two configurations:

* ``heuristics`` — keyword rules only (``route(query, use_llm=False)``), no model;
* ``heuristics+llm`` — the production default: the rules, and one JSON-constrained call to the
  embedded model when the rules are unsure (skipped when llama-cpp-python or the model is missing,
  or with ``--no-llm``).

Per class precision / recall / F1, accuracy, confusion matrix, and the misrouted queries.

    .venv/bin/python bench/router_accuracy.py [--quick] [--no-llm] [--model qwen2.5-coder-0.5b]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import MODELS_DIR, REPO, machine_info, table, write_results  # noqa: E402

DATA = REPO / "bench" / "data" / "router_set.jsonl"
CLASSES = ["chat", "code", "react", "plan_execute"]
SPLITS = ["tune", "heldout"]


def load_queries(path: Path = DATA) -> list[dict[str, str]]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for r in rows:
        if r["label"] not in CLASSES or r["split"] not in SPLITS:
            raise ValueError(f"bad label/split {r['label']!r}/{r['split']!r} in {path}")
    return rows


def scores(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """pairs: (expected, predicted)."""
    confusion = {e: {p: 0 for p in CLASSES} for e in CLASSES}
    for e, p in pairs:
        confusion[e][p] += 1
    per_class: dict[str, dict[str, float | int]] = {}
    for c in CLASSES:
        tp = confusion[c][c]
        predicted = sum(confusion[e][c] for e in CLASSES)
        actual = sum(confusion[c].values())
        prec = tp / predicted if predicted else 0.0
        rec = tp / actual if actual else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        per_class[c] = {"precision": round(prec, 3), "recall": round(rec, 3), "f1": round(f1, 3), "support": actual}
    acc = sum(confusion[c][c] for c in CLASSES) / len(pairs) if pairs else 0.0
    macro_f1 = sum(float(per_class[c]["f1"]) for c in CLASSES) / len(CLASSES)
    return {"accuracy": round(acc, 3), "macro_f1": round(macro_f1, 3), "per_class": per_class, "confusion": confusion}


async def run_config(queries: list[dict[str, str]], provider: Any | None) -> dict[str, Any]:
    from backend.agents.router import heuristic_route, route

    rows = []
    t0 = time.perf_counter()
    for q in queries:
        t = time.perf_counter()
        decision = await route(q["text"], provider, use_llm=provider is not None)
        _, sure = heuristic_route(q["text"])
        rows.append({
            "query": q["text"], "expected": q["label"], "split": q["split"], "predicted": decision.mode,
            "source": decision.source, "heuristic_sure": sure, "reason": decision.reason,
            "ms": round((time.perf_counter() - t) * 1000, 2),
        })
    elapsed = time.perf_counter() - t0
    out = scores([(r["expected"], r["predicted"]) for r in rows])
    out["splits"] = {sp: scores([(r["expected"], r["predicted"]) for r in rows if r["split"] == sp]) for sp in SPLITS}
    out["llm_calls"] = sum(1 for r in rows if not r["heuristic_sure"]) if provider is not None else 0
    out["mean_ms"] = round(elapsed / len(rows) * 1000, 2)
    out["rows"] = rows
    return out


async def make_provider(model: str) -> Any | None:
    if importlib.util.find_spec("llama_cpp") is None:
        print("llama-cpp-python is not installed: skipping the LLM-fallback configuration")
        return None
    from backend.llm.embedded import EmbeddedProvider
    from backend.settings import Settings

    settings = Settings(_env_file=None, models_dir=MODELS_DIR, embedded_model=model, embedded_n_ctx=2048)  # type: ignore[arg-type]
    provider = EmbeddedProvider(settings)
    try:
        await provider.start()
    except Exception as exc:  # noqa: BLE001 - a missing model skips the configuration with the reason
        print(f"the embedded model could not be loaded ({exc}): skipping the LLM-fallback configuration")
        return None
    return provider


def print_config(name: str, res: dict[str, Any]) -> None:
    print(f"\n## {name}: accuracy {res['accuracy']:.3f}, macro-F1 {res['macro_f1']:.3f}, "
          f"LLM calls {res['llm_calls']}, {res['mean_ms']:.1f} ms/query")
    head = ["split", "N", "accuracy", *(f"{c} recall" for c in CLASSES), *(f"{c} precision" for c in CLASSES)]
    body = []
    for sp, sc in [*res["splits"].items(), ("all", res)]:
        n = sum(int(sc["per_class"][c]["support"]) for c in CLASSES)
        body.append([sp, n, sc["accuracy"], *(f"{sc['per_class'][c]['recall']:.3f} ({sc['per_class'][c]['support']})" for c in CLASSES),
                     *(sc["per_class"][c]["precision"] for c in CLASSES)])
    print(table(head, body, 3))
    print("\nconfusion (rows = expected, columns = predicted)")
    print(table(["expected \\ predicted", *CLASSES], [[e, *(res["confusion"][e][p] for p in CLASSES)] for e in CLASSES]))
    wrong = [r for r in res["rows"] if r["expected"] != r["predicted"]]
    if wrong:
        print("\nmisrouted:")
        for r in wrong:
            print(f"  [{r['split']}] [{r['expected']} -> {r['predicted']} via {r['source']}] {r['query']}")


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    queries = load_queries()
    if args.quick:
        queries = queries[::5]
    configs: dict[str, Any] = {"heuristics": await run_config(queries, None)}
    print_config("heuristics", configs["heuristics"])
    if not args.no_llm:
        provider = await make_provider(args.model)
        if provider is not None:
            try:
                configs["heuristics+llm"] = await run_config(queries, provider)
                configs["heuristics+llm"]["model"] = provider.model_id
            finally:
                await provider.aclose()
            print_config(f"heuristics+llm ({args.model})", configs["heuristics+llm"])
    return {"benchmark": "router_accuracy", "quick": args.quick, "n_queries": len(queries),
            "labels": {sp: {c: sum(1 for q in queries if q["label"] == c and q["split"] == sp) for c in CLASSES} for sp in SPLITS}, "configs": configs}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="every 5th query, heuristics only unless --model given")
    p.add_argument("--no-llm", action="store_true", help="heuristics only")
    p.add_argument("--model", default="qwen2.5-coder-0.5b", help="embedded model for the LLM fallback")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    if args.quick and "--model" not in (argv if argv is not None else sys.argv):
        args.no_llm = True
    machine = machine_info()
    payload = asyncio.run(amain(args))
    payload["machine"] = machine
    path = write_results("router_accuracy", payload, args.out)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
