#!/usr/bin/env python3
"""Fill-in-the-middle rates: does the middle the model writes make the code parse, with and without
``check_syntax="python"``?

Each task is a small Python function (written for this benchmark) with one line held out; the
prefix is everything before it, the suffix everything after. Every task goes to ``/v1/completions``
(``suffix``, greedy, ``max_tokens`` 64) twice: plain, and with ``check_syntax``. Reported per mode:
the rate at which ``ast.parse(prefix + middle + suffix)`` succeeds, the rate at which the middle
equals the held-out line (whitespace-stripped), empty middles, 422s, and for the checked mode the
mean attempts and how often the middle was trimmed.

    .venv/bin/python bench/fim_syntax.py [--quick] [--fake-upstream] [--model qwen2.5-coder-0.5b]
"""

from __future__ import annotations

import argparse
import ast
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import fake_upstream, machine_info, model_env, running_server, table, write_results  # noqa: E402

# (source, index of the held-out line)
TASKS: list[tuple[str, int]] = [
    ("def mean(xs):\n    total = 0\n    for x in xs:\n        total += x\n    return total / len(xs)\n", 3),
    ("def is_even(n):\n    return n % 2 == 0\n", 1),
    ("def square(x):\n    return x * x\n", 1),
    ("def greet(name):\n    message = 'Hello, ' + name\n    return message\n", 1),
    ("def maximum(xs):\n    best = xs[0]\n    for x in xs[1:]:\n        if x > best:\n            best = x\n    return best\n", 4),
    ("def count_vowels(text):\n    count = 0\n    for ch in text.lower():\n        if ch in 'aeiou':\n            count += 1\n    return count\n", 4),
    ("def factorial(n):\n    result = 1\n    for i in range(2, n + 1):\n        result *= i\n    return result\n", 3),
    ("def reverse(s):\n    return s[::-1]\n", 1),
    ("def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n", 3),
    ("def clamp(x, lo, hi):\n    if x < lo:\n        return lo\n    if x > hi:\n        return hi\n    return x\n", 4),
    ("def total_price(items):\n    return sum(item['price'] * item['qty'] for item in items)\n", 1),
    ("def word_count(text):\n    words = text.split()\n    return len(words)\n", 1),
    ("def flatten(rows):\n    out = []\n    for row in rows:\n        out.extend(row)\n    return out\n", 3),
    ("def celsius_to_fahrenheit(c):\n    return c * 9 / 5 + 32\n", 1),
    ("def unique(xs):\n    seen = set()\n    out = []\n    for x in xs:\n        if x not in seen:\n            seen.add(x)\n            out.append(x)\n    return out\n", 6),
    ("def is_palindrome(s):\n    cleaned = s.replace(' ', '').lower()\n    return cleaned == cleaned[::-1]\n", 1),
]


def split(source: str, line: int) -> tuple[str, str, str]:
    lines = source.splitlines(keepends=True)
    return "".join(lines[:line]), lines[line].rstrip("\n"), "\n" + "".join(lines[line + 1 :])


def parses(code: str) -> bool:
    try:
        ast.parse(code)
    except SyntaxError:
        return False
    return True


def run_mode(client: httpx.Client, url: str, model: str, check: bool) -> list[dict[str, Any]]:
    out = []
    for source, line in TASKS:
        prefix, held_out, suffix = split(source, line)
        body: dict[str, Any] = {"model": model, "prompt": prefix, "suffix": suffix, "max_tokens": 64, "temperature": 0}
        if check:
            body["check_syntax"] = "python"
        t0 = time.perf_counter()
        r = client.post(url, json=body)
        dt = time.perf_counter() - t0
        if r.status_code == 422:
            out.append({"status": 422, "parses": False, "exact": False, "empty": False, "seconds": dt})
            continue
        r.raise_for_status()
        data = r.json()
        middle = data["choices"][0]["text"]
        entry = {"status": 200, "parses": parses(prefix + middle + suffix), "seconds": dt,
                 "exact": middle.strip() == held_out.strip(), "empty": not middle.strip(), "middle": middle}
        if check:
            entry |= {"attempts": data["syntax_check"][0]["attempts"], "trimmed": data["syntax_check"][0]["trimmed_chars"] > 0}
        out.append(entry)
    return out


def summary(name: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(rows)
    out = {"mode": name, "n": n, "parse_rate": sum(r["parses"] for r in rows) / n, "exact_rate": sum(r["exact"] for r in rows) / n,
           "empty_rate": sum(r["empty"] for r in rows) / n, "http_422": sum(r["status"] == 422 for r in rows),
           "mean_seconds": sum(r["seconds"] for r in rows) / n}
    ok = [r for r in rows if "attempts" in r]
    if ok:
        out["mean_attempts"] = sum(r["attempts"] for r in ok) / len(ok)
        out["trimmed_rate"] = sum(r["trimmed"] for r in ok) / len(ok)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the first 3 tasks")
    parser.add_argument("--fake-upstream", action="store_true", help="the fake OpenAI upstream instead of a model (smoke)")
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    global TASKS
    if args.quick:
        TASKS = TASKS[:3]
    info = machine_info()
    with fake_upstream() as upstream:
        env = model_env(args.model, upstream if args.fake_upstream else None)
        with running_server(**env) as server:
            model = server.base_model()
            with httpx.Client(timeout=600, headers=server.headers("alice")) as client:
                url = server.v1 + "/completions"
                plain = run_mode(client, url, model, check=False)
                checked = run_mode(client, url, model, check=True)
    rows = [summary("plain", plain), summary("check_syntax", checked)]
    print(f"Fill-in-the-middle on {len(TASKS)} held-out lines, {model}, greedy, max_tokens 64")
    print(table(["mode", "N", "parses", "exact line", "empty", "422", "attempts", "trimmed", "s/task"],
                [[r["mode"], r["n"], r["parse_rate"], r["exact_rate"], r["empty_rate"], r["http_422"],
                  r.get("mean_attempts", "-"), r.get("trimmed_rate", "-"), r["mean_seconds"]] for r in rows]))
    path = write_results("fim_syntax", {"machine": info, "model": model, "summary": rows,
                                        "plain": plain, "check_syntax": checked}, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
