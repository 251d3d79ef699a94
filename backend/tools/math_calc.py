"""math_calc: exact math with SymPy, without ever evaluating the user's text as Python.

``sympify``/``parse_expr`` call ``eval``; we do not use them. The expression is parsed with Python's
``ast`` module, walked with an allow-list (numbers, symbols, allow-listed functions and constants,
arithmetic, comparisons, ``=`` for equations; no attributes, subscripts, lambdas, comprehensions or
strings), checked for size (length, node count, depth, digits, exponent magnitude), and turned into
a JSON tree. A separate, time-limited worker process (inside the bubblewrap sandbox when available)
rebuilds the expression from that tree with SymPy constructors and evaluates it.
"""

from __future__ import annotations

import ast
import json
import math
import re
import sys
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from backend.tools.base import ToolContext, ToolError, tool
from backend.tools.sandbox import SandboxLimits, run_limited, run_sandboxed, sandbox_available, sandbox_python

MAX_CHARS = 500
MAX_NODES = 300
MAX_DEPTH = 40
MAX_INT_DIGITS = 100
MAX_RESULT_DIGITS = 10_000  # refuse constant powers/factorials whose result would be larger
MAX_OUTPUT_CHARS = 4000

FUNCTIONS = frozenset(
    {
        "sin", "cos", "tan", "cot", "sec", "csc", "asin", "acos", "atan", "atan2",
        "sinh", "cosh", "tanh", "asinh", "acosh", "atanh",
        "exp", "log", "ln", "sqrt", "cbrt", "root", "Abs", "abs", "sign", "floor", "ceiling", "ceil",
        "factorial", "binomial", "gamma", "gcd", "lcm", "isprime", "factorint", "Min", "Max", "min", "max",
        "re", "im", "conjugate", "arg", "Rational",
        "diff", "integrate", "limit", "series", "summation", "product",
        "solve", "simplify", "expand", "factor", "together", "apart", "cancel", "trigsimp", "nsimplify",
        "N", "evalf", "Eq",
    }
)  # fmt: skip
CONSTANTS = frozenset({"pi", "E", "e", "I", "i", "oo", "inf", "infinity"})
KEYWORDS = {"dir": {"+", "-", "+-"}}
_SYMBOL = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,23}$")
_BINOPS = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div", ast.Pow: "pow", ast.Mod: "mod"}
_CMPOPS = {ast.Eq: "eq", ast.NotEq: "ne", ast.Lt: "lt", ast.LtE: "le", ast.Gt: "gt", ast.GtE: "ge"}
_WORKER = Path(__file__).with_name("_math_worker.py")


class _Translator:
    """AST -> JSON tree, refusing anything not explicitly allowed."""

    def __init__(self) -> None:
        self.nodes = 0

    def tree(self, node: ast.AST, depth: int = 0) -> list[Any]:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise ToolError(f"expression is too complex (more than {MAX_NODES} parts)")
        if depth > MAX_DEPTH:
            raise ToolError("expression is nested too deeply")
        if isinstance(node, ast.Constant):
            return self._constant(node.value)
        if isinstance(node, ast.Name):
            return self._name(node.id)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            left, right = self.tree(node.left, depth + 1), self.tree(node.right, depth + 1)
            out = [_BINOPS[type(node.op)], left, right]
            _check_magnitude(out)
            return out
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            return ["neg" if isinstance(node.op, ast.USub) else "pos", self.tree(node.operand, depth + 1)]
        if isinstance(node, ast.Compare):
            if len(node.ops) != 1 or type(node.ops[0]) not in _CMPOPS:
                raise ToolError("only a single comparison (==, <, <=, >, >=, !=) is supported")
            op = _CMPOPS[type(node.ops[0])]
            return [op, self.tree(node.left, depth + 1), self.tree(node.comparators[0], depth + 1)]
        if isinstance(node, ast.Call):
            return self._call(node, depth)
        if isinstance(node, ast.Tuple | ast.List):
            if len(node.elts) > 20:
                raise ToolError("too many items in a list")
            kind = "tuple" if isinstance(node, ast.Tuple) else "list"
            return [kind, [self.tree(e, depth + 1) for e in node.elts]]
        raise ToolError(f"{_describe(node)} is not allowed in math expressions")

    def _constant(self, value: object) -> list[Any]:
        if isinstance(value, bool) or value is None:
            raise ToolError("booleans and None are not allowed")
        if isinstance(value, int):
            digits = len(str(abs(value))) if abs(value) < 10**MAX_INT_DIGITS else MAX_INT_DIGITS + 1
            if digits > MAX_INT_DIGITS:
                raise ToolError(f"integer literals are limited to {MAX_INT_DIGITS} digits")
            return ["int", str(value)]
        if isinstance(value, float):
            if not math.isfinite(value):
                raise ToolError("number is not finite")
            return ["float", repr(value)]
        if isinstance(value, str):
            raise ToolError("strings are not allowed in math expressions")
        raise ToolError(f"literal of type {type(value).__name__} is not allowed")

    def _name(self, name: str) -> list[Any]:
        if name in CONSTANTS:
            return ["const", name]
        if name in FUNCTIONS:
            raise ToolError(f"{name} is a function; call it like {name}(...)")
        if not _SYMBOL.match(name):
            raise ToolError(f"name {name!r} is not allowed (symbols are letters, digits and _, starting with a letter)")
        return ["sym", name]

    def _call(self, node: ast.Call, depth: int) -> list[Any]:
        if not isinstance(node.func, ast.Name):
            raise ToolError(f"{_describe(node.func)} cannot be called; only functions like diff(...), sin(...)")
        name = node.func.id
        if name not in FUNCTIONS:
            raise ToolError(f"function {name!r} is not available; allowed: {', '.join(sorted(FUNCTIONS))}")
        if len(node.args) > 8:
            raise ToolError("too many arguments")
        args = []
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                raise ToolError("*args is not allowed")
            args.append(self.tree(arg, depth + 1))
        kwargs: dict[str, Any] = {}
        for kw in node.keywords:
            allowed = KEYWORDS.get(kw.arg or "")
            if not allowed or not isinstance(kw.value, ast.Constant) or kw.value.value not in allowed:
                raise ToolError(f"keyword argument {kw.arg!r} is not allowed (only dir='+' or dir='-')")
            kwargs[kw.arg] = ["str", kw.value.value]  # type: ignore[index]
        out = ["call", name, args, kwargs]
        if name == "factorial" and args and _value(args[0]) is not None and (_value(args[0]) or 0) > 3000:
            raise ToolError("factorial argument is too large (at most 3000)")
        return out


def _describe(node: ast.AST) -> str:
    names = {
        ast.Attribute: "attribute access", ast.Subscript: "indexing", ast.Lambda: "lambda",
        ast.ListComp: "a comprehension", ast.GeneratorExp: "a generator", ast.DictComp: "a comprehension",
        ast.SetComp: "a comprehension", ast.Dict: "a dict", ast.Set: "a set", ast.JoinedStr: "an f-string",
        ast.NamedExpr: "assignment", ast.IfExp: "if/else", ast.BoolOp: "and/or", ast.Await: "await",
        ast.Starred: "*args",
    }  # fmt: skip
    return names.get(type(node), type(node).__name__)


def _value(tree: list[Any]) -> float | None:
    """Approximate value of a purely numeric subtree (None if symbolic or too large)."""
    kind = tree[0]
    try:
        if kind == "int":
            return float(tree[1]) if len(tree[1]) < 300 else None
        if kind == "float":
            return float(tree[1])
        if kind == "neg":
            v = _value(tree[1])
            return -v if v is not None else None
        if kind == "pos":
            return _value(tree[1])
        if kind in ("add", "sub", "mul", "div"):
            a, b = _value(tree[1]), _value(tree[2])
            if a is None or b is None:
                return None
            r = {"add": a + b, "sub": a - b, "mul": a * b, "div": a / b if b else None}[kind]
            return r if r is None or math.isfinite(r) else None
        if kind == "pow":
            a, b = _value(tree[1]), _value(tree[2])
            if a is None or b is None:
                return None
            r = float(a) ** float(b)
            return r if isinstance(r, float) and math.isfinite(r) else None
    except (OverflowError, ZeroDivisionError, ValueError, TypeError):
        return None
    return None


def _log10_magnitude(tree: list[Any]) -> float | None:
    """log10(|value|) of a purely numeric subtree, or None if it contains symbols."""
    kind = tree[0]
    if kind in ("int", "float"):
        v = abs(float(tree[1])) if kind == "float" or len(tree[1]) < 300 else 10.0 ** 299
        return math.log10(v) if v > 0 else 0.0
    if kind == "const":
        return 1.0
    if kind in ("neg", "pos"):
        return _log10_magnitude(tree[1])
    if kind in ("add", "sub", "mul", "div", "mod"):
        a, b = _log10_magnitude(tree[1]), _log10_magnitude(tree[2])
        if a is None or b is None:
            return None
        return a + b if kind == "mul" else max(a, b) + 1
    if kind == "pow":
        base = _log10_magnitude(tree[1])
        if base is None:
            return None
        exponent = _value(tree[2])
        if exponent is None:
            if _log10_magnitude(tree[2]) is None:
                return None  # symbolic exponent
            raise ToolError(f"numbers that large are not supported (result over {MAX_RESULT_DIGITS} digits)")
        return max(base, 0.3) * abs(exponent)
    return None


def _check_magnitude(tree: list[Any]) -> None:
    if tree[0] != "pow":
        return
    magnitude = _log10_magnitude(tree)
    if magnitude is not None and magnitude > MAX_RESULT_DIGITS:
        raise ToolError(f"numbers that large are not supported (result over {MAX_RESULT_DIGITS} digits)")


_BARE_EQUALS = re.compile(r"(?<![<>=!])=(?!=)")


def parse_math(expression: str) -> dict[str, Any]:
    """Validate and translate; returns the worker request. Raises ToolError with a readable reason."""
    text = (expression or "").strip()
    if not text:
        raise ToolError("expression is empty")
    if len(text) > MAX_CHARS:
        raise ToolError(f"expression is too long (at most {MAX_CHARS} characters)")
    if "__" in text:
        raise ToolError("double underscores are not allowed")
    text = text.replace("^", "**").replace("\u2212", "-").replace("\u00d7", "*").replace("\u00f7", "/")
    parts = _split_equation(text)
    if len(parts) > 2:
        raise ToolError("an equation may contain only one '='")
    translator = _Translator()
    if len(parts) == 2:
        lhs, rhs = (_parse(p, translator) for p in parts)
        return {"equation": True, "lhs": lhs, "rhs": rhs}
    return {"tree": _parse(text, translator)}


def _split_equation(text: str) -> list[str]:
    """Split on '=' signs that are outside brackets (so dir='+' keyword arguments stay intact)."""
    parts, depth, start = [], 0, 0
    for match in re.finditer(r"[()\[\]]|" + _BARE_EQUALS.pattern, text):
        token = match.group(0)
        if token in "([":
            depth += 1
        elif token in ")]":
            depth -= 1
        elif depth == 0:
            parts.append(text[start : match.start()])
            start = match.end()
    parts.append(text[start:])
    return parts


def _parse(text: str, translator: _Translator) -> list[Any]:
    try:
        node = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ToolError(f"could not parse {text.strip()!r}: {exc.msg} (use * for multiplication, e.g. 2*x)") from None
    return translator.tree(node.body)


def _package_dir(name: str) -> str | None:
    spec = find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return str(Path(next(iter(spec.submodule_search_locations))).resolve())


async def _run_worker(request: dict[str, Any], limits: SandboxLimits, user_id: str | None = None) -> dict[str, Any]:
    sympy_dir, mpmath_dir = _package_dir("sympy"), _package_dir("mpmath")
    if not sympy_dir or not mpmath_dir:
        raise ToolError("SymPy is not installed")
    payload = json.dumps(request).encode()
    ok, _reason = sandbox_available()
    python = sandbox_python()
    if ok and python:
        binds = [(sympy_dir, "/opt/pylib/sympy"), (mpmath_dir, "/opt/pylib/mpmath"), (str(_WORKER), "/opt/worker.py")]
        argv = [python, "-I", "-S", "/opt/worker.py", "/opt/pylib"]
        result = await run_sandboxed(argv, payload, limits, ro_binds=binds, user_id=user_id)
    else:
        # Without bubblewrap the worker still runs in its own killable, rlimited process. It only ever
        # receives the validated tree above, never source text.
        paths = sorted({str(Path(sympy_dir).parent), str(Path(mpmath_dir).parent)})
        result = await run_limited([sys.executable, "-I", "-S", str(_WORKER), *paths], payload, limits, user_id=user_id)
    if result.timed_out:
        raise ToolError(f"the calculation took longer than {limits.timeout_s:.0f}s and was stopped")
    if result.exit_code != 0:
        why = "; ".join(result.notes) or (result.stderr.strip().splitlines() or ["worker failed"])[-1]
        raise ToolError(f"the calculation failed: {why}"[:500])
    try:
        answer = json.loads(result.stdout)
    except json.JSONDecodeError:
        answer = None
    if not isinstance(answer, dict):
        raise ToolError("the calculation produced no readable result")
    return answer


@tool(
    timeout_s=60,
    categories=("math", "data"),
    hint=(
        'math_calc uses SymPy syntax. Examples: derivative of x**2*cos(x) -> {"expression": "diff(x**2*cos(x), x)"}; '
        'integral of 2*x -> {"expression": "integrate(2*x, x)"}; x**2 - 4 = 0 -> {"expression": "solve(x**2 - 4, x)"}; '
        '17% of 2300 -> {"expression": "17/100*2300"}; gcd of 84 and 126 -> {"expression": "gcd(84, 126)"}'
    ),
    deterministic=True,
)
async def math_calc(ctx: ToolContext, expression: str) -> str:
    """Exact math with SymPy: arithmetic, algebra, equations, derivatives, integrals, limits, simplification.

    Examples: "2**10 / 3", "x**2 - 4 = 0", "solve(x**2 + 2*x - 8, x)", "diff(x**3*sin(x), x)",
    "integrate(exp(-x**2), (x, -oo, oo))", "limit(sin(x)/x, x, 0)", "factor(x**2 - 1)", "sqrt(2)".

    Args:
        expression: the expression or equation, using * for multiplication and ** (or ^) for powers.
    """
    request = parse_math(expression)
    limits = SandboxLimits.from_settings(ctx.settings, memory_mb=max(ctx.settings.sandbox_memory_mb, 512))
    answer = await _run_worker(request, limits, ctx.user_id)
    if not answer.get("ok"):
        raise ToolError(f"SymPy could not evaluate this: {answer.get('error', 'unknown error')}")
    text = str(answer.get("result", ""))
    if answer.get("numeric"):
        text += f" (≈ {answer['numeric']})"
    if answer.get("kind") == "solutions":
        text = f"Solutions: {text}"
    if len(text) > MAX_OUTPUT_CHARS:
        text = text[:MAX_OUTPUT_CHARS] + " … (result truncated)"
    return text
