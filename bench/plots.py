#!/usr/bin/env python3
"""PNG charts from the benchmark JSONs (bench/results/*.json) into docs/plots/.

* ``overhead.png`` — decode and end-to-end tokens/s, llama-cpp-python direct vs through the server;
* ``gsm8k.png`` — GSM8K accuracy per mode and model (N in each label), published Instruct scores dashed;
* ``api_latency.png`` — p50/p95 latency direct vs through the server, and requests/s per client count;

Charts whose JSON is missing are skipped (said so on stdout).

    .venv/bin/python bench/plots.py [--results bench/results] [--out docs/plots]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO, RESULTS  # noqa: E402


def _load(results: Path, name: str) -> dict[str, Any] | None:
    path = results / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _machine_note(data: dict[str, Any]) -> str:
    m = data.get("machine") or {}
    load = m.get("load_avg_start") or []
    return f"{m.get('cpu', '?')}, {m.get('logical_cpus', '?')} CPUs, load avg {load[0] if load else '?'} at start"


def plot_overhead(data: dict[str, Any], out: Path) -> Path:
    plt = _plt()
    results = data["results"]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    labels, direct, server = [], [], []
    for r in results:
        s = r["summary"]
        for metric, dk, sk, key in (("decode (stream)", "direct_stream", "server_stream", "median_decode_tps"),
                                    ("end-to-end (non-stream)", "direct_nonstream", "server_nonstream", "median_e2e_tps")):
            labels.append(f"{r['model']}\n{metric}")
            direct.append(s[dk].get(key) or 0)
            server.append(s[sk].get(key) or 0)
    x = range(len(labels))
    w = 0.38
    b1 = ax.bar([i - w / 2 for i in x], direct, w, label="llama-cpp-python direct")
    b2 = ax.bar([i + w / 2 for i in x], server, w, label="through /v1/chat/completions")
    ax.bar_label(b1, fmt="%.1f", fontsize=8)
    ax.bar_label(b2, fmt="%.1f", fontsize=8)
    ax.set_xticks(list(x), labels, fontsize=8)
    ax.set_ylabel("tokens / s (median)")
    ax.set_title(f"Serving overhead, {results[0]['max_tokens']} tokens, temperature 0")
    ax.legend(fontsize=8)
    fig.text(0.01, 0.01, _machine_note(data), fontsize=7, color="grey")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    path = out / "overhead.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_gsm8k(data: dict[str, Any], out: Path) -> Path:
    plt = _plt()
    rows = data["summary"]
    models = sorted({r["model"] for r in rows})
    modes = [m for m in ("chat", "react", "plan-execute") if any(r["mode"] == m for r in rows)]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    w = 0.8 / max(1, len(modes))
    for j, mode in enumerate(modes):
        xs, ys, ns = [], [], []
        for i, model in enumerate(models):
            row = next((r for r in rows if r["model"] == model and r["mode"] == mode), None)
            if row:
                xs.append(i + (j - (len(modes) - 1) / 2) * w)
                ys.append(row["accuracy"])
                ns.append(row["n"])
        bars = ax.bar(xs, ys, w, label=mode)
        ax.bar_label(bars, labels=[f"{y:.0f}%\nN={n}" for y, n in zip(ys, ns, strict=True)], fontsize=7)
    for i, model in enumerate(models):
        ref = next((r.get("reference") for r in rows if r["model"] == model and r.get("reference")), None)
        if ref:
            ax.hlines(ref["gsm8k"], i - 0.45, i + 0.45, colors="black", linestyles="dashed", linewidth=1)
            ax.text(i + 0.45, ref["gsm8k"], f" {ref['model']}\n published {ref['gsm8k']}", fontsize=6, va="center")
    ax.set_xticks(range(len(models)), models)
    ax.set_ylim(0, 100)
    ax.set_ylabel("accuracy %")
    ax.set_title("GSM8K test (first N problems), zero-shot CoT, temperature 0")
    ax.legend(fontsize=8, loc="upper left")
    fig.text(0.01, 0.01, _machine_note(data), fontsize=7, color="grey")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    path = out / "gsm8k.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_api_latency(data: dict[str, Any], out: Path) -> Path:
    plt = _plt()
    res = data["results"]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 4))
    seq = res["sequential"]
    names = ["direct", "server"]
    x = range(2)
    b1 = a1.bar([i - 0.2 for i in x], [seq[n]["p50_ms"] for n in names], 0.4, label="p50")
    b2 = a1.bar([i + 0.2 for i in x], [seq[n]["p95_ms"] for n in names], 0.4, label="p95")
    a1.bar_label(b1, fmt="%.1f", fontsize=8)
    a1.bar_label(b2, fmt="%.1f", fontsize=8)
    a1.set_xticks(list(x), ["upstream direct", "through the server"])
    a1.set_ylabel("ms per request (sequential)")
    a1.set_title(f"added p50: {seq['added_p50_ms']:.1f} ms")
    a1.legend(fontsize=8)
    conc = sorted({r["concurrency"] for r in res["throughput"]})
    for name in names:
        ys = [next(r["rps"] for r in res["throughput"] if r["concurrency"] == c and r["path"] == name) for c in conc]
        a2.plot(conc, ys, marker="o", label=name)
    a2.set_xscale("log", base=2)
    a2.set_xticks(conc, [str(c) for c in conc])
    a2.set_xlabel("concurrent clients")
    a2.set_ylabel("requests / s")
    a2.set_title("throughput")
    a2.legend(fontsize=8)
    fig.text(0.01, 0.01, _machine_note(data), fontsize=7, color="grey")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    path = out / "api_latency.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


PLOTS = {"overhead": plot_overhead, "gsm8k": plot_gsm8k, "api_latency": plot_api_latency}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--out", type=Path, default=REPO / "docs" / "plots")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, fn in PLOTS.items():
        data = _load(args.results, name)
        if data is None:
            print(f"skip {name}: {args.results / (name + '.json')} not found")
            continue
        print(f"wrote {fn(data, args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
