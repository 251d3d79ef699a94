"""data_analysis: descriptive statistics for the numbers in a JSON document (or a small CSV).

Nested objects and lists are flattened into key paths — list positions collapse to ``[]`` so that
``[{"price": 1}, {"price": 3}]`` gives one field ``price`` with two values. For every numeric field:
count, sum, min, max, mean, median and standard deviation (sample, n-1). Input is bounded in size,
depth and number of values.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from typing import Any

from backend.tools.base import ToolContext, ToolError, ToolResult, tool

MAX_INPUT_CHARS = 1_000_000
MAX_DEPTH = 32
MAX_VALUES = 200_000
MAX_FIELDS = 200


def _walk(
    node: Any, path: str, numeric: dict[str, list[float]], other: dict[str, int], depth: int, budget: list[int]
) -> None:
    if depth > MAX_DEPTH:
        raise ToolError(f"data is nested too deeply (more than {MAX_DEPTH} levels)")
    if isinstance(node, dict):
        for key, value in node.items():
            _walk(value, f"{path}.{key}" if path else str(key), numeric, other, depth + 1, budget)
        return
    if isinstance(node, list):
        child = f"{path}[]" if path else "[]"
        for item in node:
            _walk(item, child, numeric, other, depth + 1, budget)
        return
    budget[0] -= 1
    if budget[0] < 0:
        raise ToolError(f"too many values (at most {MAX_VALUES})")
    name = path.removeprefix("[].") if path.startswith("[].") else path
    if not name.strip("[]"):
        name = "value"
    if isinstance(node, bool) or node is None or isinstance(node, str):
        other[name] = other.get(name, 0) + 1
        return
    if isinstance(node, int | float):
        value = float(node)
        if math.isfinite(value):
            numeric.setdefault(name, []).append(value)
        return
    other[name] = other.get(name, 0) + 1


def _parse(data: str) -> Any:
    try:
        return json.loads(data)
    except json.JSONDecodeError as exc:
        json_error = exc
    # a CSV with a header row is accepted too
    lines = data.strip().splitlines()
    if len(lines) >= 2 and ("," in lines[0] or ";" in lines[0] or "\t" in lines[0]):
        try:
            dialect = csv.Sniffer().sniff(lines[0] + "\n" + lines[1], delimiters=",;\t")
        except csv.Error:
            dialect = csv.excel
        rows = list(csv.DictReader(io.StringIO(data.strip()), dialect=dialect))
        return [{k: _number(v) for k, v in row.items() if k is not None} for row in rows]
    raise ToolError(f"data is not valid JSON (line {json_error.lineno}, column {json_error.colno}: {json_error.msg})")


def _number(text: str | None) -> Any:
    if text is None:
        return None
    stripped = text.strip()
    try:
        return int(stripped)
    except ValueError:
        pass
    try:
        value = float(stripped)
        return value if math.isfinite(value) else stripped
    except ValueError:
        return stripped


def _fmt(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}" if abs(value) >= 1e6 or abs(value) < 1e-3 else f"{value:.4f}".rstrip("0").rstrip(".")


def describe(values: list[float]) -> dict[str, float]:
    return {
        "count": len(values),
        "sum": math.fsum(values),
        "min": min(values),
        "max": max(values),
        "mean": statistics.fmean(values),
        "median": statistics.median(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
    }


@tool(
    timeout_s=30,
    categories=("data",),
    hint="data_analysis takes the numbers or records as JSON text, e.g. [3, 5, 7].",
    deterministic=True,
)
async def data_analysis(ctx: ToolContext, data: str) -> ToolResult:
    """Descriptive statistics (count, sum, min, max, mean, median, std) for every numeric field in JSON data.

    Nested objects and lists are flattened into key paths (e.g. "orders[].total"). A CSV with a
    header row also works.

    Args:
        data: a JSON document (object, list of records, or list of numbers) or CSV text.
    """
    if not data or not data.strip():
        raise ToolError("no data given")
    if len(data) > MAX_INPUT_CHARS:
        raise ToolError(f"data is too large (at most {MAX_INPUT_CHARS} characters)")
    parsed = _parse(data)
    numeric: dict[str, list[float]] = {}
    other: dict[str, int] = {}
    _walk(parsed, "", numeric, other, 0, [MAX_VALUES])
    if not numeric:
        fields = ", ".join(sorted(other)[:20]) or "none"
        raise ToolError(f"no numeric values found (non-numeric fields: {fields})")
    stats = {name: describe(values) for name, values in list(numeric.items())[:MAX_FIELDS]}
    columns = ["field", "count", "sum", "min", "max", "mean", "median", "std"]
    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    for name, s in stats.items():
        cells = [name, str(s["count"])] + [_fmt(s[k]) for k in ("sum", "min", "max", "mean", "median", "std")]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    text = "\n".join(lines)
    if len(numeric) > MAX_FIELDS:
        text += f"\n\n(showing {MAX_FIELDS} of {len(numeric)} numeric fields)"
    if other:
        counts = ", ".join(f"{k} ({v})" for k, v in sorted(other.items())[:30])
        text += "\n\nNon-numeric fields (value counts): " + counts
    text += "\n\nstd is the sample standard deviation (n-1)."
    return ToolResult(True, text, data={"stats": stats})
