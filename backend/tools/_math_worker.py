"""math_calc's worker: builds a SymPy expression from a validated JSON tree and evaluates it.

Runs as its own process (inside the bubblewrap sandbox when available) with a time limit, so a
runaway computation is killed, not waited for. It never parses or evaluates Python source: the
parent (``backend.tools.math_calc``) turns the user's text into a JSON tree of allow-listed node
kinds, and this file maps each node to a SymPy constructor — again through an allow-list.

Usage: ``python -I -S _math_worker.py [extra sys.path entry ...] < tree.json``; prints one JSON line.
"""

from __future__ import annotations

import json
import sys

# ``typing`` is for the type checker only (mypy treats this name as true)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from types import ModuleType
    from typing import Any, Literal, NotRequired, TypeAlias, TypedDict

    #: a JSON tree node from ``math_calc``: ``[kind, *operands]``
    Node: TypeAlias = list[Any]

    class Answer(TypedDict):
        ok: Literal[True]
        kind: str  # "value", "solutions" or "check"
        result: str
        numeric: NotRequired[str]  # a value's decimal approximation, when it differs from ``result``

    class Failure(TypedDict):
        ok: Literal[False]
        error: str


def main() -> None:
    for extra in sys.argv[1:]:
        sys.path.insert(0, extra)
    request = json.loads(sys.stdin.read())
    result: Answer | Failure
    try:
        result = evaluate(request)
    except Exception as exc:  # noqa: BLE001 - report, never crash with a traceback
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
    sys.stdout.write(json.dumps(result))


def evaluate(request: Mapping[str, Any]) -> Answer:
    import sympy as sp

    functions = {
        "sin": sp.sin, "cos": sp.cos, "tan": sp.tan, "cot": sp.cot, "sec": sp.sec, "csc": sp.csc,
        "asin": sp.asin, "acos": sp.acos, "atan": sp.atan, "atan2": sp.atan2,
        "sinh": sp.sinh, "cosh": sp.cosh, "tanh": sp.tanh, "asinh": sp.asinh, "acosh": sp.acosh, "atanh": sp.atanh,
        "exp": sp.exp, "log": sp.log, "ln": sp.log, "sqrt": sp.sqrt, "cbrt": sp.cbrt, "root": sp.root,
        "Abs": sp.Abs, "abs": sp.Abs, "sign": sp.sign, "floor": sp.floor, "ceiling": sp.ceiling, "ceil": sp.ceiling,
        "factorial": sp.factorial, "binomial": sp.binomial, "gamma": sp.gamma, "gcd": sp.gcd, "lcm": sp.lcm,
        "isprime": sp.isprime, "factorint": sp.factorint, "Min": sp.Min, "Max": sp.Max, "min": sp.Min, "max": sp.Max,
        "re": sp.re, "im": sp.im, "conjugate": sp.conjugate, "arg": sp.arg, "Rational": sp.Rational,
        "diff": sp.diff, "integrate": sp.integrate, "limit": sp.limit, "series": sp.series,
        "summation": sp.summation, "product": sp.product,
        "solve": sp.solve, "simplify": sp.simplify, "expand": sp.expand, "factor": sp.factor,
        "together": sp.together, "apart": sp.apart, "cancel": sp.cancel, "trigsimp": sp.trigsimp,
        "nsimplify": sp.nsimplify, "N": sp.N, "evalf": sp.N, "Eq": sp.Eq,
    }
    constants = {"pi": sp.pi, "E": sp.E, "e": sp.E, "I": sp.I, "i": sp.I, "oo": sp.oo, "inf": sp.oo, "infinity": sp.oo}
    symbols: dict[str, Any] = {}  # name -> sympy.Symbol

    def sym(name: str) -> Any:
        if name not in symbols:
            symbols[name] = sp.Symbol(name)
        return symbols[name]

    def build(node: Node) -> Any:  # a SymPy object, or a str/tuple/list of them
        kind = node[0]
        if kind == "int":
            return sp.Integer(int(node[1]))
        if kind == "float":
            return sp.Float(node[1])
        if kind == "sym":
            return sym(node[1])
        if kind == "const":
            return constants[node[1]]
        if kind == "str":
            return str(node[1])
        if kind in ("add", "sub", "mul", "div", "pow", "mod"):
            a, b = build(node[1]), build(node[2])
            if kind == "add":
                return a + b
            if kind == "sub":
                return a - b
            if kind == "mul":
                return a * b
            if kind == "div":
                return a / b
            if kind == "pow":
                return a ** b
            return sp.Mod(a, b)
        if kind == "neg":
            return -build(node[1])
        if kind == "pos":
            return build(node[1])
        if kind in ("eq", "ne", "lt", "le", "gt", "ge"):
            a, b = build(node[1]), build(node[2])
            return {"eq": sp.Eq, "ne": sp.Ne, "lt": sp.Lt, "le": sp.Le, "gt": sp.Gt, "ge": sp.Ge}[kind](a, b)
        if kind in ("tuple", "list"):
            items = [build(n) for n in node[1]]
            return tuple(items) if kind == "tuple" else items
        if kind == "call":
            func = functions[node[1]]
            args = [build(n) for n in node[2]]
            kwargs = {k: build(v) for k, v in node[3].items()}
            return func(*args, **kwargs)
        raise ValueError(f"unsupported node {kind!r}")

    if request.get("equation"):
        lhs, rhs = build(request["lhs"]), build(request["rhs"])
        eq = sp.Eq(lhs, rhs)
        unknowns = sorted(eq.free_symbols, key=lambda s: s.name)
        if not unknowns:
            return {"ok": True, "result": "true" if bool(sp.simplify(lhs - rhs) == 0) else "false", "kind": "check"}
        solutions = sp.solve(eq, unknowns[0] if len(unknowns) == 1 else unknowns, dict=True)
        return {"ok": True, "kind": "solutions", "result": format_solutions(sp, solutions, unknowns)}
    value = build(request["tree"])
    out: Answer = {"ok": True, "kind": "value", "result": to_text(value)}
    numeric = numeric_text(sp, value)
    if numeric and numeric != out["result"]:
        out["numeric"] = numeric
    return out


def to_text(value: object) -> str:
    if isinstance(value, list | tuple):
        return "[" + ", ".join(to_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{to_text(k)}: {to_text(v)}" for k, v in value.items()) + "}"
    return str(value)


def numeric_text(sp: ModuleType, value: object) -> str | None:
    try:
        if isinstance(value, sp.Basic) and value.is_number and not value.is_Integer:
            approx = sp.N(value, 15)
            if approx.is_Float:  # 397.800000000000 -> 397.8, 1.50000000000000e-20 -> 1.5e-20
                mantissa, e, exponent = str(approx).partition("e")
                if "." in mantissa:
                    mantissa = mantissa.rstrip("0").rstrip(".")
                return mantissa + e + exponent
            if approx.is_Number or approx.is_number:
                return str(approx)
    except Exception:  # noqa: BLE001 - a numeric view is optional
        return None
    return None


def format_solutions(sp: ModuleType, solutions: list[dict[Any, Any]], unknowns: list[Any]) -> str:
    if not solutions:
        return "no solution"
    parts: list[str] = []
    for sol in solutions:
        pieces: list[str] = []
        for var in unknowns:
            if var in sol:
                pieces.append(f"{var} = {sol[var]}")
        parts.append(", ".join(pieces) if pieces else "any value")
    return "; ".join(parts)


if __name__ == "__main__":
    main()
