"""data_analysis: statistics per numeric field, nested JSON flattened, bounded input."""

from __future__ import annotations

import json
import statistics

from backend.tools.data_analysis import data_analysis


def _row(output: str, field: str) -> list[str]:
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells and cells[0] == field:
            return cells
    raise AssertionError(f"no row for {field!r} in:\n{output}")


def test_list_of_numbers(tool_settings, run_tool):
    result = run_tool(data_analysis, tool_settings(), data="[2, 4, 4, 4, 5, 5, 7, 9]")
    assert result.ok, result.output
    # field count sum min max mean median std
    assert _row(result.output, "value") == ["value", "8", "40", "2", "9", "5", "4.5", f"{statistics.stdev([2,4,4,4,5,5,7,9]):.4f}".rstrip("0")]


def test_nested_records_are_flattened(tool_settings, run_tool):
    data = {
        "store": "north",
        "orders": [
            {"id": 1, "total": 10.5, "items": [{"qty": 1}, {"qty": 2}], "paid": True},
            {"id": 2, "total": 20.0, "items": [{"qty": 3}], "paid": False},
            {"id": 3, "total": None, "items": []},
        ],
        "meta": {"visits": 1000},
    }
    result = run_tool(data_analysis, tool_settings(), data=json.dumps(data))
    assert result.ok, result.output
    assert _row(result.output, "orders[].total")[:5] == ["orders[].total", "2", "30.5", "10.5", "20"]
    assert _row(result.output, "orders[].items[].qty")[:3] == ["orders[].items[].qty", "3", "6"]
    assert _row(result.output, "meta.visits")[1] == "1"
    assert "orders[].paid (2)" in result.output  # booleans are not numbers
    assert result.data["stats"]["orders[].total"]["mean"] == 15.25


def test_csv_input(tool_settings, run_tool):
    result = run_tool(data_analysis, tool_settings(), data="city,temp\nParis,21.5\nBerlin,18.5\nRome,27")
    assert result.ok, result.output
    assert _row(result.output, "temp")[:5] == ["temp", "3", "67", "18.5", "27"]


def test_bad_input_is_an_error_observation(tool_settings, run_tool):
    assert "not valid JSON" in run_tool(data_analysis, tool_settings(), data="{oops").output
    assert "no numeric values" in run_tool(data_analysis, tool_settings(), data='{"a": "x"}').output
    too_deep = "[" * 100 + "1" + "]" * 100
    assert "nested too deeply" in run_tool(data_analysis, tool_settings(), data=too_deep).output
    assert "too large" in run_tool(data_analysis, tool_settings(), data="[" + "1," * 600_000 + "1]").output
