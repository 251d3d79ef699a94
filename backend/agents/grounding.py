"""Exact results reach the answer by construction.

When deterministic tools (math, code, SQL, data analysis) produced results, the model's drafted
answer is checked against them before anyone sees it:

* every number in the draft must be *grounded*: equal to a number in the question, the
  conversation or a tool output (thousands separators ignored), or a correct rounding of one;
* every short deterministic result must be *stated*: its text (whitespace/format-insensitive) or,
  for plain numeric results, each of its numbers appears in the draft.

A draft that passes is the answer unchanged. Otherwise the answer is composed by the server:
the draft's sentences whose numbers all come from the tool outputs themselves, followed by each
unstated result verbatim. So a number the model restated differently cannot reach the user.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

#: results longer than this (tables, stat dumps) are not required verbatim, only grounded
STATED_MAX_CHARS = 300
STATED_MAX_LINES = 4

_NUMBER_RE = re.compile(r"(?<![\w.])[-−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w])")
# a variable next to an operator or a function call: a symbolic result that must match as text
_SYMBOLIC_RE = re.compile(r"[A-Za-z_]\w*\s*(?:\*\*|[*^/(])|[*^/]\s*[A-Za-z_]")
_SENTENCE_RE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\"'*`-])|\n+")


@dataclass(frozen=True)
class Observed:
    """One successful tool result the answer may rely on."""

    tool: str
    output: str
    arguments: Any = None
    #: the tool's ``Tool.deterministic``; None: looked up in the registry by name
    exact: bool | None = None

    @property
    def deterministic(self) -> bool:
        if self.exact is not None:
            return self.exact
        return self.tool in deterministic_tools()


def deterministic_tools() -> frozenset[str]:
    """The registry tools whose output is a computed fact (``Tool.deterministic``)."""
    from backend.tools.registry import all_tools

    return frozenset(name for name, t in all_tools().items() if t.deterministic)


def __getattr__(name: str) -> object:
    if name == "DETERMINISTIC_TOOLS":  # the registry's deterministic tools, read when asked for
        return deterministic_tools()
    raise AttributeError(name)


def _value(raw: str) -> Decimal | None:
    try:
        return Decimal(raw.replace(",", "").replace("−", "-"))
    except InvalidOperation:
        return None


def numbers(text: str) -> list[Decimal]:
    out = []
    for m in _NUMBER_RE.finditer(text or ""):
        v = _value(m.group(0))
        if v is not None and v.is_finite():
            out.append(v)
    return out


def _decimals(v: Decimal) -> int:
    exp = v.as_tuple().exponent
    return -exp if isinstance(exp, int) and exp < 0 else 0


def _matches(n: Decimal, allowed: Decimal) -> bool:
    """Equal, or a correct rounding of a non-integer ``allowed`` (7.0711 -> 7.07 or 7, not 8)."""
    if n == allowed:
        return True
    if allowed == allowed.to_integral_value():
        return False
    k = _decimals(n)
    return abs(n - allowed) <= Decimal(5) * Decimal(10) ** -(k + 1) + Decimal("1e-12")


def grounded(n: Decimal, pool: list[Decimal]) -> bool:
    return any(_matches(n, a) for a in pool)


def _compact(text: str) -> str:
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)
    return re.sub(r"[\s`\\$]+", "", text).lower().rstrip(".")


def is_stated(result: str, draft: str, given: list[Decimal] | None = None) -> bool:
    """Does the draft state this result exactly (format-insensitive)?

    For a plain (non-symbolic) result it is enough that its numbers appear, leaving out those the
    user gave (``given``): "The sum of the primes below 100 is 1060" is stated by "It is 1060".
    """
    out = result.strip()
    if not out or len(out) > STATED_MAX_CHARS or out.count("\n") >= STATED_MAX_LINES:
        return True  # a long result is not required verbatim; its numbers are still grounded
    if _compact(out) in _compact(draft):
        return True
    values = numbers(out)
    if not values or _SYMBOLIC_RE.search(out):
        return False
    new = [v for v in values if v not in (given or [])] or values
    in_draft = numbers(draft)
    return all(any(d == v for d in in_draft) for v in new)


def label(o: Observed) -> str:
    """A result as the server states it: what was computed and its exact output."""
    out = o.output.strip()
    args = o.arguments if isinstance(o.arguments, dict) else {}
    multi = "\n" in out
    if o.tool == "math_calc" and isinstance(args.get("expression"), str) and not multi:
        return f"{args['expression'].strip()} = {out}"
    what = {
        "python_code": "The program printed",
        "sql_query": "The query returned",
        "data_analysis": "The analysis gave",
        "math_calc": "The calculation gave",
    }.get(o.tool, f"{o.tool} returned")
    return f"{what}:\n```\n{out}\n```" if multi else f"{what}: {out}"


@dataclass
class Grounding:
    answer: str
    changed: bool  # the server composed the answer (the draft miscopied or left out a result)
    problems: list[str]


def ground_answer(draft: str, context_texts: list[str], observed: list[Observed]) -> Grounding:
    """The answer to show for ``draft``; see the module docstring. ``context_texts``: the user's words."""
    exact = [o for o in observed if o.deterministic and o.output.strip()]
    if not exact:
        return Grounding(draft, False, [])
    from_tools = [v for o in observed for v in numbers(o.output)]
    given = [v for t in context_texts for v in numbers(t)]
    pool = from_tools + given
    problems = [f"{n} is not in any result" for n in numbers(draft) if not grounded(n, pool)]
    missing = [o for o in exact if not is_stated(o.output, draft, given)]
    problems += [f"the {o.tool} result was not stated exactly" for o in missing]
    if not problems:
        return Grounding(draft, False, [])
    # compose: keep only sentences whose every number comes from a tool output, then the results
    kept = [
        s.strip()
        for s in _SENTENCE_RE.split(draft.strip())
        if s.strip() and all(grounded(n, from_tools) for n in numbers(s))
    ]
    parts = [" ".join(kept)] if kept else []
    stated_text = " ".join(kept)
    parts += [label(o) for o in exact if not is_stated(o.output, stated_text, given)]
    return Grounding("\n\n".join(p for p in parts if p).strip(), True, problems)
