"""The agent task suite's data is right: every gold answer is derived, not typed in.

Computation tasks carry the Python expression their value comes from, SQL tasks the query on the
shipped database, and document / Wikipedia / weather tasks have their answer in the shipped
document or the recorded response. The checkers accept the answer and reject a wrong one.
"""

from __future__ import annotations

import functools
import json
import math
import sqlite3
import statistics
from datetime import date, timedelta
from pathlib import Path

import pytest

from bench.agent_tasks import DOCS, SHOP_DB, SPLITS, check, load_tasks, numbers_in, task_check

REPO = Path(__file__).resolve().parents[2]
RECORDINGS = REPO / "tests" / "fixtures" / "recordings"
TASKS = load_tasks()


def _isprime(n: int) -> bool:
    return n > 1 and all(n % p for p in range(2, math.isqrt(n) + 1))


NS = {"math": math, "statistics": statistics, "date": date, "timedelta": timedelta, "functools": functools, "isprime": _isprime}


def test_the_suite_is_big_and_covers_every_kind_of_task():
    assert len(TASKS) >= 60
    assert len({t["id"] for t in TASKS}) == len(TASKS)
    assert {t["split"] for t in TASKS} == set(SPLITS)
    cats = {t["category"] for t in TASKS}
    assert {"arithmetic", "dates", "strings", "statistics", "sql", "documents", "wikipedia", "weather",
            "two-part", "three-part"} <= cats
    for sp in SPLITS:
        assert len([t for t in TASKS if t["split"] == sp]) >= 30


@pytest.mark.parametrize("task", [t for t in TASKS if "derive" in t], ids=lambda t: t["id"])
def test_computed_gold_answers_match_their_derivation(task):
    value = eval(task["derive"], dict(NS))  # noqa: S307 - our own data file, not user input
    spec = task_check(task)
    assert check(str(value), spec), (task["question"], value, spec)


@pytest.mark.parametrize("task", [t for t in TASKS if "derive_sql" in t], ids=lambda t: t["id"])
def test_sql_gold_answers_match_the_shipped_database(task):
    con = sqlite3.connect(f"file:{SHOP_DB}?mode=ro", uri=True)
    try:
        value = con.execute(task["derive_sql"]).fetchone()[0]
    finally:
        con.close()
    assert check(str(value), task_check(task)), (task["question"], value)


def test_the_shipped_database_is_what_its_script_builds(tmp_path):
    from bench.data.make_shop_db import build

    fresh = build(tmp_path / "shop.sqlite")

    def dump(path):
        con = sqlite3.connect(path)
        try:
            return list(con.iterdump())
        finally:
            con.close()

    assert dump(fresh) == dump(SHOP_DB)


def _corpus(need: str) -> str:
    if need == "documents":
        return "\n".join(p.read_text(encoding="utf-8") for p in DOCS.iterdir() if p.name != "README.md")
    if need == "wikipedia":
        return "\n".join(json.dumps(json.loads(p.read_text()), ensure_ascii=False) for p in (RECORDINGS / "wikipedia").glob("extract_*.json"))
    if need == "weather":
        return (RECORDINGS / "open_meteo" / "forecast_paris_daily.json").read_text()
    raise AssertionError(need)


@pytest.mark.parametrize("task", [t for t in TASKS if t["category"] in ("documents", "wikipedia", "weather")], ids=lambda t: t["id"])
def test_lookup_answers_are_in_the_shipped_sources(task):
    corpus = _corpus(task["needs"][0])
    spec = task_check(task)
    if spec["type"] == "number" and spec["value"] >= 1000:
        corpus = corpus.replace(",", "")  # "480,000 euros"
    assert check(corpus, spec), task["question"]


def test_checkers_accept_the_answer_and_reject_a_wrong_one():
    assert check("48 × 365 = 17,520.", {"type": "number", "value": 17520})
    assert not check("48 × 365 = 17,250.", {"type": "number", "value": 17520})
    assert check("About 413.0", {"type": "number", "value": 413})
    assert check("It is worth $6,579.65.", {"type": "number", "value": 6579.65, "tol": 0.006})
    assert not check("approximately 341.333", {"type": "number", "value": 7006652})
    assert numbers_in("3,9,1 and 1,234,567") == [3, 9, 1, 1234567]
    assert check("The product is the Noise Cancelling Headphones", {"type": "text", "any": ["Noise-Cancelling Headphones"]})
    assert not check("The Mechanical Keyboard", {"type": "text", "any": ["Noise-Cancelling Headphones"]})
    assert check("HELLO WORLD", {"type": "text", "any": ["HELLO WORLD"], "case_sensitive": True})
    assert not check("hello world", {"type": "text", "any": ["HELLO WORLD"], "case_sensitive": True})
    both = {"type": "all", "parts": [{"type": "number", "value": 94}, {"type": "number", "value": 42}]}
    assert check("Rain chance 94 %; gcd 42.", both) and not check("Rain chance 94 %.", both)
    # a base prefix is notation: 0xbeef and 0b1010 state the digits asked for, 0xbeefy does not
    assert check("48879 = 0xbeef", {"type": "text", "any": ["beef"]})
    assert check("0b1111101000", {"type": "text", "any": ["1111101000"]})
    assert not check("0xbeefy", {"type": "text", "any": ["beef"]})
    # a word inside another word does not count
    assert not check("Sundays", {"type": "text", "any": ["sunday"]})
